"""The HTML report: content, escaping, plot files, and a headless-Chromium check.

The browser check talks to Chromium over its DevTools pipe (``--remote-debugging-pipe``)
with a small client below, so it needs no Python package beyond the standard library and
sees console errors, uncaught exceptions, CSP violations, failed loads and dialogs
directly; without /usr/bin/chromium those tests skip and say why.

The run is a synthetic TEST FIXTURE: tables in the exact results.csv / summary.csv /
run.json schema with made-up numbers (no model is evaluated), so the test is fast and
covers every suite, a failed cell and a model whose name is HTML.
"""

from __future__ import annotations

import base64
import json
import math
import os
import select
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robustbench_lift.errors import UserError
from robustbench_lift.metrics import wilson_interval
from robustbench_lift.reporting import html as report_html
from robustbench_lift.reporting import plots
from robustbench_lift.reporting import tables as report_tables
from robustbench_lift.results import write_run

REFERENCE = "small_cnn-max"
LIFT = "small_cnn-lift"
HOSTILE = "<script>alert(1)</script>"
MODELS = {REFERENCE: ("max", 1.0), LIFT: ("lift", 0.8), HOSTILE: ("avg", 1.2)}
CORRUPTIONS = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
]
SEVERITIES = [1, 3, 5]
PERTURBATIONS = ["gaussian_noise", "motion_blur", "translate", "rotate"]
EPSILONS = {"fgsm": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "pgd_linf": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]}
FAILED_CONDITION = "glass_blur/5"
N = 200
EXPECTED_PLOTS = [
    "corruption_heatmap",
    "severity_noise",
    "severity_blur",
    "severity_weather",
    "severity_digital",
    "flip_probability",
    "shift_consistency",
    "robust_accuracy",
]
# ROBUSTBENCH_LIFT_CHROMIUM points at another Chromium build (e.g. /usr/bin/chromium-browser).
CHROMIUM = Path(os.environ.get("ROBUSTBENCH_LIFT_CHROMIUM", "/usr/bin/chromium"))
FASHION_MNIST_AVAILABLE = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists() or bool(
    os.environ.get("ROBUSTBENCH_LIFT_DATA")
)


# ------------------------------------------------------------------ synthetic run (test fixture)


def _proportion(successes: int, n: int) -> dict[str, float]:
    low, high = wilson_interval(successes, n)
    return {"value": successes / n, "low": low, "high": high}


def _base(model: str, pooling: str) -> dict[str, Any]:
    return {
        "run": "synthetic",
        "model": model,
        "architecture": "small_cnn",
        "pooling": pooling,
        "dataset": "fashion_mnist",
    }


