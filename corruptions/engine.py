"""Apply corruptions to images and batches, deterministically and in parallel.

Determinism contract: the output for one image depends only on its pixels and on
(dataset index, corruption, severity, seed, profile). Each image gets its own generator,
``default_rng(SeedSequence([seed, index, corruption_id, severity]))``, so results are
identical whatever the batch composition, chunking or number of worker processes.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from tqdm import tqdm

from corruptions._checks import check_index, check_indices, check_seed, check_uint8_images
from corruptions._lifeline import die_with, terminate_pool
from corruptions._registry import Registry
from corruptions._workers import script_safe_context
from corruptions.cifar_profile import CIFAR_PROFILE
from corruptions.errors import CorruptionError
from corruptions.imagenet_profile import IMAGENET_PROFILE, MINIMUM_SIDE
from corruptions.registry import PROFILES, CorruptionFunction, check_severity, corruption_id

Condition = tuple[str, int]

PROFILE_REGISTRY: Registry[Registry[CorruptionFunction]] = Registry("corruption profile")
PROFILE_REGISTRY.add("cifar", CIFAR_PROFILE)
PROFILE_REGISTRY.add("imagenet", IMAGENET_PROFILE)
assert tuple(PROFILE_REGISTRY.names()) == PROFILES, "PROFILES and the profile registry disagree"

# Minimum image side per profile (imagecorruptions rejects images under 32 px).
_MINIMUM_SIDE = {"cifar": 1, "imagenet": MINIMUM_SIDE}
# Upper bounds for one task: small enough to balance load, large enough that the
# per-task overhead (pickling, scheduling) stays negligible next to the work.
_MAX_IMAGES_PER_TASK = 128
_MAX_BYTES_PER_TASK = 8 * 2**20


def image_generator(seed: int, index: int, corruption: str, severity: int) -> np.random.Generator:
    """The random generator for one image; a pure function of its arguments."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, corruption_id(corruption), severity]))


# ---------------------------------------------------------------- validation


def _check_profile(profile: str) -> Registry[CorruptionFunction]:
    return PROFILE_REGISTRY.get(profile)


def _check_condition(corruption: str, severity: object) -> Condition:
    corruption_id(corruption)  # raises CorruptionError listing the known names
    return corruption, check_severity(corruption, severity)


def _check_image_array(images: object, batch: bool, profile: str) -> np.ndarray:
    images = check_uint8_images(images, batch)
    height, width = images.shape[-3:-1]
    minimum = _MINIMUM_SIDE[profile]
    if height < minimum or width < minimum:
        raise CorruptionError(
            f"the {profile!r} profile needs images of at least {minimum}x{minimum} px, got {height}x{width}"
        )
    return images


# ---------------------------------------------------------------- work


