"""Video decoding for ImageNet-P-style sets: frames as uint8 RGB arrays, resized and centre-cropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustbench_lift.errors import UserError

__all__ = ["read_video_frames"]


def _resize_and_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size``, then the central ``size`` x ``size`` (the ImageNet crop)."""
    import cv2

    height, width = frame.shape[:2]
    if (height, width) == (size, size):
        return frame
    scale = size / min(height, width)
    new_height, new_width = max(size, round(height * scale)), max(size, round(width * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_width, new_height), interpolation=interpolation)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return resized[top : top + size, left : left + size]


def read_video_frames(path: Path, size: int | None = None) -> np.ndarray:
    """All frames of a video as uint8 frames x H x W x 3 RGB, optionally brought to ``size`` px.

    OpenCV decodes (as the reference ``video_loader.py`` does); torchvision 0.29 no longer
    has ``torchvision.io.read_video``, and OpenCV's wheels bundle FFmpeg, so no new dependency.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            frames.append(_resize_and_crop(frame, size) if size else frame)
    finally:
        capture.release()
    if not frames:
        raise UserError(f"cannot decode video {path} (no frames)")
    return np.stack(frames)