def synthetic_results() -> pd.DataFrame:
    """results.csv rows for every suite; errors grow with severity and a model factor."""
    rows: list[dict[str, Any]] = []
    for model, (pooling, factor) in MODELS.items():
        base = _base(model, pooling)
        clean_errors = int(20 * factor)
        clean = _proportion(clean_errors, N)
        rows.append(
            base
            | {
                "suite": "clean",
                "condition": "clean",
                "family": "clean",
                "level": 0.0,
                "status": "ok",
                "n": N,
                "errors": clean_errors,
                "error": clean["value"],
                "error_low": clean["low"],
                "error_high": clean["high"],
            }
        )
        for position, corruption in enumerate(CORRUPTIONS):
            for severity in SEVERITIES:
                condition = f"{corruption}/{severity}"
                if model == LIFT and condition == FAILED_CONDITION:
                    rows.append(
                        base
                        | {
                            "suite": "corruption",
                            "condition": condition,
                            "family": corruption,
                            "level": float(severity),
                            "status": "failed",
                            "n": N,
                            "message": "model returned NaN or inf",
                        }
                    )
                    continue
                errors = min(N, clean_errors + int(factor * severity * (4 + position)))
                error = _proportion(errors, N)
                rows.append(
                    base
                    | {
                        "suite": "corruption",
                        "condition": condition,
                        "family": corruption,
                        "level": float(severity),
                        "status": "ok",
                        "n": N,
                        "errors": errors,
                        "error": error["value"],
                        "error_low": error["low"],
                        "error_high": error["high"],
                        "flip_share": (errors - clean_errors) / N,
                    }
                )
        for position, perturbation in enumerate(PERTURBATIONS):
            rows.append(
                base
                | {
                    "suite": "perturbation",
                    "condition": f"{perturbation}/d1",
                    "family": perturbation,
                    "level": 1.0,
                    "status": "ok",
                    "n": 50,
                    "frames": 31,
                    "flip_probability": 0.02 * factor * (position + 1),
                    "top5_distance": 0.1 * factor * (position + 1),
                }
            )
        same = int(N * (0.95 - 0.05 * factor))
        consistency = _proportion(same, N)
        rows.append(
            base
            | {
                "suite": "shift",
                "condition": "shift/4px",
                "family": "shift",
                "level": 4.0,
                "status": "ok",
                "n": N,
                "consistency": consistency["value"],
                "consistency_low": consistency["low"],
                "consistency_high": consistency["high"],
            }
        )
        for attack, epsilons in EPSILONS.items():
            for step, epsilon in enumerate(epsilons):
                correct = 50 - int(clean_errors / 4)
                robust = max(0, correct - int(step * 9 * factor * (1.3 if attack == "pgd_linf" else 1.0)))
                accuracy = _proportion(robust, 50)
                # One message at two budgets: the report lists it once, with both epsilons.
                warning = (
                    "robust accuracy rises with epsilon" if model == LIFT and attack == "fgsm" and step >= 3 else ""
                )
                rows.append(
                    base
                    | {
                        "suite": "adversarial",
                        "condition": f"{attack}/eps={epsilon:.5g}",
                        "family": attack,
                        "level": epsilon,
                        "status": "ok",
                        "n": 50,
                        "norm": "linf",
                        "clean_correct": correct,
                        "robust_correct": robust,
                        "robust_accuracy": accuracy["value"],
                        "robust_accuracy_low": accuracy["low"],
                        "robust_accuracy_high": accuracy["high"],
                        "success_rate": 1 - robust / correct,
                        "flipped_correct_share": 1 - robust / correct,
                        "warning": warning,
                    }
                )
    results = pd.DataFrame(rows)
    leading = [
        "run",
        "model",
        "architecture",
        "pooling",
        "dataset",
        "suite",
        "condition",
        "family",
        "level",
        "status",
        "n",
    ]
    return results[leading + [column for column in results.columns if column not in leading]]


