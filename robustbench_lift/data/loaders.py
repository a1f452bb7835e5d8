"""Loaders of the supported data sets, each ``(split, data_dir, download) -> ImageDataset``
(in memory) or :class:`~robustbench_lift.data.files.ImageFiles` (image folders: listed
now, only the sampled files decoded later).

Fashion-MNIST is padded from 28 to 32 px (zeros, like LeNet's input) and replicated to
three channels so 32-px CIFAR-style models and corruption parameters apply unchanged.
ImageNet and Tiny-ImageNet come in ImageFolder order (sorted wnid, then file name), the
order of ImageNet-C and Tiny-ImageNet-C, so clean and corrupted images pair up
(:mod:`robustbench_lift.data.published` reads those). torchvision is imported only by the
loaders that need it; Fashion-MNIST and CIFAR-100 load without torch.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from robustbench_lift.data.base import DEFAULT_CACHE, IMAGE_SUFFIXES, ImageDataset
from robustbench_lift.data.classes import imagenet_class_index
from robustbench_lift.data.files import ImageFiles
from robustbench_lift.data.geometry import Geometry
from robustbench_lift.errors import UserError

__all__ = [
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_image_folder",
    "load_imagenet",
    "load_tiny_imagenet",
]

#: Image files ``image_folder`` reads (torchvision ImageFolder's extensions).
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format: magic ``00 00 08 D``, D big-endian sizes, uint8
    values), gzipped or not; a garbage, empty or truncated file is a one-line UserError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        kind = "gzip " if path.suffix == ".gz" else ""
        raise UserError(f"{path} is not a readable {kind}IDX file: {error}") from None
    if not data:
        raise UserError(f"{path} is empty; expected an IDX file")
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4 or len(data) < 4 + 4 * data[3]:
        raise UserError(f"{path} is not an IDX file of uint8 values (header {data[:4].hex()})")
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions)
    if array.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (
        folder / f"{stem}.gz",
        folder / stem,
        folder / "FashionMNIST" / "raw" / f"{stem}.gz",
        folder / "FashionMNIST" / "raw" / stem,
    ):
        if candidate.exists():
            return candidate
    return None


def fashion_mnist_folder(data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The folder holding Fashion-MNIST's IDX files: ``data_dir``, Debian's package, or a download."""
    folders = [Path(data_dir)] if data_dir else [DEBIAN_FASHION_MNIST, DEFAULT_CACHE / "fashion-mnist"]
    for folder in folders:
        if _find_idx(folder, "t10k-images-idx3-ubyte"):
            return folder
    if download:
        import torchvision

        target = Path(data_dir) if data_dir else DEFAULT_CACHE / "fashion-mnist"
        torchvision.datasets.FashionMNIST(str(target), train=False, download=True)
        torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        return target
    looked = ", ".join(str(folder) for folder in folders)
    raise UserError(
        f"Fashion-MNIST not found in {looked}; install Debian's dataset-fashion-mnist, pass --data-dir, or allow --download"
    )


def load_fashion_mnist(split: str = "test", data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """Fashion-MNIST as 32 x 32 x 3 uint8 (zero-padded, grey replicated to RGB)."""
    folder = fashion_mnist_folder(data_dir, download)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise UserError(f"Fashion-MNIST split must be train or test, got {split!r}")
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise UserError(f"Fashion-MNIST {split} files missing in {folder}")
    images = _read_idx(images_path)
    labels = _read_idx(labels_path).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels in {folder}")
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return ImageDataset("fashion_mnist", np.repeat(padded[..., None], 3, axis=3), labels, list(FASHION_MNIST_CLASSES))


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))


def _cifar10_folder(data_dir: str | Path | None, download: bool) -> Path:
    root = Path(data_dir) if data_dir else DEFAULT_CACHE / "cifar10"
    # Accept the folder torchvision downloads into or the extracted folder itself.
    for candidate in (root / "cifar-10-batches-py", root):
        if (candidate / "test_batch").is_file() and (candidate / "batches.meta").is_file():
            return candidate
    if download:
        import torchvision

        # torchvision checks the archive's MD5 before extracting the original files.
        torchvision.datasets.CIFAR10(str(root), train=False, download=True)
        return root / "cifar-10-batches-py"
    raise UserError(
        f"CIFAR-10 not found under {root} (expected cifar-10-batches-py/test_batch and batches.meta); "
        "pass --data-dir or allow --download"
    )


