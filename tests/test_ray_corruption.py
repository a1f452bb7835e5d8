"""Corruption generation on Ray: ``corrupt --executor ray`` writes the local writer's bytes and
resumes like it; ``run --executor ray`` generates corrupted inputs in the workers, not the driver.

One local Ray instance (2 CPUs) serves the whole module; every test skips without Ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import robustbench_lift.data.writer as writer_module
from robustbench_lift.data.base import ImageDataset
from robustbench_lift.data.writer import write_corruption_set
from robustbench_lift.errors import UserError
from robustbench_lift.run.config import config_from_mapping
from robustbench_lift.run.executors import EXECUTORS, RayExecutor

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'robustbench-lift[distributed]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        executor = EXECUTORS.get("ray")(config_from_mapping({"executor": "ray", "workers": 2}))
        executor.start()  # attaches to the instance above
        yield executor
    finally:
        ray.shutdown()


def fixture_dataset() -> ImageDataset:
    images = np.random.default_rng(4).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    return ImageDataset("toy", images, np.array([1, 0, 1, 1, 0, 1], dtype=np.int64), ["zebra", "ant"])


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture
def two_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three images per chunk: every unit of the 6-image fixture arrives in two pieces, in any order.
    monkeypatch.setattr(writer_module, "_CHUNK_BYTES", 3 * 32 * 32 * 3)


@pytest.mark.parametrize(
    ("layout", "corruptions", "severities"),
    [("cifar-c", ["gaussian_noise", "contrast"], [1, 2, 3, 4, 5]), ("imagenet-c", ["glass_blur", "fog"], [2, 5])],
)
def test_ray_writer_gives_the_local_bytes_and_resumes(
    tmp_path: Path,
    ray_executor: RayExecutor,
    two_chunks: None,
    layout: str,
    corruptions: list[str],
    severities: list[int],
) -> None:
    dataset = fixture_dataset()
    indices = np.array([3, 10, 11, 40, 41, 90])
    arguments = dict(seed=2, workers=1, progress=False, indices=indices)
    local = write_corruption_set(dataset, tmp_path / "local", layout, corruptions, severities, **arguments)
    distributed = write_corruption_set(
        dataset, tmp_path / "ray", layout, corruptions, severities, mapper=ray_executor, **arguments
    )
    expected = files(local)
    assert files(distributed) == expected

    # Resume: a lost unit and a killed run's leftovers; only the missing unit is written again.
    lost = tmp_path / "ray" / ("contrast.npy" if layout == "cifar-c" else "fog/5")
    if lost.is_dir():
        import shutil

        shutil.rmtree(lost)
    else:
        lost.unlink()
    (tmp_path / "ray" / f"leftover{writer_module.PARTIAL}").write_bytes(b"partial")
    kept = tmp_path / "ray" / ("gaussian_noise.npy" if layout == "cifar-c" else "glass_blur/2")
    before = kept.stat().st_mtime_ns
    write_corruption_set(dataset, tmp_path / "ray", layout, corruptions, severities, mapper=ray_executor, **arguments)
    assert files(distributed) == expected
    assert kept.stat().st_mtime_ns == before


def test_ray_writer_torch_engine_and_device(tmp_path: Path, ray_executor: RayExecutor) -> None:
    dataset = fixture_dataset()
    arguments = dict(workers=1, progress=False, engine="torch")
    local = write_corruption_set(dataset, tmp_path / "local", "imagenet-c", ["snow"], [3], **arguments)
    distributed = write_corruption_set(
        dataset, tmp_path / "ray", "imagenet-c", ["snow"], [3], mapper=ray_executor, **arguments
    )
    assert files(distributed) == files(local)
    with pytest.raises(UserError, match="workers' CPUs"):
        write_corruption_set(
            dataset, tmp_path / "gpu", "imagenet-c", ["snow"], [3], mapper=ray_executor, device="cuda", **arguments
        )


@pytest.mark.needs_data
@pytest.mark.slow
def test_ray_run_generates_inputs_in_the_workers(
    tmp_path: Path, ray_executor: RayExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustbench_lift.evaluation.suites.corruption import CorruptionSuite
    from robustbench_lift.run.runner import run_benchmark

    values = dict(
        models=["max", "avg"],
        suites=["corruption"],
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 3],
        sample_size=40,
        workers=2,
        output_dir=str(tmp_path),
    )
    local = run_benchmark(config_from_mapping(values | {"run_name": "local"}))

    def not_here(*arguments: object, **keywords: object) -> None:
        raise AssertionError("the driver generated corrupted inputs")

    # Patched in this (the driver's) process only; Ray's worker processes keep the real one.
    monkeypatch.setattr(CorruptionSuite, "_generate", not_here)
    distributed = run_benchmark(config_from_mapping(values | {"run_name": "ray", "executor": "ray"}))
    tables = [pd.read_csv(folder / "results.csv").drop(columns="run") for folder in (local, distributed)]
    pd.testing.assert_frame_equal(tables[1], tables[0])
    assert set(tables[1].dropna(subset=["corruption_engine"])["corruption_engine"]) == {"numpy"}
