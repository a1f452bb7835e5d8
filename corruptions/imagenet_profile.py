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
