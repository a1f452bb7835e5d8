"""Where the corruption suite's inputs come from besides generation: the on-disk cache
(``cache_dir``) and the index into a pre-made set (``corruption_data``/``perturbation_data``)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites.base import RunContext
from robustbench_lift.utils.digest import array_digest
from robustbench_lift.utils.io import PARTIAL, atomic_save_npy

__all__ = ["cache_path", "engine_label", "load_cached", "published_positions", "sample_key"]

log = logging.getLogger(__name__)

Pair = tuple[str, int]
Generate = Callable[[RunContext, list[Pair]], dict[Pair, Any]]


def engine_label(engine: str, device: str) -> str:
    """The engine as the cache key needs it: ``numpy``, or ``torch-cpu`` / ``torch-cuda``
    (the torch engine's random corruptions give other bytes on another device type)."""
    from corruptions.engines import ENGINES

    if not ENGINES.get(engine).device_dependent:
        return engine
    return f"{engine}-{device.split(':')[0]}"


def sample_key(context: RunContext) -> str:
    """Hash of the sampled indices and their clean pixels."""
    return array_digest(np.asarray(context.indices, dtype=np.int64), context.dataset.images)


def cache_path(
    context: RunContext, corruption: str, severity: int, key: str | None = None, engine: str = "numpy"
) -> Path:
    """Where ``cache_dir`` keeps one condition's corrupted inputs.

    The key covers everything the pixels depend on: data set, split, the sampled indices
    and clean pixels (hashed), corruption, severity, profile, seed, the engine (with its
    device type where that changes the bytes, :func:`engine_label`) and the package
    version, so inputs of the two engines never mix. ``key``: :func:`sample_key` of the
    context, if known.
    """
    from robustbench_lift._version import __version__

    config = context.config
    material = "|".join(
        [
            config.dataset,
            config.split,
            key or sample_key(context),
            corruption,
            str(severity),
            config.profile,
            str(config.seed),
            engine,
            __version__,
        ]
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:24]
    return (
        Path(config.cache_dir)
        / "corruption"
        / f"{config.dataset}-{config.split}"
        / f"{corruption}-{severity}-{config.profile}-{engine}-{digest}.npy"
    )


def load_cached(context: RunContext, pairs: list[Pair], generate: Generate, engine: str = "numpy") -> dict[Pair, Any]:
    """The inputs of ``pairs`` from the cache; missing ones are generated and stored.

    Cached inputs come back as ``N x H x W x 3`` arrays; generated ones as ``generate``
    returned them (tensors on the device for the torch engine, stored as arrays).
    ``engine``: :func:`engine_label` of the generating engine (part of the key)."""
    found: dict[Pair, np.ndarray] = {}
    shape = context.dataset.images.shape
    key = sample_key(context)
    for pair in pairs:
        path = cache_path(context, *pair, key=key, engine=engine)
        if not path.is_file():
            continue
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable cache file %s (%s)", path, error)
            continue
        if array.shape == shape and array.dtype == np.uint8:
            found[pair] = array
        else:
            log.warning("ignoring cache file %s: holds %s %s, expected uint8 %s", path, array.dtype, array.shape, shape)
    missing = [pair for pair in pairs if pair not in found]
    log.info("corruption cache %s: %d of %d conditions cached", context.config.cache_dir, len(found), len(pairs))
    if missing:
        generated = generate(context, missing)
        for pair, array in generated.items():
            from corruptions.engines import to_nhwc_array

            path = cache_path(context, *pair, key=key, engine=engine)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Several runs may share a cache: the temporary name carries the process id.
                atomic_save_npy(
                    path, to_nhwc_array(array), temporary=path.with_name(f".{path.name}.{os.getpid()}{PARTIAL}")
                )
            except OSError as error:
                raise UserError(
                    f"cannot write to cache_dir {context.config.cache_dir}: {error.strerror or error}"
                ) from None
        found.update(generated)
    return {pair: found[pair] for pair in pairs}


def published_positions(root: str, layout: str | None, indices: np.ndarray) -> np.ndarray:
    """Positions in a pre-made set of the run's sampled data-set ``indices``.

    A published set holds the whole split in order (position = data-set index). A set we
    wrote for a subset records that subset's indices in its manifest; we map through them.
    """
    from robustbench_lift.data.published import detect_layout, read_manifest

    manifest = read_manifest(root) or {}
    if "indices" not in manifest:
        return np.asarray(indices, dtype=np.int64)
    stored = np.asarray(manifest["indices"], dtype=np.int64)
    if (layout or detect_layout(root)) != "cifar-c":
        stored = np.sort(stored)  # image folders are read in data-set index order
    lookup = {int(index): position for position, index in enumerate(stored)}
    missing = [int(index) for index in indices if int(index) not in lookup]
    if missing:
        raise UserError(
            f"{root} holds no images for {len(missing)} of the sampled test images (e.g. index {missing[0]}); write it for this sample or sample fewer"
        )
    return np.array([lookup[int(index)] for index in indices], dtype=np.int64)
