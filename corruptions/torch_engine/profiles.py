"""The torch engine's two severity profiles, built from the reference path's own tables.

``cifar`` takes :data:`corruptions.cifar_profile.CIFAR_SEVERITIES`, ``imagenet``
:data:`corruptions.imagenet_profile.IMAGENET_SEVERITIES`; where the two references differ in
a step (not only in a number), the family function takes the profile's name.
"""

from __future__ import annotations

from collections.abc import Callable

from corruptions._registry import Registry
from corruptions.cifar_profile import CIFAR_SEVERITIES
from corruptions.imagenet_profile import IMAGENET_SEVERITIES
from corruptions.registry import ALL_CORRUPTIONS, PROFILES
from corruptions.torch_engine import blur, digital, noise, weather
from corruptions.torch_engine.base import TorchCorruption

__all__ = ["TORCH_PROFILES", "torch_profile"]

# name -> builder(table, profile)
_BUILDERS: dict[str, Callable[[tuple, str], TorchCorruption]] = {
    "gaussian_noise": lambda table, profile: noise.gaussian_noise(table),
    "shot_noise": lambda table, profile: noise.shot_noise(table),
    "impulse_noise": lambda table, profile: noise.impulse_noise(table),
    "defocus_blur": lambda table, profile: blur.defocus_blur(table),
    "glass_blur": lambda table, profile: blur.glass_blur(table),
    "motion_blur": blur.motion_blur,
    "zoom_blur": lambda table, profile: blur.zoom_blur(table, center_trim=profile == "cifar"),
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": lambda table, profile: digital.brightness(table),
    "contrast": lambda table, profile: digital.contrast(table),
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": lambda table, profile: digital.jpeg_compression(table),
    "speckle_noise": lambda table, profile: noise.speckle_noise(table),
    "gaussian_blur": lambda table, profile: blur.gaussian_blur(table),
    "spatter": digital.spatter,
    "saturate": lambda table, profile: digital.saturate(table),
}
assert tuple(_BUILDERS) == ALL_CORRUPTIONS, "the torch engine must cover every corruption, in canonical order"

_TABLES = {"cifar": CIFAR_SEVERITIES, "imagenet": IMAGENET_SEVERITIES}

#: profile name -> registry of :class:`TorchCorruption` (parallel to ``corruptions.engine.PROFILE_REGISTRY``).
TORCH_PROFILES: Registry[Registry[TorchCorruption]] = Registry("corruption profile")
for _profile in PROFILES:
    _registry: Registry[TorchCorruption] = Registry(f"{_profile}-profile corruption")
    for _name, _build in _BUILDERS.items():
        _registry.add(_name, _build(_TABLES[_profile][_name], _profile))
    TORCH_PROFILES.add(_profile, _registry)


def torch_profile(profile: str) -> Registry[TorchCorruption]:
    """The registry of one profile's torch corruptions; unknown profiles raise the package's error."""
    return TORCH_PROFILES.get(profile)
