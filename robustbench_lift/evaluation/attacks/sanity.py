"""Sanity checks of attack results: the signs of gradient masking or a non-deterministic model."""

from __future__ import annotations

import math
from typing import Any

from robustbench_lift.evaluation.attacks.base import ATTACKS

__all__ = ["sanity_warnings"]


def sanity_warnings(rows: list[dict[str, Any]], clean_accuracy: float) -> list[str]:
    """Gradient-masking checks (``docs/attacks.md``) over all rows of one model.

    ``rows`` may mix attacks; ``clean_accuracy`` must be measured on the same inputs.
    Flags, with a tolerance of one input (1/n) where sampling could matter:

    1. robust accuracy at epsilon 0 differs from clean accuracy (non-deterministic model);
    2. robust accuracy rises with epsilon by more than 1/n;
    3. an iterative attack is weaker than its single-step counterpart at the same
       epsilon by more than 1/n (an attack's ``stronger_than``: pgd_linf vs fgsm, pgd_l2 vs fgm_l2);
    4. at its largest epsilon > 0 an attack flipped none of the correct predictions,
       the signature of zero or useless gradients (quantised or saturated inputs).

    Each message is appended to the ``warning`` field of the rows it concerns (once,
    so calling twice changes nothing); the list of distinct messages is returned.
    Rows with status "failed" are skipped.
    """
    messages: list[str] = []

    def flag(row: dict[str, Any], text: str) -> None:
        current = row.get("warning") or ""
        if text not in current:
            row["warning"] = f"{current}; {text}" if current else text
        if text not in messages:
            messages.append(text)

    usable = [row for row in rows if row.get("status") == "ok"]
    by_attack: dict[str, list[dict[str, Any]]] = {}
    for row in usable:
        by_attack.setdefault(row["attack"], []).append(row)

    for name, attack_rows in by_attack.items():
        ordered = sorted(attack_rows, key=lambda row: row["epsilon"])
        for row in ordered:
            if row["epsilon"] == 0 and abs(row["robust_accuracy"] - clean_accuracy) > 0.5 / row["n"]:
                flag(
                    row,
                    f"{name}: robust accuracy at epsilon 0 ({row['robust_accuracy']:.4f}) differs from "
                    f"clean accuracy ({clean_accuracy:.4f}); model predictions are not deterministic",
                )
        lowest = math.inf
        for row in ordered:
            if row["robust_accuracy"] > lowest + 1 / row["n"] + 1e-12:
                flag(
                    row,
                    f"{name}: robust accuracy rises with epsilon to {row['robust_accuracy']:.4f} at "
                    f"epsilon {row['epsilon']:.4g} (lower at a smaller epsilon); attack unreliable, "
                    "gradients may be masked",
                )
            lowest = min(lowest, row["robust_accuracy"])
        largest = ordered[-1]
        if largest["epsilon"] > 0 and largest["clean_correct"] > 0 and largest["flipped_correct_share"] == 0:
            flag(
                largest,
                f"{name}: no correct prediction flipped even at epsilon {largest['epsilon']:.4g}; "
                "gradients are probably zero or masked",
            )

    stronger_than = {
        name: spec.stronger_than for name, spec in ((name, ATTACKS.get(name)) for name in by_attack if name in ATTACKS)
    }
    for stronger, weaker in stronger_than.items():
        if weaker is None:
            continue
        for strong_row in by_attack.get(stronger, []):
            for weak_row in by_attack.get(weaker, []):
                if not math.isclose(strong_row["epsilon"], weak_row["epsilon"], rel_tol=1e-9, abs_tol=1e-12):
                    continue
                if strong_row["robust_accuracy"] > weak_row["robust_accuracy"] + 1 / strong_row["n"] + 1e-12:
                    text = (
                        f"{stronger} is weaker than {weaker} at epsilon {strong_row['epsilon']:.4g} "
                        f"(robust accuracy {strong_row['robust_accuracy']:.4f} > "
                        f"{weak_row['robust_accuracy']:.4f}); gradients may be masked"
                    )
                    flag(strong_row, text)
                    flag(weak_row, text)
    return messages
