"""The run's ETA accounts for cells of very different cost (CostModel), and the bar names model and suite."""

from __future__ import annotations

import io

import pytest

from robustbench_lift.run.progress import CellProgress, CostModel

# Expected work per cell: an attack cell is 50x a corruption cell's work.
WORK = {"corruption": 200.0, "adversarial": 200.0 * 50}
CONDITIONS = {"corruption": [f"c{i}" for i in range(10)], "adversarial": ["fgsm", "pgd"]}


def work(suite: str, condition: str) -> float:
    return WORK[suite]


def plan(models: list[str]) -> list[tuple[str, str, str]]:
    return [(model, suite, condition) for model in models for suite in CONDITIONS for condition in CONDITIONS[suite]]


def test_unseen_suite_is_estimated_from_its_expected_work() -> None:
    costs = CostModel(work)
    for condition in CONDITIONS["corruption"][:3]:
        costs.observe(("a", "corruption", condition), 1.0)
    # 7 corruption cells at 1 s and 2 attack cells at 50x the work: 107 s, not 9 x 1 s.
    pending = [key for key in plan(["a"]) if key[2] not in ("c0", "c1", "c2")]
    assert costs.remaining(pending) == pytest.approx(7 + 2 * 50)


def test_same_condition_on_another_model_is_used_and_scaled_by_model_speed() -> None:
    costs = CostModel(work)
    truth = {"fgsm": 20.0, "pgd": 300.0}  # attacks differ in cost far more than their work hint says
    for model, suite, condition in plan(["a"]):
        costs.observe((model, suite, condition), truth.get(condition, 1.0))
    assert costs.remaining([("b", "adversarial", "pgd")]) == pytest.approx(300.0)
    # Model b turns out twice as slow on the conditions it shares with a.
    for condition in CONDITIONS["corruption"][:4]:
        costs.observe(("b", "corruption", condition), 2.0)
    assert costs.model_speeds()["b"] == pytest.approx(2.0, rel=1e-6)
    pending = [("b", "corruption", "c9"), ("b", "adversarial", "fgsm"), ("b", "adversarial", "pgd")]
    assert costs.remaining(pending) == pytest.approx(2 * (1 + 20 + 300), rel=1e-6)


def test_no_estimate_before_the_first_cell() -> None:
    assert CostModel(work).remaining(plan(["a"])) is None
    assert CostModel(work).remaining([]) == 0.0


def test_bar_names_model_and_suite_and_shows_the_eta() -> None:
    stream = io.StringIO()
    cells = plan(["mine"])
    with CellProgress(cells, work, stream=stream) as progress:
        assert progress.eta_seconds() is None
        progress.finished(cells[0], 2.0)
        assert progress.eta_seconds() == pytest.approx(9 * 2.0 + 2 * 100.0)
    text = stream.getvalue()
    assert "mine / corruption" in text and "ETA 03:38" in text and "1/12 cells" in text


def test_eta_divides_by_the_cells_evaluated_at_once() -> None:
    cells = plan(["mine"])
    with CellProgress(cells, work, stream=io.StringIO(), parallelism=2) as progress:
        progress.finished(cells[0], 2.0)
        assert progress.eta_seconds() == pytest.approx((9 * 2.0 + 2 * 100.0) / 2)
