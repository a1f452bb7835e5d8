"""Bad input ends in one line on stderr, exit status 2, no traceback and no result files.

Most cases call the CLI in-process (``cli.main``) from an empty working folder, so
anything it wrote by mistake shows up there; the cases that depend on process
behaviour (imports, killing the main process) run it in a subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cli
from robustbench_lift.errors import UserError
from robustbench_lift.results import read_run, write_run
from robustbench_lift.run.config import check_run_name
from robustbench_lift.run.ray_probe import check_ray_address

REPOSITORY = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
HAVE_FASHION_MNIST = (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists()
PREFIX = "robustbench-lift: error:"
# A run small enough that it would finish in seconds if the input were good.
SMALL_RUN = [
    "run",
    "--models",
    "max",
    "--suites",
    "corruption",
    "--corruptions",
    "contrast",
    "--severities",
    "1",
    "--sample-size",
    "8",
    "--output-dir",
    "out",
]


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def one_line_error(capsys: pytest.CaptureFixture[str], arguments: list[str], *fragments: str) -> str:
    """Runs the CLI in-process; asserts exit 2 and exactly one ``error:`` line on stderr."""
    code = cli.main(arguments)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    assert "Traceback" not in captured.err, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), captured.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def run_subprocess(arguments: list[str], cwd: Path, **options: Any) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300, **options
    )


# ------------------------------------------------------------------ data files


def fashion_mnist_copy(folder: Path) -> Path:
    """A --data-dir with the real Fashion-MNIST test files (the train files are not needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(FASHION_MNIST / name, folder / name)
    return folder


@pytest.mark.needs_data
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_gzip_image_file(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    data = fashion_mnist_copy(tmp_path / "data")
    images = data / "t10k-images-idx3-ubyte.gz"
    content = images.read_bytes()
    images.write_bytes(np.random.default_rng(0).bytes(4096) if damage == "garbage" else content[: len(content) // 3])
    one_line_error(capsys, [*SMALL_RUN, "--data-dir", str(data)], "t10k-images-idx3-ubyte.gz")
    assert files_under(workdir) == []


@pytest.mark.needs_data
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
def test_gzip_of_garbage_is_refused(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Valid gzip, but what it holds is no IDX file.
    data = fashion_mnist_copy(tmp_path / "data")
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file at all"))
    one_line_error(capsys, [*SMALL_RUN, "--data-dir", str(data)], "t10k-images-idx3-ubyte.gz", "not an IDX file")
    assert files_under(workdir) == []


def test_empty_idx_file(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "t10k-images-idx3-ubyte").write_bytes(b"")
    (data / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x01\x02")
    one_line_error(capsys, [*SMALL_RUN, "--data-dir", str(data)], "t10k-images-idx3-ubyte", "empty")
    assert files_under(workdir) == []


@pytest.mark.needs_data
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
def test_sample_size_larger_than_split(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [*SMALL_RUN]
    arguments[arguments.index("--sample-size") + 1] = "20000"
    line = one_line_error(capsys, arguments, "20000", "10000")
    assert "split" in line
    assert files_under(workdir) == []


# ------------------------------------------------------------------ config and options


@pytest.mark.parametrize(
    "content",
    [np.random.default_rng(1).bytes(2048), b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).bytes(512)],
    ids=["random", "png"],
)
def test_binary_config_file(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    one_line_error(capsys, ["run", "--config", str(config), "--output-dir", "out"], "config.yaml")
    assert files_under(workdir) == []


def test_config_with_control_characters(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"seed: 1\x00\x07\n")
    one_line_error(capsys, ["run", "--config", str(config), "--output-dir", "out"], "config.yaml", "not valid YAML")
    assert files_under(workdir) == []


@pytest.mark.parametrize("threads", ["-1", "0"])
def test_threads_must_be_positive(workdir: Path, capsys: pytest.CaptureFixture[str], threads: str) -> None:
    one_line_error(capsys, [*SMALL_RUN, "--threads", threads], "threads", threads)
    assert files_under(workdir) == []


def test_training_threads_must_be_positive(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, ["train", "--threads", "-1", "--output", "out/x.safetensors"], "threads")
    assert files_under(workdir) == []


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "bell\x07", "nul\x00byte", "carriage\rreturn"])
def test_run_name_with_control_character(workdir: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    one_line_error(capsys, [*SMALL_RUN, "--run-name", name], "run_name", "control characters")
    assert files_under(workdir) == []


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "back\\slash"])
def test_run_name_must_be_a_plain_folder_name(name: str) -> None:
    with pytest.raises(UserError, match="run_name"):
        check_run_name(name)


def test_plain_run_names_pass() -> None:
    for name in ("quick", "run 2026-11-27", "résumé_α", "a.b-c"):
        assert check_run_name(name) == name


# ------------------------------------------------------------------ checkpoints


def write_checkpoint(path: Path, **changes: Any) -> Path:
    import torch

    from robustbench_lift.models import build_model
    from robustbench_lift.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = build_model("small_cnn", "max", mean=[0.3] * 3, std=[0.3] * 3)
    metadata = {
        "architecture": "small_cnn",
        "pooling": "max",
        "pooling_options": {},
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "preprocessing": {"mean": [0.3] * 3, "std": [0.3] * 3},
    }
    save_checkpoint(model, metadata | changes, path)
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"num_classes": "abc"}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": 0}, "num_classes"),
        ({"pooling": 5}, "pooling"),
        ({"pooling": ["max"]}, "pooling"),
        ({"architecture": None}, "architecture"),
        ({"pooling_options": [1, 2]}, "pooling_options"),
        ({"pooling_options": "kernel=3"}, "pooling_options"),
        ({"preprocessing": "imagenet"}, "preprocessing"),
        ({"preprocessing": {"mean": "grey", "std": [0.3] * 3}}, "mean"),
    ],
)
def test_checkpoint_metadata_of_wrong_type(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], field: str
) -> None:
    checkpoint = write_checkpoint(tmp_path / "inputs" / "bad.safetensors", **changes)
    arguments = [*SMALL_RUN]
    arguments[arguments.index("--models") + 1] = str(checkpoint)
    one_line_error(capsys, arguments, "bad.safetensors", field)
    assert files_under(workdir) == []


