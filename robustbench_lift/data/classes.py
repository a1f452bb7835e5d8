"""Class subsets: which output of a 1000-way ImageNet model each class folder is.

ImageNet's class index is the sorted order of its 1000 wnids (the order of
``LOC_synset_mapping.txt``, of torchvision's ImageFolder over the full validation set and
of every torchvision and timm ImageNet model's outputs). The package ships that list
(``imagenet_wnids.txt``), so a folder holding only some of the classes (an
ImageNet-100/200-style subset, a partial ImageNet-C download, Tiny-ImageNet's 200 wnids)
still knows each of its classes' output index in a 1000-way model. The evaluation then
restricts the model's logits to the present classes, as ImageNet-R and ImageNet-A do
for their 200 classes (:class:`robustbench_lift.models.preprocessing.ClassSubset`).
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["IMAGENET_WNIDS_FILE", "imagenet_class_index", "imagenet_wnids"]

#: The 1000 ImageNet-1k wnids in class-index order, one per line.
IMAGENET_WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's 1000 wnids in class-index order (sorted)."""
    wnids = tuple(line.strip() for line in IMAGENET_WNIDS_FILE.read_text().splitlines() if line.strip())
    if len(wnids) != 1000 or list(wnids) != sorted(set(wnids)):
        raise RuntimeError(f"{IMAGENET_WNIDS_FILE} must hold 1000 distinct sorted wnids; the package is damaged")
    return wnids


def imagenet_class_index(classes: Sequence[str]) -> np.ndarray | None:
    """Each class's output index in a 1000-way ImageNet model, or None when some class is
    not an ImageNet-1k wnid (the folder is not an ImageNet subset).

    Args:
        classes: class folder names (wnids), in the data set's label order.

    Returns:
        int64 array of len(classes) with values in 0..999, or None.
    """
    position = {wnid: index for index, wnid in enumerate(imagenet_wnids())}
    if not classes or any(name not in position for name in classes):
        return None
    return np.array([position[name] for name in classes], dtype=np.int64)