def _apply(function: CorruptionFunction, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    result = np.asarray(function(image, severity, rng))
    if result.shape != image.shape:
        raise RuntimeError(f"corruption {function.__name__} returned shape {result.shape} for {image.shape}")
    if result.dtype == np.uint8:
        return result
    # Truncate, not round: the reference generators convert with np.uint8(...).
    return np.clip(result, 0, 255).astype(np.uint8)


def _corrupt_chunk(
    images: np.ndarray, indices: np.ndarray, corruption: str, severity: int, profile: str, seed: int
) -> np.ndarray:
    function = PROFILE_REGISTRY.get(profile).get(corruption)
    corrupted = np.empty_like(images)
    for position, (image, index) in enumerate(zip(images, indices)):
        rng = image_generator(seed, int(index), corruption, severity)
        corrupted[position] = _apply(function, image, severity, rng)
    return corrupted


def _worker_setup(main_pid: int) -> None:
    # Killing the main process must not leave workers running (see corruptions._lifeline).
    die_with(main_pid)
    # One process per core already; OpenCV's own thread pool would only oversubscribe.
    import cv2

    cv2.setNumThreads(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Spawned workers that never import the caller's main module, so a script without a
    # __main__ guard is not run again in each worker (and no thread pool is inherited
    # mid-use, as with "fork"); see corruptions/_workers.py.
    return script_safe_context()


def images_per_task(count: int, condition_count: int, workers: int, image_bytes: int) -> int:
    """Images per task when ``count`` images are split over ``workers`` processes."""
    # Split every condition across all workers (twice over): conditions differ in cost
    # by 100x (glass blur vs brightness), so whole-condition tasks leave a worker idle
    # while the other finishes the slowest one.
    balanced = math.ceil(count / (2 * max(workers, 1)))
    largest = min(_MAX_IMAGES_PER_TASK, max(1, _MAX_BYTES_PER_TASK // max(image_bytes, 1)))
    return max(1, min(balanced, largest))


def _unique(conditions: Iterable[Condition]) -> list[Condition]:
    return list(dict.fromkeys(conditions))


# ---------------------------------------------------------------- public API


_POOLS: dict[int, ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` workers, started once per process and reused.

    Starting workers costs about a second (imports) plus imagecorruptions' numba
    compilation in each fresh worker; a run generates corruptions and perturbations in
    several calls, so one long-lived pool pays that once. Shut down at interpreter exit.
    """
    pool = _POOLS.get(workers)
    if pool is None:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=_pool_context(), initializer=_worker_setup, initargs=(os.getpid(),)
        )
        _POOLS[workers] = pool
        atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


def run_chunks(
    function: Callable[..., np.ndarray],
    tasks: Sequence[tuple[Hashable, int, int, tuple]],
    results: dict[Any, np.ndarray],
    workers: int,
    bar: tqdm,
) -> None:
    """Runs ``function(*arguments)`` for each ``(key, start, stop, arguments)`` task and
    stores the output in ``results[key][start:stop]``, in this process (``workers <= 1``)
    or in one pool of worker processes. The first failing task cancels the rest and its
    exception propagates. Shared by corruption and perturbation generation.
    """
    if workers <= 1 or len(tasks) == 1:
        for key, start, stop, arguments in tasks:
            results[key][start:stop] = function(*arguments)
            bar.update(stop - start)
        return
    executor = worker_pool(workers)
    try:
        pending: dict[Future, tuple[Hashable, int, int]] = {
            executor.submit(function, *arguments): (key, start, stop) for key, start, stop, arguments in tasks
        }
    except BrokenProcessPool:
        _POOLS.pop(workers, None)
        raise
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                key, start, stop = pending.pop(future)
                results[key][start:stop] = future.result()
                bar.update(stop - start)
    except BaseException as error:
        for other in pending:
            other.cancel()
        if isinstance(error, BrokenProcessPool):
            # A worker died (killed, out of memory): the next call starts a fresh pool.
            _POOLS.pop(workers, None)
        elif not isinstance(error, Exception):
            # Interrupted (SIGINT, or SIGTERM turned into an exception by the CLI): end the
            # workers now rather than after their current task.
            terminate_pool(_POOLS.pop(workers, executor))
        raise


def corrupt_image(
    image: np.ndarray, corruption: str, severity: int, *, profile: str = "cifar", seed: int = 0, index: int = 0
) -> np.ndarray:
    """Corrupt one HxWx3 uint8 image; the same arguments always give identical bytes."""
    functions = _check_profile(profile)
    corruption, severity = _check_condition(corruption, severity)
    image = _check_image_array(image, batch=False, profile=profile)
    seed = check_seed(seed)
    index = check_index(index)
    return _apply(functions.get(corruption), image, severity, image_generator(seed, index, corruption, severity))


def corrupt_batch(
    images: np.ndarray,
    corruption: str,
    severity: int,
    *,
    profile: str = "cifar",
    seed: int = 0,
    indices: np.ndarray | None = None,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Corrupt an NxHxWx3 uint8 batch; image i depends only on (indices[i], corruption, severity, seed, profile)."""
    condition = _check_condition(corruption, severity)
    results = corrupt_many(
        images, [condition], profile=profile, seed=seed, indices=indices, workers=workers, progress=progress
    )
    return results[condition]


def corrupt_many(
    images: np.ndarray,
    conditions: Sequence[tuple[str, int]],
    *,
    profile: str = "cifar",
    seed: int = 0,
    indices: np.ndarray | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[Condition, np.ndarray]:
    """Corrupt a batch under every (corruption, severity) condition, sharing one process pool.

    Tasks are chunks of images times conditions, so all conditions load-balance together.
    ``workers <= 1`` runs in this process. Returns ``{(corruption, severity): NxHxWx3 uint8}``.
    """
    _check_profile(profile)
    checked = _unique(_check_condition(corruption, severity) for corruption, severity in conditions)
    images = _check_image_array(images, batch=True, profile=profile)
    seed = check_seed(seed)
    count = images.shape[0]
    indices = check_indices(indices, count)

    results = {condition: np.empty_like(images) for condition in checked}
    if count == 0 or not checked:
        return results

    image_bytes = int(np.prod(images.shape[1:]))
    chunk = images_per_task(count, len(checked), workers, image_bytes)
    tasks = [(condition, start, min(start + chunk, count)) for condition in checked for start in range(0, count, chunk)]

    work = [
        (
            (corruption, severity),
            start,
            stop,
            (images[start:stop], indices[start:stop], corruption, severity, profile, seed),
        )
        for (corruption, severity), start, stop in tasks
    ]
    with tqdm(
        total=count * len(checked), desc=f"corrupting ({profile})", unit="image", file=sys.stderr, disable=not progress
    ) as bar:
        run_chunks(_corrupt_chunk, work, results, workers, bar)
    return results
