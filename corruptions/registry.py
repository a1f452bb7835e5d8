"""Corruption names, severities and profiles: the vocabulary every other module shares.

The positions in :data:`ALL_CORRUPTIONS` are part of the determinism contract: a
corruption's id (its position) is mixed into the seed of every image, so reordering
or inserting names would silently change every generated dataset. Append only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from corruptions._registry import Registry
from corruptions.errors import CorruptionError

#: ``fn(image HxWx3 uint8, severity 1..5, rng) -> HxWx3 array with values in [0, 255]``.
CorruptionFunction = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

COMMON_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
PROFILES: tuple[str, ...] = ("cifar", "imagenet")
#: Corruption families as grouped by ImageNet-C, the extra corruptions placed with their kin.
CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}

_CORRUPTION_IDS: Registry[int] = Registry("corruption")
for _position, _name in enumerate(ALL_CORRUPTIONS):
    _CORRUPTION_IDS.add(_name, _position)

_SUBSETS: Registry[tuple[str, ...]] = Registry("corruption subset")
_SUBSETS.add("common", COMMON_CORRUPTIONS)
_SUBSETS.add("extra", EXTRA_CORRUPTIONS)
_SUBSETS.add("all", ALL_CORRUPTIONS)
assert sorted(name for names in CORRUPTION_FAMILIES.values() for name in names) == sorted(ALL_CORRUPTIONS)


def corruption_names(which: str = "all") -> list[str]:
    """Names of the ``"common"`` 15, the ``"extra"`` 4, or ``"all"`` 19, in canonical order."""
    return list(_SUBSETS.get(which))


def corruption_family(name: str) -> str:
    """The ImageNet-C family (noise, blur, weather, digital) of a corruption."""
    for family, names in CORRUPTION_FAMILIES.items():
        if name in names:
            return family
    corruption_id(name)  # raises CorruptionError listing the known names
    raise AssertionError(f"{name} is in no family")


def corruption_id(name: str) -> int:
    """Stable integer id of a corruption (its canonical position); unknown names raise CorruptionError."""
    return _CORRUPTION_IDS.get(name)


def check_severity(corruption: str, severity: object) -> int:
    """Return ``severity`` as an int, or raise CorruptionError unless it is an integer in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise CorruptionError(f"severity for corruption {corruption!r} must be an integer in 1..5, got {severity!r}")
    return int(severity)


def make_profile_registry(profile: str) -> Registry[CorruptionFunction]:
    """An empty registry for one severity profile's corruption functions."""
    return Registry(f"{profile}-profile corruption")
