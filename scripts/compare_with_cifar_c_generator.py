"""Compare the ``cifar`` corruption profile byte by byte with the CIFAR-10-C generator itself.

Runs the corruption functions of ``make_cifar_c.py`` (hendrycks/robustness,
``ImageNet-C/create_c/``; pass its path) and ours on the same images with the same random
draws, and counts the corruption x severity pairs whose uint8 output is identical on every
image. The generator is executed from its own file (only the part that defines the
corruptions), with small shims for today's libraries: numpy's global random functions
are redirected to the per-image generator our engine uses, ``skimage.filters.gaussian``'s
removed ``multichannel`` argument is translated, and ``np.float_``/``np.fromstring`` are
renamed. It needs what the generator needs: ImageMagick and the ``Wand`` package
(e.g. ``apt-get install libmagickwand-6.q16-6`` and ``pip install Wand``), and the
frost pictures next to the script, as in the repository. Test images are crops of
scikit-image's sample photographs, box-resized to 32 x 32.

Usage:
    python scripts/compare_with_cifar_c_generator.py PATH/TO/make_cifar_c.py [--images 40] [corruption ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def load_generator(path: Path, rng_holder: dict[str, np.random.Generator]) -> dict[str, Callable[..., Any]]:
    """The generator's corruption functions, executed from its own source with the shims above."""
    import scipy.ndimage
    import skimage.filters
    import skimage.util

    sys.modules.setdefault("scipy.ndimage.interpolation", scipy.ndimage)  # removed alias
    source = path.read_text()
    code = source[source.index("import skimage as sk") : source.index("# /////////////// End Distortions")]
    code = (
        code.replace("np.float_", "np.float64")
        .replace("np.fromstring", "np.frombuffer")
        .replace("np.random.", "_random.")
        .replace("sk.util.random_noise(", "_random_noise(")
    )

    class GlobalRandom:
        """numpy's legacy global functions, drawing from the current image's generator."""

        def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
            return rng_holder["rng"].normal(loc, scale, size)

        def poisson(self, lam: Any = 1.0, size: Any = None) -> Any:
            return rng_holder["rng"].poisson(lam, size)

        def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
            return rng_holder["rng"].uniform(low, high, size)

        def randint(self, low: int, high: int | None = None, size: Any = None) -> Any:
            return rng_holder["rng"].integers(low, high, size)

    def gaussian(
        image: np.ndarray,
        sigma: float = 1,
        multichannel: bool | None = None,
        **options: Any,
    ) -> np.ndarray:
        return skimage.filters.gaussian(image, sigma=sigma, channel_axis=-1 if multichannel else None, **options)

    def random_noise(image: np.ndarray, **options: Any) -> np.ndarray:
        return skimage.util.random_noise(image, rng=rng_holder["rng"], **options)

    namespace: dict[str, Any] = {
        "np": np,
        "_random": GlobalRandom(),
        "_random_noise": random_noise,
    }
    exec(compile(code, str(path), "exec"), namespace)
    namespace["gaussian"] = gaussian
    return namespace


def sample_images(count: int) -> list[np.ndarray]:
    import skimage.data
    from PIL import Image

    photographs = [
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.rocket(),
    ]
    rng = np.random.default_rng(12345)
    images = []
    for index in range(count):
        photograph = photographs[index % len(photographs)]
        side = int(rng.integers(40, min(photograph.shape[:2])))
        top = int(rng.integers(0, photograph.shape[0] - side))
        left = int(rng.integers(0, photograph.shape[1] - side))
        crop = Image.fromarray(photograph[top : top + side, left : left + side])
        images.append(np.array(crop.resize((32, 32), Image.BOX)))
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "generator",
        type=Path,
        help="path to make_cifar_c.py (frost pictures beside it)",
    )
    parser.add_argument("corruptions", nargs="*", help="corruptions to compare (default: all 19)")
    parser.add_argument("--images", type=int, default=40, help="test images per corruption and severity")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    from PIL import Image

    import corruptions
    from corruptions.engine import image_generator

    rng_holder: dict[str, np.random.Generator] = {}
    generator = load_generator(arguments.generator.resolve(), rng_holder)
    names = arguments.corruptions or corruptions.corruption_names()
    images = sample_images(arguments.images)
    os.chdir(arguments.generator.resolve().parent)  # frost reads ./frost*.png
    identical_pairs = 0
    for name in names:
        for severity in corruptions.SEVERITIES:
            same, largest, differing = 0, 0, 0
            for index, image in enumerate(images):
                rng_holder["rng"] = image_generator(arguments.seed, index, name, severity)
                with np.errstate(all="ignore"):  # the generator's own 0/0 and overflow warnings
                    theirs = np.uint8(generator[name](Image.fromarray(image), severity))
                ours = corruptions.corrupt_image(image, name, severity, seed=arguments.seed, index=index)
                difference = np.abs(theirs.astype(np.int64) - ours.astype(np.int64))
                same += int(not difference.any())
                largest, differing = (
                    max(largest, int(difference.max())),
                    differing + int((difference > 0).sum()),
                )
            identical_pairs += same == len(images)
            print(f"{name:18s} severity {severity}: {same}/{len(images)} images identical, "
                  f"{differing} values differ, by at most {largest}", flush=True)  # fmt: skip
    print(
        f"byte-identical on all {len(images)} images: {identical_pairs} of {len(names) * 5} corruption x severity pairs"
    )
    return 0 if identical_pairs == len(names) * 5 else 1


if __name__ == "__main__":
    sys.exit(main())