def synthetic_summary(results: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: one row per model with the columns the suites write."""
    rows = []
    for model, (pooling, factor) in MODELS.items():
        mine = results[results["model"] == model]
        clean = mine[mine["suite"] == "clean"].iloc[0]
        shift = mine[mine["suite"] == "shift"].iloc[0]
        row: dict[str, Any] = {
            "model": model,
            "architecture": "small_cnn",
            "pooling": pooling,
            "recorded_clean_accuracy": 1 - clean["error"],
            "n": N,
        }
        row |= {
            "clean_error": clean["error"],
            "clean_error_low": clean["error_low"],
            "clean_error_high": clean["error_high"],
            "extra_mean_error": 0.3 * factor,
            "reference_model": REFERENCE,
        }
        for metric in ("mce", "relative_mce", "mfr", "mt5d"):
            row |= {metric: factor, f"{metric}_low": factor - 0.04, f"{metric}_high": factor + 0.04}
        row |= {
            "mean_corruption_error": 0.3 * factor,
            "mean_corruption_error_low": 0.28 * factor,
            "mean_corruption_error_high": 0.32 * factor,
            "mean_flip_probability": 0.05 * factor,
            "mean_top5_distance": 0.25 * factor,
        }
        row |= {
            "shift_consistency": shift["consistency"],
            "shift_consistency_low": shift["consistency_low"],
            "shift_consistency_high": shift["consistency_high"],
        }
        for attack, epsilons in EPSILONS.items():
            headline = mine[(mine["family"] == attack) & np.isclose(mine["level"].astype(float), epsilons[-1])].iloc[0]
            row |= {
                f"robust_accuracy_{attack}": headline["robust_accuracy"],
                f"robust_accuracy_{attack}_low": headline["robust_accuracy_low"],
                f"robust_accuracy_{attack}_high": headline["robust_accuracy_high"],
            }
        row["adversarial_warnings"] = int((mine["warning"].fillna("") != "").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def synthetic_record(data_dir: str | None = None) -> dict[str, Any]:
    config = {
        "dataset": "fashion_mnist",
        "split": "test",
        "data_dir": data_dir,
        "sample_size": N,
        "seed": 0,
        "profile": "cifar",
        "severities": SEVERITIES,
        "corruptions": "all",
        "suites": ["corruption", "perturbation", "shift", "adversarial"],
        "run_name": "synthetic",
    }
    models = {
        model: {
            "architecture": "small_cnn",
            "pooling": pooling,
            "pooling_options": {},
            "dataset": "fashion_mnist",
            "clean_test_accuracy": 0.9,
            "epochs": 6,
            "seed": 0,
        }
        for model, (pooling, _) in MODELS.items()
    }
    return {
        "run_name": "synthetic",
        "config": config,
        "seed": 0,
        "sample_size": N,
        "models": models,
        "versions": {"robustbench_lift": "0.1.0", "python": "3.11"},
        "machine": {"platform": "test", "cpu_count": 2},
        "timings": {
            "prepare": {"corruption": 1.0},
            "evaluate": {f"{model}/corruption": 2.0 for model in MODELS},
            "total_seconds": 9.0,
        },
    }


def make_synthetic_run(directory: Path, data_dir: str | None = None) -> Path:
    results = synthetic_results()
    return write_run(directory, results, synthetic_summary(results), synthetic_record(data_dir))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run with its report written once for the module."""
    run = make_synthetic_run(tmp_path_factory.mktemp("runs") / "synthetic")
    return report_html.write_report(run)


# ------------------------------------------------------------------ headless Chromium over the DevTools pipe


class HeadlessChromium:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (no extra packages).

    Collects console errors, uncaught exceptions, log errors (CSP violations, failed loads),
    network requests and dialogs while a page loads; evaluates JS; takes screenshots.
    """

    FLAGS = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
        "--window-size=1280,1000",
    ]

    def __init__(self, executable: Path, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        command_read, self.command_write = os.pipe()
        self.response_read, response_write = os.pipe()
        arguments = [str(executable), *self.FLAGS, f"--user-data-dir={profile}", "about:blank"]
        # Chromium reads commands on fd 3 and answers on fd 4: the pipes enter the shell as
        # stdin/stdout (subprocess moves them safely) and are moved to 3 and 4 there.
        self.process = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', "sh", *arguments],
            stdin=command_read,
            stdout=response_write,
            stderr=subprocess.DEVNULL,
        )
        os.close(command_read)
        os.close(response_write)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        target = next(info for info in self.send("Target.getTargets")["targetInfos"] if info["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable", session=self.session)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.response_read], [], [], remaining)
            if ready:
                chunk = os.read(self.response_read, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.command_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str) -> None:
        """Navigates and waits for the load event (and a moment for late console messages)."""
        self.send("Page.navigate", {"url": url}, session=self.session)
        deadline = time.monotonic() + self.timeout
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self._read_message(deadline))
        self.evaluate("new Promise(resolve => setTimeout(resolve, 200))")

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        shot = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=self.session
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and dialogs seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(
                    f"console.{params['type']}: {[argument.get('value') for argument in params.get('args', [])]}"
                )
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, TimeoutError, EOFError, RuntimeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self.command_write)
            os.close(self.response_read)


@pytest.fixture(scope="module")
def browser(report: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadlessChromium]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"headless browser check skipped: {CHROMIUM} is not installed (apt-get install chromium chromium-driver, or run bash scripts/bootstrap.sh test as root)"
        )
    chromium = HeadlessChromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.open(report.resolve().as_uri())
        yield chromium
    finally:
        chromium.close()


# ------------------------------------------------------------------ tests


@pytest.mark.browser
@pytest.mark.slow
def test_report_opens_in_chromium_without_errors(browser: HeadlessChromium, report: Path) -> None:
    assert browser.problems() == []
    # Self-contained: nothing but the page itself and inline data is requested.
    assert all(url.startswith(("file:", "data:")) for url in browser.requested_urls()), browser.requested_urls()
    screenshot = browser.screenshot(report.parent / "screenshot.png")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
@pytest.mark.slow
def test_report_key_elements_present(browser: HeadlessChromium) -> None:
    assert browser.evaluate("document.querySelectorAll('#leaderboard-table tbody tr').length") == len(MODELS)
    assert browser.evaluate("document.querySelectorAll('#ce-heatmap tbody tr').length") == len(MODELS)
    figures = browser.evaluate("Array.from(document.querySelectorAll('figure.plot')).map(f => f.id)")
    assert {f"plot-{name}" for name in EXPECTED_PLOTS if name != "corruption_heatmap"} <= set(figures)
    broken = browser.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    assert browser.evaluate("document.querySelectorAll('#failed-table tbody tr').length") == 1


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_model_name_shown_as_text_in_browser(browser: HeadlessChromium) -> None:
    names = browser.evaluate(
        "Array.from(document.querySelectorAll('#leaderboard-table tbody th.model-name')).map(c => c.firstChild.textContent.trim())"
    )
    assert HOSTILE in names
    assert browser.evaluate("document.querySelectorAll('tbody script').length") == 0


def test_report_escapes_hostile_model_name(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # only the report's own sorting script


@pytest.mark.browser
@pytest.mark.slow
def test_leaderboard_sorts_on_header_click(browser: HeadlessChromium) -> None:
    header = "document.querySelector('#leaderboard-table th[data-column=\"clean_error\"] button')"
    values = (
        "Array.from(document.querySelectorAll('#leaderboard-table tbody tr')).map(r => Number(r.cells[3].dataset.sort))"
    )
    browser.evaluate(f"{header}.click()")
    ascending = browser.evaluate(values)
    assert ascending == sorted(ascending)
    browser.evaluate(f"{header}.click()")
    descending = browser.evaluate(values)
    assert descending == sorted(ascending, reverse=True)
    assert (
        browser.evaluate(
            "document.querySelector('#leaderboard-table th[data-column=\"clean_error\"]').getAttribute('aria-sort')"
        )
        == "descending"
    )


def test_plots_saved_as_png_and_svg(report: Path) -> None:
    expected = EXPECTED_PLOTS + (["corruption_grid"] if FASHION_MNIST_AVAILABLE else [])
    for name in expected:
        png, svg = report.parent / "plots" / f"{name}.png", report.parent / "plots" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert ElementTree.parse(svg).getroot().tag.endswith("svg"), name


def test_report_is_self_contained_and_lists_metadata(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    for link in ('href="results.csv"', 'href="summary.csv"', 'href="run.json"', 'href="plots/severity_noise.svg"'):
        assert link in html
    for element in (
        'id="config-table"',
        'id="timings-table"',
        'id="versions-table"',
        'id="models-table"',
        'data-column="robust_accuracy_pgd_linf"',
    ):
        assert element in html
    if FASHION_MNIST_AVAILABLE:
        assert 'id="plot-corruption_grid"' in html
    else:
        assert "Corruption examples omitted" in html


def test_corruption_error_table_reads_results(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    table, measure = report_tables.corruption_error_table(tables)
    assert measure == "CE"
    assert np.allclose(table.loc[REFERENCE].dropna().to_numpy(), 1.0)
    results = tables.results
    ok = results[(results["suite"] == "corruption") & (results["status"] == "ok") & (results["family"] == "fog")]
    expected = ok[ok["model"] == LIFT]["error"].sum() / ok[ok["model"] == REFERENCE]["error"].sum()
    assert table.loc[LIFT, "fog"] == pytest.approx(expected)
    assert math.isnan(table.loc[LIFT, "glass_blur"])  # a failed severity leaves the cell empty
    heatmap = report_html.heatmap_context(tables)
    lift_row = next(row for row in heatmap["rows"] if row["model"] == LIFT)
    glass = [column["name"] for column in heatmap["columns"]].index("glass_blur")
    assert lift_row["cells"][glass]["text"] == "failed"


def test_corruption_error_table_against_alexnet_uses_the_severities_run(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    tables.summary["reference_model"] = "alexnet"
    table, measure = report_tables.corruption_error_table(tables)
    assert measure == "CE"
    fog = tables.results.query("model == @LIFT and family == 'fog' and status == 'ok'").set_index("level")["error"]
    assert sorted(fog.index) == [1.0, 3.0, 5.0]
    # AlexNet's published fog errors at severities 1, 3 and 5, not its five-severity mean.
    assert table.loc[LIFT, "fog"] == pytest.approx(fog.sum() / (0.67474 + 0.84378 + 0.94500), rel=1e-12)
    assert math.isnan(table.loc[LIFT, "spatter"])  # no AlexNet errors for the extra corruptions


def test_heatmap_falls_back_to_mean_error_without_reference(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    tables.summary["reference_model"] = ""
    table, measure = report_tables.corruption_error_table(tables)
    assert measure == "mean error"
    assert table.loc[REFERENCE, "fog"] == pytest.approx(
        tables.results.query("model == @REFERENCE and family == 'fog'")["error"].mean()
    )


def test_report_renders_with_missing_summary_columns(report: Path, tmp_path: Path) -> None:
    # A run of the corruption suite alone: no mFR, shift or attack columns, no other rows.
    results = synthetic_results()
    results = results[results["suite"].isin(["clean", "corruption"])].dropna(axis=1, how="all")
    summary = synthetic_summary(synthetic_results())[
        [
            "model",
            "architecture",
            "pooling",
            "n",
            "clean_error",
            "clean_error_low",
            "clean_error_high",
            "reference_model",
            "mce",
            "mce_low",
            "mce_high",
        ]
    ]
    run = write_run(tmp_path / "partial", results, summary, {"run_name": "partial", "config": {}})
    tables = report_tables.load_run(run)
    html = (
        report_html.template_environment()
        .get_template("report.html")
        .render(**report_html.report_context(tables, [], []))
    )
    assert 'data-column="mce"' in html and 'data-column="mfr"' not in html
    assert html.count("<tr data-model=") == len(MODELS)


def test_corruption_grid_omitted_with_note_when_data_missing(report: Path, tmp_path: Path) -> None:
    tables = report_tables.load_run(report.parent)
    tables.record = json.loads(json.dumps(tables.record))
    tables.record["config"]["data_dir"] = str(tmp_path / "no-data-here")
    outcome = plots.corruption_grid(tables)
    assert outcome.figures == []
    assert outcome.note and "omitted" in outcome.note


def test_write_report_without_run_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no finished run"):
        report_html.write_report(tmp_path)


@pytest.mark.browser
@pytest.mark.slow
def test_comparison_page_opens_without_errors(browser: HeadlessChromium, report: Path, tmp_path: Path) -> None:
    from robustbench_lift.reporting.comparison import compare_runs

    _, html_path = compare_runs(report.parent, report.parent, tmp_path / "comparison")
    browser.events.clear()
    browser.open(html_path.resolve().as_uri())
    assert browser.problems() == []
    assert browser.evaluate("document.querySelectorAll('#comparison-table tbody tr').length") > len(MODELS)


# ------------------------------------------------------------------ readability: colour scale, noise, relative mCE, warnings, axes


def tight_intervals(tables: report_tables.RunTables, half_width: float = 0.001) -> report_tables.RunTables:
    """The same run with per-condition intervals of ±half_width: no cell is within noise."""
    results = tables.results.copy()
    results["error_low"], results["error_high"] = results["error"] - half_width, results["error"] + half_width
    return report_tables.RunTables(tables.directory, results, tables.summary.copy(), tables.record)


def cell(heatmap: dict[str, Any], model: str, corruption: str) -> dict[str, Any]:
    row = next(row for row in heatmap["rows"] if row["model"] == model)
    return row["cells"][[column["name"] for column in heatmap["columns"]].index(corruption)]


def test_heatmap_colours_are_a_fixed_scale_centred_on_100(report: Path) -> None:
    # The centre is the colour map's middle, the ends clip: a value's colour never depends on the run.
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    assert plots.heatmap_color(100.0, "CE")[0] == to_hex(colormaps[plots.HEATMAP_COLORMAP](0.5))
    assert plots.heatmap_color(50.0, "CE") == plots.heatmap_color(20.0, "CE") != plots.heatmap_color(60.0, "CE")
    assert plots.heatmap_color(150.0, "CE") == plots.heatmap_color(400.0, "CE") != plots.heatmap_color(140.0, "CE")
    assert plots.heatmap_color(80.0, "CE") != plots.heatmap_color(120.0, "CE")
    tables = tight_intervals(report_tables.load_run(report.parent))
    full = report_html.heatmap_context(tables)
    lift_fog = cell(full, LIFT, "fog")
    value = 100 * report_tables.corruption_error_table(tables)[0].loc[LIFT, "fog"]
    assert not lift_fog["noise"] and lift_fog["style"].startswith(f"background:{plots.heatmap_color(value, 'CE')[0]};")
    # Without the model with the highest CE, the same cell keeps the same colour (no per-run min/max).
    tables.results = tables.results[tables.results["model"] != HOSTILE]
    tables.summary = tables.summary[tables.summary["model"] != HOSTILE]
    assert cell(report_html.heatmap_context(tables), LIFT, "fog")["style"] == lift_fog["style"]
    labels = full["legend"]["labels"]
    assert labels[0] == "50" and labels[len(labels) // 2] == "100" and labels[-1] == "150"


def test_heatmap_greys_out_cells_within_noise(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    errors = report_tables.corruption_errors(tables)
    # Every interval contains its point estimate; at n = 200 a 20 % lower CE is within noise.
    finite = errors.values.notna().to_numpy()
    assert (errors.low.to_numpy()[finite] <= errors.values.to_numpy()[finite]).all()
    assert (errors.values.to_numpy()[finite] <= errors.high.to_numpy()[finite]).all()
    lift_fog = cell(report_html.heatmap_context(tables), LIFT, "fog")
    assert lift_fog["noise"] and lift_fog["style"] == "" and "contains 100" in lift_fog["title"]
    assert errors.low.loc[LIFT, "fog"] <= 1.0 <= errors.high.loc[LIFT, "fog"]
    # The reference's own cells are marked as such, never as a finding.
    reference = cell(report_html.heatmap_context(tables), REFERENCE, "fog")
    assert reference["reference"] and not reference["noise"] and reference["text"] == "100.0"
    # Narrow intervals: the same difference is real.
    tight = report_tables.corruption_errors(tight_intervals(tables))
    assert not tight.within_noise.loc[LIFT, "fog"] and tight.high.loc[LIFT, "fog"] < 1.0
    html = report.read_text(encoding="utf-8")
    assert 'id="heatmap-legend"' in html and "within noise" in html and 'class="number noise"' in html


def test_heatmap_png_uses_the_fixed_scale(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    figure = plots.corruption_heatmap(tables).figures[0].figure
    image = figure.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vcenter, image.norm.vmax) == (50.0, 100.0, 150.0)


def with_summary(tables: report_tables.RunTables, model: str, **values: float) -> report_tables.RunTables:
    summary = tables.summary.copy()
    for column, value in values.items():
        summary.loc[summary["model"] == model, column] = value
    return report_tables.RunTables(tables.directory, tables.results.copy(), summary, tables.record)


def relative_cell(tables: report_tables.RunTables, model: str) -> dict[str, Any]:
    columns = report_tables.leaderboard_columns(tables.summary, tables.record)
    row = next(row for row in report_tables.leaderboard_rows(tables, columns) if row["model"] == model)
    return row["cells"][[column.key for column in columns].index("relative_mce")]


def test_relative_mce_shown_when_stable(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    assert report_tables.relative_mce_problem(tables, LIFT) == ""
    shown = relative_cell(tables, LIFT)
    assert shown["text"] == "80.00" and shown["interval"] == "[76.0, 84.0]" and shown["note"] == ""


def test_relative_mce_nan_gets_no_interval(report: Path) -> None:
    tables = with_summary(
        report_tables.load_run(report.parent), LIFT, relative_mce=math.nan, relative_mce_low=0.5, relative_mce_high=1.5
    )
    shown = relative_cell(tables, LIFT)
    assert shown["text"] == "n/a" and "[" not in shown["interval"] and shown["sort"] == ""
    assert shown["note"].startswith("undefined:")


def test_relative_mce_with_a_huge_interval_is_not_shown(report: Path) -> None:
    tables = with_summary(report_tables.load_run(report.parent), LIFT, relative_mce_low=-3e11, relative_mce_high=1e13)
    shown = relative_cell(tables, LIFT)
    assert (
        shown["text"] == "n/a" and shown["note"].startswith("unstable:") and "wider than ±100 points" in shown["note"]
    )
    # Just inside the limit (±99 points): shown.
    tables = with_summary(tables, LIFT, relative_mce_low=0.8 - 0.99, relative_mce_high=0.8 + 0.99)
    assert relative_cell(tables, LIFT)["text"] == "80.00"


def test_relative_mce_not_shown_when_the_reference_does_not_degrade(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    results = tables.results.copy()
    clean_error = results.loc[(results["model"] == REFERENCE) & (results["suite"] == "clean"), "error"].iloc[0]
    brightness = (results["model"] == REFERENCE) & (results["family"] == "brightness")
    results.loc[brightness, "error"] = clean_error + 0.005  # within the clean error's noise at n = 200
    tables.results = results
    problem = report_tables.relative_mce_problem(tables, LIFT)
    assert problem.startswith("unstable:") and "brightness" in problem and REFERENCE in problem
    # An extra corruption (not in mCE) does not count.
    tables.results = report_tables.load_run(report.parent).results
    speckle = (tables.results["model"] == REFERENCE) & (tables.results["family"] == "speckle_noise")
    tables.results.loc[speckle, "error"] = clean_error
    assert report_tables.relative_mce_problem(tables, LIFT) == ""


def test_leaderboard_notes_rendered(report: Path) -> None:
    tables = with_summary(report_tables.load_run(report.parent), HOSTILE, relative_mce=math.nan)
    html = (
        report_html.template_environment()
        .get_template("report.html")
        .render(**report_html.report_context(tables, [], []))
    )
    assert 'id="leaderboard-notes"' in html and "relative mCE n/a (undefined:" in html


def test_adversarial_warnings_deduplicated(report: Path) -> None:
    warnings = report_tables.adversarial_warnings(report_tables.load_run(report.parent))
    assert warnings == [
        {"model": LIFT, "attack": "fgsm", "warning": "robust accuracy rises with epsilon", "epsilons": "4/255, 8/255"}
    ]
    html = report.read_text(encoding="utf-8")
    assert html.count("robust accuracy rises with epsilon") == 1


def test_epsilon_text() -> None:
    assert report_tables.epsilon_text(8 / 255, "linf") == "8/255"
    assert report_tables.epsilon_text(0.0, "linf") == "0"
    assert report_tables.epsilon_text(0.5, "l2") == "0.5"
    assert report_tables.epsilon_text(0.01, "linf") == "0.01"


def test_axes_start_at_zero(report: Path) -> None:
    tables = report_tables.load_run(report.parent)
    for builder in (plots.shift_consistency_bars, plots.error_versus_severity, plots.robust_accuracy_versus_epsilon):
        for spec in builder(tables).figures:
            assert all(axes.get_ylim()[0] == 0 for axes in spec.figure.axes), spec.name
    shift = plots.shift_consistency_bars(tables).figures[0].figure.axes[0]
    assert shift.get_ylim() == (0.0, 100.0)
    flips = plots.flip_probability_bars(tables).figures[0].figure
    assert all(axes.get_xlim()[0] == 0 for axes in flips.axes)


def test_flip_probability_figure_is_readable_with_many_models(tmp_path: Path) -> None:
    # Seven models x fourteen perturbations (the built-in benchmark) drew a 3564 x 726 px figure.
    from corruptions.perturbations import ALL_PERTURBATIONS

    models = [f"small_cnn-{kind}" for kind in ("max", "avg", "skip", "blur", "lift", "haar", "lift53")]
    rows = [
        {"run": "many", "model": model, "architecture": "small_cnn", "pooling": model.split("-")[1], "dataset": "fashion_mnist", "suite": "perturbation",
         "condition": f"{name}/d1", "family": name, "level": 1.0, "status": "ok", "n": 50, "flip_probability": 0.01 * (1 + position) * (1 + index / 10), "top5_distance": 0.05 * (1 + position)}
        for index, model in enumerate(models) for position, name in enumerate(ALL_PERTURBATIONS)
    ]  # fmt: skip
    tables = report_tables.RunTables(tmp_path, pd.DataFrame(rows), pd.DataFrame({"model": models}), {})
    spec = plots.flip_probability_bars(tables).figures[0]
    plot = plots.save_figure(spec, tmp_path)
    png = (tmp_path / Path(plot.png_file).name).read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width <= 1400 and height <= 1000, (width, height)
    axes = spec.figure.axes[0]
    labels = [label.get_text() for label in axes.get_yticklabels()]
    assert len(labels) == len(ALL_PERTURBATIONS) and all(label.get_fontsize() >= 9 for label in axes.get_yticklabels())
    assert sum(len(collection.get_offsets()) for collection in axes.collections) == len(models) * len(ALL_PERTURBATIONS)
