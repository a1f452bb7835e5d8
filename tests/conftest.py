"""Shared test setup: one torch thread (the test machine's two cores are shared)."""
from __future__ import annotations

import torch

torch.set_num_threads(1)
