"""The 224-px ("imagenet") severity profile: ImageNet-C's parameters via ``imagecorruptions``.

``imagecorruptions.corrupt`` draws from numpy's *global* random state (and, for
glass_blur and impulse_noise, from a ``seed`` argument that otherwise defaults to fresh
OS entropy). To make each call a pure function of the per-image generator we draw the
seeds from that generator, seed the global state just for the call, and restore the
caller's global state afterwards. Because the global state is process-wide, calls of this
profile must not run concurrently in threads of one process (processes are fine).
"""

from __future__ import annotations

import numpy as np

from corruptions.registry import ALL_CORRUPTIONS, CorruptionFunction, make_profile_registry

IMAGENET_PROFILE = make_profile_registry("imagenet")

# imagecorruptions refuses smaller images.
MINIMUM_SIDE = 32

# Corruptions whose imagecorruptions function takes its own ``seed`` argument.
_SEED_ARGUMENT = frozenset({"glass_blur", "impulse_noise"})
_SEED_LIMIT = 2**31  # numba's and numpy's legacy seeding both accept this range

#: The parameters ``imagecorruptions`` (1.1.x) uses per severity (index ``severity - 1``).
#: That package keeps them inside its functions, so they are transcribed here for the torch
#: engine (:mod:`corruptions.torch_engine`); ``tests/test_torch_engine.py`` checks them
#: against the installed package's source. elastic_transform: ``(alpha, sigma fraction,
#: displacement fraction)``, the fractions of the image's height (sigma: of each side).
IMAGENET_SEVERITIES: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # sigma
    "shot_noise": (60, 25, 12, 5, 3),  # photons per unit intensity
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # amount
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),  # sigma
    "gaussian_blur": (1, 2, 3, 4, 6),  # sigma
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),  # sigma, delta, iterations
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # radius, alias blur
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # radius, sigma
    "zoom_blur": (
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.02),
        np.arange(1, 1.26, 0.02),
        np.arange(1, 1.31, 0.03),
    ),  # zoom factors
    # flake mean, spread, zoom, threshold, blur radius, blur sigma, image weight
    "snow": (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),  # image weight, frost weight
    "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),  # strength, wibble decay
    # mean, spread, smoothing, threshold, intensity, is_mud
    "spatter": (
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # HSV value shift
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),  # saturation scale, shift
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # factor
    "elastic_transform": tuple(
        (alpha, 0.01, 0.005) for alpha in (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
    ),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # resize factor
    "jpeg_compression": (25, 18, 15, 10, 7),  # quality
}


def _imagecorruptions_function(name: str) -> CorruptionFunction:
    def corrupt(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        # Imported here: the package pulls in numba, which the cifar profile never needs.
        import imagecorruptions

        global_seed = int(rng.integers(_SEED_LIMIT))
        keyword_arguments = {"seed": int(rng.integers(_SEED_LIMIT))} if name in _SEED_ARGUMENT else {}
        saved_state = np.random.get_state()
        try:
            np.random.seed(global_seed)
            return imagecorruptions.corrupt(image, severity=severity, corruption_name=name, **keyword_arguments)
        finally:
            np.random.set_state(saved_state)

    corrupt.__name__ = name
    corrupt.__doc__ = f"imagecorruptions' {name} (ImageNet-C, 224-px parameters), seeded from ``rng``."
    return corrupt


for _name in ALL_CORRUPTIONS:
    IMAGENET_PROFILE.add(_name, _imagecorruptions_function(_name))
