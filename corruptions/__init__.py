"""ImageNet-C-style corruptions (15 common + 4 extra, severities 1..5) in two severity profiles.

``cifar``: the 32-px parameters of the CIFAR-10-C generator, reimplemented in numpy/OpenCV.
``imagenet``: the 224-px parameters, through the ``imagecorruptions`` package.
See :mod:`corruptions.engine` for the determinism contract.
"""
from corruptions.engine import corrupt_batch, corrupt_image, corrupt_many
from corruptions.registry import (
    COMMON_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PROFILES,
    SEVERITIES,
    corruption_names,
)

__all__ = [
    "COMMON_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "PROFILES",
    "SEVERITIES",
    "corrupt_batch",
    "corrupt_image",
    "corrupt_many",
    "corruption_names",
]