def test_checkpoint_metadata_not_a_mapping(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    from robustbench_lift.models._format import METADATA_KEY

    path = tmp_path / "inputs" / "list.safetensors"
    path.parent.mkdir(parents=True)
    import torch

    save_file({"weight": torch.zeros(2)}, str(path), metadata={METADATA_KEY: json.dumps(["small_cnn", "max"])})
    arguments = [*SMALL_RUN]
    arguments[arguments.index("--models") + 1] = str(path)
    one_line_error(capsys, arguments, "list.safetensors", "mapping")
    assert files_under(workdir) == []


# ------------------------------------------------------------------ finished runs (report, check, compare)


def make_run(directory: Path) -> Path:
    """A small finished run in the results.csv / summary.csv / run.json schema (made-up numbers)."""
    rows, summary = [], []
    for model, errors in (("small_cnn-max", 20), ("small_cnn-lift", 16)):
        base = {
            "run": directory.name,
            "model": model,
            "architecture": "small_cnn",
            "pooling": model.split("-")[1],
            "dataset": "fashion_mnist",
        }
        rows.append(
            base
            | {
                "suite": "clean",
                "condition": "clean",
                "family": "clean",
                "level": 0.0,
                "status": "ok",
                "n": 100,
                "errors": errors,
                "error": errors / 100,
                "error_low": errors / 100 - 0.05,
                "error_high": errors / 100 + 0.05,
            }
        )
        for severity in (1, 3, 5):
            error = (errors + 8 * severity) / 100
            rows.append(
                base
                | {
                    "suite": "corruption",
                    "condition": f"contrast/{severity}",
                    "family": "contrast",
                    "level": float(severity),
                    "status": "ok",
                    "n": 100,
                    "errors": int(100 * error),
                    "error": error,
                    "error_low": error - 0.05,
                    "error_high": error + 0.05,
                }
            )
        summary.append(
            {
                "model": model,
                "architecture": "small_cnn",
                "pooling": base["pooling"],
                "n": 100,
                "clean_error": errors / 100,
                "clean_error_low": errors / 100 - 0.05,
                "clean_error_high": errors / 100 + 0.05,
            }
        )
    record = {
        "run_name": directory.name,
        "config": {"dataset": "fashion_mnist", "split": "test", "severities": [1, 3, 5], "suites": ["corruption"]},
        "seed": 0,
        "sample_size": 100,
        "models": {"small_cnn-max": {}, "small_cnn-lift": {}},
    }
    return write_run(directory, pd.DataFrame(rows), pd.DataFrame(summary), record)


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs" / "finished")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_check_junit_under_a_file(
    workdir: Path,
    tmp_path: Path,
    finished_run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    baseline = tmp_path / "baseline.csv"
    assert cli.main(["check", str(finished_run), "--baseline", str(baseline), "--update-baseline"]) == 0
    capsys.readouterr()
    blocker = workdir / "blocker"
    blocker.write_text("a file, not a folder")
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    before = snapshot(workdir)
    one_line_error(
        capsys,
        ["check", str(finished_run), "--baseline", str(baseline), "--junit", "blocker/junit.xml"],
        "--junit",
        "blocker",
    )
    one_line_error(
        capsys,
        ["check", str(finished_run), "--baseline", str(baseline), "--junit", "blocker/deeper/junit.xml"],
        "blocker",
        "not a folder",
    )
    assert snapshot(workdir) == before
    assert not step_summary.exists()  # nothing reported before the refusal


def test_update_baseline_under_a_file(workdir: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "blocker").write_text("x")
    one_line_error(
        capsys,
        ["check", str(finished_run), "--baseline", "blocker/baseline.csv", "--update-baseline"],
        "--baseline",
        "blocker",
    )
    assert files_under(workdir) == ["blocker"]


@pytest.mark.parametrize("output", ["blocker", "blocker/comparison"])
def test_compare_output_under_a_file(
    workdir: Path, finished_run: Path, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    (workdir / "blocker").write_text("x")
    before = snapshot(finished_run)
    one_line_error(capsys, ["compare", str(finished_run), str(finished_run), "--output", output], "--output", "blocker")
    assert files_under(workdir) == ["blocker"]
    assert snapshot(finished_run) == before


def cut_results(run: Path, how: str) -> None:
    path = run / "results.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if how == "mid-line":
        path.write_text(text[: len(text) - len(lines[-1]) // 2])
    elif how == "whole lines":
        path.write_text("".join(lines[:-3]))
    elif how == "header only":
        path.write_text(lines[0])
    elif how == "no header":
        path.write_text("".join(lines[1:]))
    elif how == "empty":
        path.write_text("")
    elif how == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage\n")


@pytest.mark.parametrize("how", ["mid-line", "whole lines", "header only", "no header", "empty", "binary"])
@pytest.mark.parametrize("command", ["report", "check"])
def test_truncated_results_are_refused(
    tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture[str], how: str, command: str
) -> None:
    baseline = tmp_path / "baseline.csv"
    assert cli.main(["check", str(finished_run), "--baseline", str(baseline), "--update-baseline"]) == 0
    capsys.readouterr()
    cut_results(finished_run, how)
    before = snapshot(finished_run)
    arguments = (
        ["report", str(finished_run)]
        if command == "report"
        else ["check", str(finished_run), "--baseline", str(baseline)]
    )
    one_line_error(capsys, arguments, "results.csv")
    assert snapshot(finished_run) == before  # no report, no plots


def test_truncated_summary_is_refused(finished_run: Path) -> None:
    path = finished_run / "summary.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(UserError, match="summary.csv has 1 rows but run.json records 2"):
        read_run(finished_run)


def test_runs_without_row_counts_still_checked_for_models(finished_run: Path) -> None:
    # A run.json written before row counts were recorded: the model list still catches a cut.
    record = json.loads((finished_run / "run.json").read_text())
    del record["tables"]
    (finished_run / "run.json").write_text(json.dumps(record))
    read_run(finished_run)  # intact: fine
    results = pd.read_csv(finished_run / "results.csv")
    results[results["model"] == "small_cnn-max"].to_csv(finished_run / "results.csv", index=False)
    with pytest.raises(UserError, match="no rows for model 'small_cnn-lift'"):
        read_run(finished_run)


def test_intact_run_reads_and_records_row_counts(finished_run: Path) -> None:
    results, summary, record = read_run(finished_run)
    assert record["tables"] == {"results.csv": {"rows": len(results)}, "summary.csv": {"rows": len(summary)}}


# ------------------------------------------------------------------ Ray address


class FakeServer:
    """A TCP server on 127.0.0.1 answering every connection with fixed bytes."""

    def __init__(self, answer: bytes) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(4096)
                    if self.answer:
                        connection.sendall(self.answer)
                    # Silent servers hold the connection past the probe's timeout.
                    time.sleep(0.2 if self.answer else 2.0)
                except OSError:
                    pass

    def close(self) -> None:
        self.socket.close()


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    fake = FakeServer(request.param)
    yield fake
    fake.close()


HTTP1_ANSWER = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
# HTTP/2: SETTINGS, then response HEADERS on stream 1 with ":status" as a static-table index.
HTTP2_404 = _h2_frame(0x4, 0, 0) + _h2_frame(0x1, 0x5, 1, b"\x8d")
HTTP2_200 = _h2_frame(0x4, 0, 0) + _h2_frame(0x4, 0x1, 0) + _h2_frame(0x1, 0x4, 1, b"\x88\x5f\x10application/grpc")


@pytest.mark.parametrize(
    "server, reason",
    [(HTTP1_ANSWER, "HTTP/1"), (HTTP2_404, "HTTP status 404"), (b"", "no answer")],
    indirect=["server"],
)
def test_ray_probe_refuses_what_is_not_ray(server: FakeServer, reason: str) -> None:
    with pytest.raises(UserError, match=reason):
        check_ray_address(server.address, timeout=1.0)


@pytest.mark.parametrize("server", [HTTP2_200], indirect=True)
def test_ray_probe_accepts_a_grpc_server(server: FakeServer) -> None:
    check_ray_address(server.address)
    check_ray_address(f"ray://{server.address}")


def test_ray_probe_refuses_closed_port_and_bad_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match="Connection refused"):
        check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(UserError, match="must look like host:port"):
        check_ray_address("no-port-here")


@pytest.mark.parametrize("server", [HTTP1_ANSWER], indirect=True)
def test_unreachable_ray_address_fails_before_importing_ray_or_torch(server: FakeServer, workdir: Path) -> None:
    # What a transparent proxy on a private address does: accepts, then answers HTTP.
    script = (
        "import sys, cli\n"
        f"code = cli.main(['run', '--executor', 'ray', '--ray-address', {server.address!r}, '--output-dir', 'out'])\n"
        "print(code, 'ray' in sys.modules, 'torch' in sys.modules)\n"
    )
    result = run_subprocess(["-c", script], workdir)
    assert result.stdout.split() == ["2", "False", "False"], (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and server.address in lines[0], result.stderr
    assert files_under(workdir) == []


# ------------------------------------------------------------------ worker processes die with the run


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_die_with_the_main_process(workdir: Path, how: signal.Signals) -> None:
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), OMP_NUM_THREADS="1")
    # glass_blur at severity 5 on 2000 images keeps two workers busy for minutes.
    arguments = [
        "run",
        "--models",
        "max",
        "--suites",
        "corruption",
        "--corruptions",
        "glass_blur",
        "--severities",
        "5",
        "--sample-size",
        "2000",
        "--workers",
        "2",
        "--output-dir",
        "out",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *arguments],
        cwd=workdir,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    everything: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while time.monotonic() < deadline and process.poll() is None:
            descendants = children(process.pid)
            # The pool's workers run multiprocessing's spawn entry point (direct children of
            # the run); a forkserver's workers would be its children (grandchildren of the run).
            workers = {pid for pid in descendants if is_pool_worker(pid) or pid not in children_of(process.pid)}
            if len(workers) >= 2:
                break
            time.sleep(0.5)
        assert len(workers) >= 2, "the run never started its worker processes"
        everything = children(process.pid)
        time.sleep(2)  # let the workers get busy with a task
        process.send_signal(how)
        process.wait(timeout=60)
        deadline = time.monotonic() + 15
        while alive(everything) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert alive(everything) == set(), f"left running after {how.name}: {sorted(alive(everything))}"
    finally:
        if process.poll() is None:
            everything |= children(process.pid)
            process.kill()
            process.wait()
        for pid in alive(everything):  # clean up after a failure; these are our own processes
            os.kill(pid, signal.SIGKILL)


def is_pool_worker(pid: int) -> bool:
    """Whether ``pid`` runs multiprocessing's spawn entry point (a pool worker)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def children_of(pid: int) -> set[int]:
    """Direct children of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found
