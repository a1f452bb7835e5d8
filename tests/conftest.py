"""Shared test setup: one torch thread, the test tiers' markers, and shared paths.

Markers (registered in pyproject.toml):

- ``slow``: over about 5 s (subprocess CLI runs, benchmark runs, training, zoo models on
  many images); ``browser``: drives headless Chromium; ``ray``: starts Ray;
  ``needs_data``: needs Fashion-MNIST on disk (skipped here when it is missing).

The fast tier is ``pytest -m "not slow and not browser and not ray"``; plain ``pytest``
runs everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustbench_lift.data.datasets import DEBIAN_FASHION_MNIST

# The test machine's cores are shared; one thread keeps timings and load predictable.
torch.set_num_threads(1)

REPOSITORY = Path(__file__).resolve().parents[1]
FASHION_MNIST_PRESENT = (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips ``needs_data`` tests when Fashion-MNIST is not installed."""
    if FASHION_MNIST_PRESENT:
        return
    skip = pytest.mark.skip(reason="Fashion-MNIST (Debian dataset-fashion-mnist) not installed")
    for item in items:
        if "needs_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repository() -> Path:
    """The repository's root folder."""
    return REPOSITORY
