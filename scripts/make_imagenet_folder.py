"""Writes a synthetic ImageNet-layout folder: ``<out>/val/<wnid>/<wnid>_<n>.JPEG``.

Random-texture JPEGs (a seeded random low-resolution colour field, upsampled, plus
pixel noise) under the real ImageNet wnids, for measuring the data loaders at ImageNet's
scale without ImageNet. The pictures mean nothing; only the file count, the folder
layout and the decoding work are realistic. Deterministic for a given ``--seed``.

    python scripts/make_imagenet_folder.py /tmp/imagenet-synthetic --classes 1000 --per-class 50 --size 64
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 H x W x 3 random texture: a smooth colour field plus fine noise."""
    from PIL import Image

    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-24, 25, size=(height, width, 3), dtype=np.int16)
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def write_class(folder: str, wnid: str, count: int, height: int, width: int, seed: int) -> int:
    """Writes ``count`` JPEGs of one class; returns how many it wrote (existing files are kept)."""
    from PIL import Image

    target = Path(folder) / wnid
    target.mkdir(parents=True, exist_ok=True)
    if all((target / f"{wnid}_{number:05d}.JPEG").exists() for number in range(count)):
        return 0
    rng = np.random.default_rng([seed, int(wnid[1:])])  # one stream per class: classes are independent
    written = 0
    for number in range(count):
        path = target / f"{wnid}_{number:05d}.JPEG"
        pixels = texture(rng, height, width)  # drawn even when the file exists: same images whatever was there
        if path.exists():
            continue
        Image.fromarray(pixels).save(path, quality=90)
        written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create; images go to <out>/val/<wnid>/")
    parser.add_argument("--classes", type=int, default=1000, help="number of wnids (the first N of ImageNet's 1000)")
    parser.add_argument("--per-class", type=int, default=50, help="images per class (ImageNet val: 50)")
    parser.add_argument("--size", default="64", help="image size: N or HxW (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()

    from robustbench_lift.data.classes import imagenet_wnids

    wnids = imagenet_wnids()
    if not 1 <= args.classes <= len(wnids):
        parser.error(f"--classes must be in 1..{len(wnids)}")
    height, _, width = args.size.partition("x")
    height_px, width_px = int(height), int(width or height)
    folder = Path(args.out) / "val"
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        jobs = [
            pool.submit(write_class, str(folder), wnid, args.per_class, height_px, width_px, args.seed)
            for wnid in wnids[: args.classes]
        ]
        written = sum(job.result() for job in jobs)
    total = args.classes * args.per_class
    print(
        f"{folder}: {total} images in {args.classes} class folders ({written} written now), {height_px}x{width_px} px"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
