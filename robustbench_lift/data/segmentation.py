"""Segmentation data on one interface: generated garment scenes and readers of PASCAL VOC 2012
and Cityscapes as they lie on disk.

Every source hands out uint8 RGB images (H x W x 3) and uint8 label maps (H x W) whose
values are class indices in ``[0, len(classes))`` or ``ignore_index`` (255, PASCAL VOC's
object-boundary value and Cityscapes' void). Sources share three calls: ``len(source)``,
``source.read(index)`` for one (image, label) pair, and ``source.load(indices)`` for an
in-memory :class:`SegmentationDataset`; the disk readers decode a sample only when it is
asked for.

**Garment scenes** (:func:`generate_garment_scenes`) are built offline from Fashion-MNIST,
a few garments on a textured background per canvas:

* background: a seeded smooth-noise field (a coarse random grid, bicubic-upsampled) over
  a random intensity range, plus a linear gradient and a fine texture (stripes or pixel
  noise), lightly tinted. Its intensities overlap the garments', so a model has to use
  shape and texture, not brightness alone;
* garments: ``min_garments``..``max_garments`` images of the split, each resized
  (bilinear) to a random square size in ``min_scale``..``max_scale`` px, randomly
  mirrored, darkened by a random contrast factor and lightly tinted, at a random position
  that keeps it inside the canvas;
* mask: a garment covers the pixels where its resized intensity exceeds
  ``mask_threshold`` x its maximum (0.1 by default; Fashion-MNIST garments sit on an
  exact-zero background, so this keeps the garment and drops resampling halo);
* label: class index + 1 inside a garment's mask, 0 (``background``) elsewhere;
* overlaps: garments are drawn in order and a later garment occludes the earlier ones,
  in pixels and in labels.

Training scenes draw garments from Fashion-MNIST's training split, test scenes from its
test split. Scene ``i`` of a split is drawn from its own generator seeded by
``(seed, split, i)``, so any subset of scenes can be regenerated alone and the same seed
gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_lift.data.loaders import FASHION_MNIST_CLASSES, load_fashion_mnist
from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

__all__ = [
    "CITYSCAPES_CLASSES",
    "FITS",
    "GARMENT_SCENE_CLASSES",
    "IGNORE_INDEX",
    "SEGMENTATION_DATASETS",
    "VOC_CLASSES",
    "CityscapesSegmentation",
    "GarmentSceneConfig",
    "SegmentationDataset",
    "GarmentPlacement",
    "SegmentationFolder",
    "VocSegmentation",
    "check_labels",
    "compose_garment_scene",
    "generate_garment_scenes",
    "load_segmentation_dataset",
    "plan_garment_scene",
    "render_garment_scene",
]

IGNORE_INDEX = 255
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip


GARMENT_SCENE_CLASSES = ["background"] + list(FASHION_MNIST_CLASSES)


def check_labels(label: np.ndarray, num_classes: int, ignore_index: int, source: str) -> None:
    """Raises a one-line :class:`UserError` when ``label`` holds a value that is neither a
    class index in ``[0, num_classes)`` nor ``ignore_index``.

    Args:
        label: label map(s) of any shape, integer values.
        num_classes: number of classes of the data set.
        ignore_index: the value that marks pixels excluded from evaluation.
        source: what to name in the message (a file, a data set).
    """
    values = np.unique(label)
    bad = values[((values >= num_classes) & (values != ignore_index)) | (values < 0)]
    if bad.size:
        raise UserError(
            f"label map {source} holds class {int(bad[0])}, outside 0..{num_classes - 1} "
            f"and not the ignore value {ignore_index}"
        )


@dataclass
class SegmentationDataset:
    """Images as uint8 N x H x W x 3, label maps as uint8 N x H x W, and the class names.

    Label values are class indices or ``ignore_index``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    ignore_index: int = IGNORE_INDEX
    name: str = "segmentation"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 N x H x W x 3, got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.uint8 or self.labels.shape != self.images.shape[:3]:
            raise ValueError(
                f"labels must be uint8 {self.images.shape[:3]}, got {self.labels.dtype} {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (image, label map) pair ``index``."""
        return self.images[index], self.labels[index]

    def subset(self, indices: Sequence[int] | np.ndarray) -> SegmentationDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return SegmentationDataset(
            self.images[indices], self.labels[indices], self.classes, self.ignore_index, self.name, self.metadata
        )

    def load(self, indices: Sequence[int] | np.ndarray | None = None) -> SegmentationDataset:
        """The samples ``indices`` (all when None) as a data set; same call as the disk readers."""
        return self if indices is None else self.subset(indices)

    def check(self) -> None:
        """Raises :class:`UserError` if a label is out of range (see :func:`check_labels`)."""
        check_labels(self.labels, len(self.classes), self.ignore_index, self.name)


# ---------------------------------------------------------------- garment scenes

SPLIT_CODES = {"train": 0, "test": 1}


@dataclass(frozen=True)
class GarmentSceneConfig:
    """How garment scenes are drawn; stored with every model trained on them."""

    size: int = 64
    min_garments: int = 2
    max_garments: int = 4
    min_scale: int = 20
    max_scale: int = 40
    mask_threshold: float = 0.1  # share of the garment's maximum intensity
    tint: float = 0.25  # largest per-channel attenuation of a garment's or the background's color
    min_contrast: float = 0.55  # garments are scaled by a factor in [min_contrast, 1]

    def __post_init__(self) -> None:
        if self.size < 8:
            raise UserError(f"scene size must be at least 8 px, got {self.size}")
        if not 1 <= self.min_garments <= self.max_garments:
            raise UserError(
                f"garments per scene must satisfy 1 <= min <= max, got {self.min_garments}..{self.max_garments}"
            )
        if not 4 <= self.min_scale <= self.max_scale <= self.size:
            raise UserError(
                f"garment scale must satisfy 4 <= min <= max <= scene size {self.size}, got {self.min_scale}..{self.max_scale}"
            )
        if not 0.0 <= self.mask_threshold < 1.0:
            raise UserError(f"mask_threshold must be in [0, 1), got {self.mask_threshold}")
        if not 0.0 <= self.tint < 1.0 or not 0.0 < self.min_contrast <= 1.0:
            raise UserError(f"tint must be in [0, 1) and min_contrast in (0, 1], got {self.tint}, {self.min_contrast}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resize_grey(image: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
    """uint8 H x W -> uint8 height x width with Pillow (fixed-point, so bit-exact everywhere)."""
    from PIL import Image

    method = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[resample]
    return np.asarray(Image.fromarray(image, mode="L").resize((width, height), method), dtype=np.uint8)


def _background(rng: np.random.Generator, size: int, tint: float) -> np.ndarray:
    """Seeded smooth noise + gradient + fine texture, float RGB in [0, 255]."""
    grid = int(rng.integers(3, 7))
    coarse = rng.integers(0, 256, (grid, grid), dtype=np.uint8)
    smooth = _resize_grey(coarse, size, size, "bicubic").astype(np.float64) / 255
    low = rng.uniform(0, 110)
    high = rng.uniform(low + 60, 255)
    field_ = low + (high - low) * smooth
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float64) / size
    angle = rng.uniform(0, 2 * np.pi)
    field_ += rng.uniform(-50, 50) * (np.cos(angle) * columns + np.sin(angle) * rows - 0.5)
    if rng.random() < 0.5:
        period = rng.uniform(3, 8)
        direction = rng.uniform(0, 2 * np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        field_ += rng.uniform(8, 24) * np.sin(
            2 * np.pi * size * (np.cos(direction) * columns + np.sin(direction) * rows) / period + phase
        )
    else:
        field_ += rng.uniform(-1, 1, (size, size)) * rng.uniform(8, 20)
    color = 1 - rng.uniform(0, tint, 3)
    return np.clip(field_[..., None] * color, 0, 255)


@dataclass(frozen=True)
class GarmentPlacement:
    """Where and how one garment is drawn into a scene."""

    source: int  # index of the garment image in the split
    scale: int  # side of the resized garment, px
    mirror: bool  # flipped left-right
    contrast: float  # intensity factor in [min_contrast, 1]
    color: tuple[float, float, float]  # per-channel tint factors
    top: int
    left: int


def plan_garment_scene(
    rng: np.random.Generator, sources: int, config: GarmentSceneConfig
) -> tuple[np.ndarray, list[GarmentPlacement]]:
    """Draws a scene's background (float RGB) and its garment placements, in drawing order."""
    background = _background(rng, config.size, config.tint)
    placements = []
    for _ in range(int(rng.integers(config.min_garments, config.max_garments + 1))):
        source = int(rng.integers(0, sources))
        scale = int(rng.integers(config.min_scale, config.max_scale + 1))
        mirror = bool(rng.random() < 0.5)
        contrast = float(rng.uniform(config.min_contrast, 1.0))
        color = tuple(float(value) for value in 1 - rng.uniform(0, config.tint, 3))
        top = int(rng.integers(0, config.size - scale + 1))
        left = int(rng.integers(0, config.size - scale + 1))
        placements.append(GarmentPlacement(source, scale, mirror, contrast, color, top, left))  # type: ignore[arg-type]
    return background, placements


def compose_garment_scene(
    background: np.ndarray,
    garments: np.ndarray,
    classes: np.ndarray,
    placements: Sequence[GarmentPlacement],
    mask_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``placements`` in order over ``background``; a later garment occludes earlier ones.

    Args:
        background: float H x W x 3 in [0, 255].
        garments: uint8 M x h x w grey garment images on a zero background.
        classes: int M, their class indices; a garment's pixels are labelled class + 1.
        placements: what to draw, in drawing order.
        mask_threshold: a garment covers the pixels where its resized intensity exceeds
            this share of its maximum.

    Returns:
        (uint8 H x W x 3 image, uint8 H x W label map, 0 = background).
    """
    image = np.array(background, dtype=np.float64)
    label = np.zeros(image.shape[:2], dtype=np.uint8)
    for placement in placements:
        garment = garments[placement.source]
        if placement.mirror:
            garment = garment[:, ::-1]
        garment = _resize_grey(np.ascontiguousarray(garment), placement.scale, placement.scale, "bilinear")
        peak = int(garment.max())
        if peak == 0:
            continue  # an all-black source image covers nothing
        mask = garment > mask_threshold * peak
        pixels = garment.astype(np.float64)[..., None] * placement.contrast * np.asarray(placement.color)
        rows = slice(placement.top, placement.top + placement.scale)
        columns = slice(placement.left, placement.left + placement.scale)
        image[rows, columns][mask] = pixels[mask]
        label[rows, columns][mask] = classes[placement.source] + 1
    return np.round(np.clip(image, 0, 255)).astype(np.uint8), label


def render_garment_scene(
    garments: np.ndarray, classes: np.ndarray, rng: np.random.Generator, config: GarmentSceneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one scene with the garment images chosen by ``rng``.

    Args:
        garments: uint8 M x 28 x 28 grey garment images (a Fashion-MNIST split).
        classes: int M, their class indices (0..9).
        rng: the scene's own generator; every random choice of the scene comes from it.
        config: scene geometry and appearance.

    Returns:
        (uint8 size x size x 3 image, uint8 size x size label map with class + 1 or 0).
    """
    background, placements = plan_garment_scene(rng, garments.shape[0], config)
    return compose_garment_scene(background, garments, classes, placements, config.mask_threshold)


def _garment_source(split: str, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` as 28 x 28 grey images (the loader's 2-px zero border removed)."""
    dataset = load_fashion_mnist(split, data_dir)
    return np.ascontiguousarray(dataset.images[:, 2:30, 2:30, 0]), dataset.labels


def generate_garment_scenes(
    count: int | None = None,
    split: str = "train",
    seed: int = 0,
    config: GarmentSceneConfig | None = None,
    data_dir: str | Path | None = None,
    indices: Iterable[int] | None = None,
) -> SegmentationDataset:
    """Garment scenes ``0..count-1`` (or exactly ``indices``) of ``split``, seeded by ``seed``.

    Args:
        count: number of scenes (scene indices 0..count-1); ignored when ``indices`` is given.
        split: ``train`` (garments from Fashion-MNIST's training split) or ``test``.
        seed: the generator seed; scene i is drawn from ``(seed, split, i)`` alone.
        config: scene geometry and appearance; defaults to :class:`GarmentSceneConfig`.
        data_dir: folder of Fashion-MNIST's IDX files (default: Debian's package or the cache).
        indices: scene indices to draw, in this order (any subset is reproducible).

    Returns:
        A :class:`SegmentationDataset` with 11 classes (background + the 10 garments).
    """
    if split not in SPLIT_CODES:
        raise UserError(f"garment scenes split must be train or test, got {split!r}")
    if indices is None:
        if count is None or count <= 0:
            raise UserError(f"number of garment scenes must be positive, got {count}")
        indices = range(count)
    scene_indices = [int(index) for index in indices]
    if any(index < 0 for index in scene_indices):
        raise UserError("garment scene indices must be non-negative")
    config = config or GarmentSceneConfig()
    garments, classes = _garment_source(split, data_dir)
    images = np.empty((len(scene_indices), config.size, config.size, 3), dtype=np.uint8)
    labels = np.empty((len(scene_indices), config.size, config.size), dtype=np.uint8)
    for row, index in enumerate(scene_indices):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
        images[row], labels[row] = render_garment_scene(garments, classes, rng, config)
    metadata = {"generator": "garment_scenes", "split": split, "seed": seed, "config": config.to_dict()}
    return SegmentationDataset(images, labels, list(GARMENT_SCENE_CLASSES), IGNORE_INDEX, "garment_scenes", metadata)


# ---------------------------------------------------------------- disk layouts

Fit = Callable[[Any, Any, tuple[int, int]], tuple[Any, Any]]
FITS: Registry[Fit] = Registry("fit mode")


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(int(value) for value in size)
    if height <= 0 or width <= 0:
        raise UserError(f"evaluation size must be positive, got {height}x{width}")
    return height, width


@FITS.register("resize")
def _fit_resize(image: Any, label: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """Stretch to exactly height x width: bilinear for the image, nearest for the labels."""
    from PIL import Image

    height, width = size
    return image.resize((width, height), Image.Resampling.BILINEAR), label.resize(
        (width, height), Image.Resampling.NEAREST
    )


@FITS.register("resize_crop")
def _fit_resize_crop(image: Any, label: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """Scale (keeping the aspect ratio) until the image covers height x width, then centre-crop."""
    from PIL import Image

    height, width = size
    scale = max(height / image.height, width / image.width)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(scaled, Image.Resampling.BILINEAR)
    label = label.resize(scaled, Image.Resampling.NEAREST)
    return _fit_crop(image, label, size)


@FITS.register("crop")
def _fit_crop(image: Any, label: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """Centre-crop to height x width without scaling; a smaller image is padded (black
    pixels, ignored labels)."""
    from PIL import Image

    height, width = size
    left = (image.width - width) // 2
    top = (image.height - height) // 2
    box = (left, top, left + width, top + height)
    if left >= 0 and top >= 0:
        return image.crop(box), label.crop(box)
    canvas_image = Image.new("RGB", (width, height), (0, 0, 0))
    canvas_label = Image.new("L", (width, height), IGNORE_INDEX)
    canvas_image.paste(image, (-left, -top))
    canvas_label.paste(label, (-left, -top))
    return canvas_image, canvas_label


def _read_label(path: Path) -> np.ndarray:
    """A label PNG as uint8 class ids: palette indices of a mode-P PNG (VOC), or the grey
    values of an 8-bit PNG (Cityscapes trainIds)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as label:
            if label.mode not in ("P", "L", "I", "I;16"):
                raise UserError(
                    f"label map {path} is a mode-{label.mode} image; expected palette indices (P) or 8-bit class ids (L)"
                )
            values = np.asarray(label)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"cannot decode label map {path}: {error}") from None
    if values.ndim != 2:
        raise UserError(f"label map {path} has {values.ndim} dimensions; expected one channel")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise UserError(f"label map {path} holds value {int(values.max())}, which no 8-bit class id can be")
    return values.astype(np.uint8)


class SegmentationFolder:
    """(image, label map) file pairs read one at a time, checked, and fitted to a fixed size.

    Args:
        samples: (image path, label path) pairs in the data set's order.
        classes: class names; label values must be indices into it or ``ignore_index``.
        name: the data set's name, for messages.
        size: evaluation size (height, width) or one int for a square; None keeps each
            sample's own size (then :meth:`load` needs equal sizes).
        fit: how a sample is brought to ``size``: one of :data:`FITS` (``resize``,
            ``resize_crop``, ``crop``); labels always use nearest-neighbour resampling.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        classes: Sequence[str],
        name: str,
        size: int | Sequence[int] | None = None,
        fit: str = "resize",
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.samples = [(Path(image), Path(label)) for image, label in samples]
        self.classes = list(classes)
        self.name = name
        self.size = _size(size)
        self.fit = fit
        self._fit = FITS.get(fit)
        self.ignore_index = ignore_index
        if not self.samples:
            raise UserError(f"{name} holds no samples")
        for image, label in self.samples:
            for path, what in ((image, "image"), (label, "label map")):
                if not path.is_file():
                    raise UserError(f"{name}: {what} {path} is missing")

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decodes, checks and fits sample ``index``: (uint8 H x W x 3, uint8 H x W)."""
        from PIL import Image, UnidentifiedImageError

        image_path, label_path = self.samples[index]
        try:
            with Image.open(image_path) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise UserError(f"cannot decode image {image_path}: {error}") from None
        values = _read_label(label_path)
        if values.shape != (image.height, image.width):
            raise UserError(
                f"{image_path} is {image.width}x{image.height} px but its label map {label_path} is "
                f"{values.shape[1]}x{values.shape[0]} px"
            )
        check_labels(values, len(self.classes), self.ignore_index, str(label_path))
        if self.size is not None and (image.height, image.width) != self.size:
            image, label = self._fit(image, Image.fromarray(values, mode="L"), self.size)
            values = np.asarray(label, dtype=np.uint8)
        return np.asarray(image, dtype=np.uint8), values

    def load(self, indices: Sequence[int] | np.ndarray | None = None) -> SegmentationDataset:
        """Reads the samples ``indices`` (all when None) into one :class:`SegmentationDataset`."""
        indices = range(len(self)) if indices is None else [int(index) for index in indices]
        pairs = [self.read(index) for index in indices]
        if not pairs:
            raise UserError(f"{self.name}: no samples selected")
        shapes = {image.shape for image, _ in pairs}
        if len(shapes) > 1:
            raise UserError(f"{self.name}: samples differ in size ({len(shapes)} sizes); pass an evaluation size")
        images = np.stack([image for image, _ in pairs])
        labels = np.stack([label for _, label in pairs])
        metadata = {"size": self.size, "fit": self.fit, "indices": list(indices)}
        return SegmentationDataset(images, labels, self.classes, self.ignore_index, self.name, metadata)


def _voc_root(root: Path) -> Path:
    """Accepts the VOC2012 folder itself, its VOCdevkit parent, or the folder above that."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir() or (candidate / "JPEGImages").is_dir():
            return candidate
    raise UserError(f"{root} is not a PASCAL VOC 2012 folder (expected JPEGImages/ and ImageSets/Segmentation/)")


class VocSegmentation(SegmentationFolder):
    """PASCAL VOC 2012 segmentation: ``JPEGImages/<id>.jpg`` with ``SegmentationClass/<id>.png``
    (palette PNGs read as palette indices: 0 background, 1..20 objects, 255 boundary =
    ignore), for the ids listed in ``ImageSets/Segmentation/<split>.txt``."""

    def __init__(
        self, root: str | Path, split: str = "val", size: int | Sequence[int] | None = None, fit: str = "resize"
    ):
        root = _voc_root(Path(root))
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise UserError(f"PASCAL VOC split list {split_file} is missing")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise UserError(f"PASCAL VOC split list {split_file} lists no images")
        samples = [(root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png") for name in ids]
        super().__init__(samples, VOC_CLASSES, f"voc2012-{split}", size, fit)
        self.ids = ids


class CityscapesSegmentation(SegmentationFolder):
    """Cityscapes fine annotations: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``
    with ``gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png`` (19 classes, 255 =
    ignore), in (city, file name) order. The trainId maps are what cityscapesscripts'
    ``createTrainIdLabelImgs`` writes from the released ``labelIds`` maps."""

    def __init__(
        self, root: str | Path, split: str = "val", size: int | Sequence[int] | None = None, fit: str = "resize"
    ):
        root = Path(root)
        image_root = root / "leftImg8bit" / split
        if not image_root.is_dir():
            raise UserError(f"Cityscapes folder {image_root} is missing (expected leftImg8bit/<split>/<city>/)")
        samples = []
        suffix = "_leftImg8bit.png"
        for city in sorted(entry.name for entry in os.scandir(image_root) if entry.is_dir()):
            for file in sorted(f for f in os.listdir(image_root / city) if f.endswith(suffix)):
                label = root / "gtFine" / split / city / file.replace(suffix, "_gtFine_labelTrainIds.png")
                if not label.is_file():
                    hint = (
                        " (run cityscapesscripts' createTrainIdLabelImgs)"
                        if label.with_name(label.name.replace("labelTrainIds", "labelIds")).is_file()
                        else ""
                    )
                    raise UserError(f"Cityscapes label map {label} is missing{hint}")
                samples.append((image_root / city / file, label))
        if not samples:
            raise UserError(f"Cityscapes folder {image_root} holds no *{suffix} images")
        super().__init__(samples, CITYSCAPES_CLASSES, f"cityscapes-{split}", size, fit)


SegmentationSource = Callable[..., Any]
SEGMENTATION_DATASETS: Registry[SegmentationSource] = Registry("segmentation data set")


@SEGMENTATION_DATASETS.register("garment_scenes")
def _load_garment_scenes(
    split: str = "test", data_dir: str | Path | None = None, count: int = 1000, seed: int = 0, **options: Any
) -> SegmentationDataset:
    unknown = sorted(set(options) - set(GarmentSceneConfig.__dataclass_fields__))
    if unknown:
        raise UserError(
            f"garment scenes have no option {unknown[0]!r}; options: count, seed, {', '.join(GarmentSceneConfig.__dataclass_fields__)}"
        )
    return generate_garment_scenes(count, split, seed, GarmentSceneConfig(**options), data_dir)


@SEGMENTATION_DATASETS.register("voc2012")
def _load_voc(
    split: str = "val", data_dir: str | Path | None = None, size: Any = None, fit: str = "resize"
) -> VocSegmentation:
    if data_dir is None:
        raise UserError("PASCAL VOC 2012 is not downloaded automatically; pass its folder as data_dir")
    return VocSegmentation(data_dir, split, size, fit)


@SEGMENTATION_DATASETS.register("cityscapes")
def _load_cityscapes(
    split: str = "val", data_dir: str | Path | None = None, size: Any = None, fit: str = "resize"
) -> CityscapesSegmentation:
    if data_dir is None:
        raise UserError("Cityscapes is not downloaded automatically; pass its folder as data_dir")
    return CityscapesSegmentation(data_dir, split, size, fit)


def load_segmentation_dataset(
    name: str, split: str = "test", data_dir: str | Path | None = None, **options: Any
) -> Any:
    """A registered segmentation source by name: a :class:`SegmentationDataset` (generated
    scenes) or a lazy :class:`SegmentationFolder` (disk layouts); both offer ``len``,
    ``read(index)`` and ``load(indices)``.

    Args:
        name: ``garment_scenes``, ``voc2012`` or ``cityscapes``.
        split: the split to read.
        data_dir: the data set's folder (required for the disk layouts).
        **options: the source's own options (``size``/``fit`` for disk layouts; ``count``,
            ``seed`` and :class:`GarmentSceneConfig` fields for garment scenes).
    """
    return SEGMENTATION_DATASETS.get(name)(split=split, data_dir=data_dir, **options)