def load_cifar10(split: str = "test", data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-10 from torchvision's layout: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``.

    Read directly, through :func:`_unpickle`'s restricted unpickler, rather than through
    torchvision, whose plain ``pickle.load`` would run whatever a planted file asks for.
    """
    if split not in ("train", "test"):
        raise UserError(f"CIFAR-10 split must be train or test, got {split!r}")
    folder = _cifar10_folder(data_dir, download)
    files = [folder / name for name in (CIFAR10_TRAIN_BATCHES if split == "train" else ("test_batch",))]
    parts = [_cifar_batch(path, "labels") for path in files]
    meta = _unpickle(folder / "batches.meta")
    classes = _cifar_entry(meta, "label_names", folder / "batches.meta")
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return ImageDataset("cifar10", images, labels, _class_names(classes, folder / "batches.meta"))


def load_image_folder(
    split: str = "test", data_dir: str | Path | None = None, download: bool = False, image_size: int = 32
) -> ImageFiles:
    """Any ``<root>/<class>/<image>`` folder (torchvision ImageFolder order), listed now and
    decoded when sampled; its own evaluation size: shorter side resized to ``image_size``,
    centre crop ``image_size`` (a model's declared preprocessing replaces it).
    ``class_index`` is set when the class folders are ImageNet wnids."""
    if data_dir is None or not Path(data_dir).is_dir():
        raise UserError(f"image folder {data_dir} does not exist")
    classes, paths, labels = _class_folder_samples(Path(data_dir), FOLDER_SUFFIXES)
    geometry = Geometry(resize=image_size, crop=image_size)
    return ImageFiles(Path(data_dir).name, paths, labels, classes, geometry, imagenet_class_index(classes))


# ---------------------------------------------------------------- CIFAR-100, ImageNet, Tiny-ImageNet


def _allowed_pickle_globals() -> dict[tuple[str, str], Callable[..., object]]:
    """Every global a CIFAR python-version file may name, mapped to the object it gets.

    The published files are Python 2 pickles of dicts holding strings, lists of ints and
    one numpy uint8 array; the array is rebuilt by ``numpy.core.multiarray._reconstruct``
    from ``numpy.ndarray`` and ``numpy.dtype``. The same content pickled again by Python 3
    and numpy 2 names ``numpy._core`` instead, ``numpy._core.numeric._frombuffer`` at
    protocol 5, and ``_codecs.encode`` (latin-1, for bytes) at protocols 0-2.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    return {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,  # type: ignore[attr-defined]
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,  # type: ignore[attr-defined]
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # _codecs.encode could name any codec; the bytes in a pickle only ever need latin-1.
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"it encodes bytes with {encoding!r}, not latin-1")
    return text.encode("latin-1", errors)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR files hold: dicts, lists, strings, numbers, numpy arrays.

    A pickle can name any importable callable and have it called (``os.system`` included);
    :meth:`find_class` hands out only :func:`_allowed_pickle_globals`, so a planted file
    is refused before anything it names can run.
    """

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        # latin1: the published files come from Python 2, whose str holds raw bytes.
        super().__init__(handle, encoding="latin1")
        self._path = path
        self._allowed = _allowed_pickle_globals()

    def find_class(self, module: str, name: str) -> object:
        found = self._allowed.get((module, name))
        if found is None:
            named = f"{module}.{name}".encode("unicode_escape").decode("ascii")[:120]
            raise UserError(f"refusing to load {self._path}: it contains {named}, which CIFAR files never do")
        return found


def _unpickle(path: Path) -> dict:
    """A CIFAR python-version pickle as a dict with ``str`` keys, read by :class:`_CifarUnpickler`."""
    try:
        with open(path, "rb") as handle:
            content = _CifarUnpickler(handle, path).load()
    except UserError:
        raise
    except Exception as error:  # a damaged pickle fails in many ways; none may end in a traceback
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read {path}: {message}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} is not a CIFAR pickle (expected a dict, found {type(content).__name__})")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def _cifar_entry(content: dict, key: str, path: Path) -> object:
    if key not in content:
        raise UserError(f"{path} has no {key!r} entry; is it a CIFAR file?")
    return content[key]


def _class_names(names: object, path: Path) -> list[str]:
    # Python 2 wrote str (read back as latin-1); files re-pickled by Python 3 may hold bytes.
    if not isinstance(names, (list, tuple)):
        raise UserError(f"{path}: the class names must be a list, found {type(names).__name__}")
    return [name.decode("latin1") if isinstance(name, bytes) else str(name) for name in names]


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 32 x 32 x 3 uint8) and labels of one CIFAR batch file."""
    batch = _unpickle(path)
    data, labels = _cifar_entry(batch, "data", path), _cifar_entry(batch, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' must be an N x 3072 uint8 array (one 3x32x32 image per row)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}: {label_key!r} must be a list of integer labels") from None
    if labels.shape != (data.shape[0],):
        raise UserError(f"{path}: data {data.shape} does not hold one 3x32x32 image per label ({labels.size})")
    # Rows are channel-major (all red, then green, then blue).
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def _cifar100_folder(data_dir: str | Path | None, download: bool) -> Path:
    root = Path(data_dir) if data_dir else DEFAULT_CACHE / "cifar100"
    # Accept the folder torchvision downloads into or the extracted folder itself.
    for candidate in (root / "cifar-100-python", root):
        if (candidate / "test").is_file() and (candidate / "meta").is_file():
            return candidate
    if download:
        import torchvision

        torchvision.datasets.CIFAR100(str(root), train=False, download=True)
        torchvision.datasets.CIFAR100(str(root), train=True, download=True)
        return root / "cifar-100-python"
    raise UserError(
        f"CIFAR-100 not found under {root} (expected cifar-100-python/test and meta); pass --data-dir or allow --download"
    )


def load_cifar100(split: str = "test", data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-100 (fine labels) from torchvision's layout: ``cifar-100-python/{train,test,meta}``.

    Read directly rather than through torchvision, whose checksum test rejects any file
    but the original download.
    """
    if split not in ("train", "test"):
        raise UserError(f"CIFAR-100 split must be train or test, got {split!r}")
    folder = _cifar100_folder(data_dir, download)
    images, labels = _cifar_batch(folder / split, "fine_labels")
    classes = _cifar_entry(_unpickle(folder / "meta"), "fine_label_names", folder / "meta")
    return ImageDataset("cifar100", images, labels, _class_names(classes, folder / "meta"))


def _class_folder_samples(
    root: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> tuple[list[str], list[Path], np.ndarray]:
    """``<root>/<class>/<image>`` in torchvision ImageFolder order: sorted classes, then sorted file names."""
    try:
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    except OSError as error:
        raise UserError(f"cannot list {root}: {error.strerror or error}") from None
    if not classes:
        raise UserError(f"{root} holds no class folders (expected <root>/<class>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(f for f in os.listdir(root / name) if f.lower().endswith(suffixes) and not f.startswith("."))
        if not files:
            raise UserError(f"class folder {root / name} holds no images ({', '.join(suffixes)})")
        paths.extend(root / name / file for file in files)
        labels.extend([label] * len(files))
    return classes, paths, np.asarray(labels, dtype=np.int64)


def load_imagenet(
    split: str = "test",
    data_dir: str | Path | None = None,
    download: bool = False,
    resize_size: int = 256,
    crop_size: int = 224,
) -> ImageFiles:
    """ImageNet as an image folder ``<root>/<wnid>/*.JPEG``, listed now and decoded when
    sampled; its own evaluation size: shorter side resized to ``resize_size`` (bilinear),
    centre crop ``crop_size`` (a model's declared preprocessing replaces it).

    ``split`` test or val reads ``<data_dir>/val`` when it exists, else ``data_dir`` itself
    (ImageNet's test labels were never published); train reads ``<data_dir>/train``.
    Labels are the sorted wnids of the folder, so they match ImageNet-C and torchvision's
    ImageFolder; when the class folders are ImageNet-1k wnids, each class's output index
    in a 1000-way model is kept in ``class_index``, so a folder with a subset of the
    classes evaluates 1000-way models (see :mod:`robustbench_lift.data.classes`).
    """
    if split not in ("train", "val", "test"):
        raise UserError(f"ImageNet split must be train, val or test, got {split!r}")
    if data_dir is None:
        raise UserError("ImageNet cannot be downloaded; pass --data-dir with <wnid>/*.JPEG folders")
    root = Path(data_dir)
    subfolder = root / ("train" if split == "train" else "val")
    folder = subfolder if subfolder.is_dir() else root
    if not folder.is_dir():
        raise UserError(f"ImageNet folder {folder} does not exist")
    if crop_size > resize_size or crop_size <= 0:
        raise UserError(f"ImageNet crop size must be in 1..resize size ({resize_size}), got {crop_size}")
    classes, paths, labels = _class_folder_samples(folder)
    return ImageFiles(
        "imagenet", paths, labels, classes, Geometry(resize=resize_size, crop=crop_size), imagenet_class_index(classes)
    )


def load_tiny_imagenet(split: str = "test", data_dir: str | Path | None = None, download: bool = False) -> ImageFiles:
    """Tiny-ImageNet (64 px, 200 classes) from its published layout.

    test or val: ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (file, wnid,
    box); train: ``train/<wnid>/images/*.JPEG``. Classes are the sorted wnids (of
    ``wnids.txt`` when present) and images come in (class, file name) order, the order of
    an ImageFolder over Tiny-ImageNet-C, so clean and corrupted images pair up. Listed now,
    decoded (64 px, as stored) when sampled.
    """
    if split not in ("train", "val", "test"):
        raise UserError(f"Tiny-ImageNet split must be train, val or test, got {split!r}")
    if data_dir is None:
        raise UserError("Tiny-ImageNet is not downloaded automatically; pass --data-dir (the tiny-imagenet-200 folder)")
    root = Path(data_dir)
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    samples = _tiny_imagenet_train(root) if split == "train" else _tiny_imagenet_val(root)
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        classes = sorted(line.strip() for line in wnids_file.read_text().splitlines() if line.strip())
    else:
        classes = sorted({wnid for wnid, _ in samples})
    position = {wnid: index for index, wnid in enumerate(classes)}
    unknown = sorted({wnid for wnid, _ in samples} - set(position))
    if unknown:
        raise UserError(f"{root}: class {unknown[0]} is not listed in {wnids_file}")
    samples.sort(key=lambda sample: (position[sample[0]], sample[1].name))
    labels = np.asarray([position[wnid] for wnid, _ in samples], dtype=np.int64)
    return ImageFiles(
        "tiny_imagenet", [path for _, path in samples], labels, classes, None, imagenet_class_index(classes)
    )


def _tiny_imagenet_val(root: Path) -> list[tuple[str, Path]]:
    annotations = root / "val" / "val_annotations.txt"
    images = root / "val" / "images"
    if not annotations.is_file() or not images.is_dir():
        raise UserError(f"{root} is not a Tiny-ImageNet folder: missing val/val_annotations.txt or val/images")
    samples = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"{annotations} line {number} is not '<file>\\t<wnid>\\t...': {line.strip()!r}")
        path = images / fields[0].strip()
        if not path.is_file():
            raise UserError(f"{annotations} line {number} names {path.name}, which is missing from {images}")
        samples.append((fields[1].strip(), path))
    if not samples:
        raise UserError(f"{annotations} lists no images")
    return samples


def _tiny_imagenet_train(root: Path) -> list[tuple[str, Path]]:
    train = root / "train"
    if not train.is_dir():
        raise UserError(f"{root} is not a Tiny-ImageNet folder: missing train/")
    samples: list[tuple[str, Path]] = []
    for wnid in sorted(entry.name for entry in os.scandir(train) if entry.is_dir()):
        folder = train / wnid / "images"
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES)) if folder.is_dir() else []
        if not files:
            raise UserError(f"Tiny-ImageNet class folder {folder} holds no images")
        samples.extend((wnid, folder / file) for file in files)
    return samples
