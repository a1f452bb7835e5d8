"""Names of what a run can evaluate, for the public API and ``robustbench-lift list`` (no torch)."""

from __future__ import annotations

__all__ = ["list_corruptions", "list_perturbations"]


def list_corruptions(which: str = "all") -> list[str]:
    """Corruption names: the ``common`` 15 (in mCE), the ``extra`` 4, or ``all``."""
    from corruptions import corruption_names

    return corruption_names(which)


def list_perturbations(which: str = "all") -> list[str]:
    """Perturbation names: the ``main`` 10 (in mFR), the ``extra`` 4, or ``all``."""
    from corruptions.perturbations import perturbation_names

    return perturbation_names(which)
