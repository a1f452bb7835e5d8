"""CIFAR-10/100 python-format files are read by a restricted unpickler.

A CIFAR data folder is user input, and a plain ``pickle.load`` of it runs whatever a
planted file asks for. These tests write CIFAR-format files (numpy arrays, bytes keys,
pickle protocol 2 as in the published Python 2 files, and later protocols) that must
load, and payload files that must be refused with one line before the payload runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from robustbench_lift.data.datasets import load_dataset
from robustbench_lift.errors import UserError
from tests.test_cli_errors import assert_one_line_error, files_under, run_cli

CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def cifar_rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # channel-major, as published


def write_pickle(path: Path, content: object, protocol: int = 2, python2_names: bool = False) -> None:
    data = pickle.dumps(content, protocol=protocol)
    if python2_names:
        # What numpy 1.x under Python 2 wrote for the array's constructor.
        data = data.replace(
            b"cnumpy._core.multiarray\n_reconstruct\n",
            b"cnumpy.core.multiarray\n_reconstruct\n",
        )
    path.write_bytes(data)


def cifar10_folder(root: Path, protocol: int = 2, python2_names: bool = False) -> dict[str, np.ndarray]:
    """A small cifar-10-batches-py: five train batches, test_batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, 3)]
        content = {
            b"batch_label": b"testing batch",
            b"labels": labels,
            b"data": cifar_rows(images),
            b"filenames": [b"a.png", b"b.png", b"c.png"],
        }
        write_pickle(folder / name, content, protocol, python2_names)
        assert (b"cnumpy.core.multiarray\n" in (folder / name).read_bytes()) == python2_names
        written[name] = (images, labels)
    write_pickle(
        folder / "batches.meta",
        {b"label_names": [name.encode() for name in CLASSES], b"num_vis": 3072},
        protocol,
        python2_names,
    )
    return written


class SystemCall:
    """Unpickling an instance runs a shell command (what a planted file would do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class Evaluate:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return (eval, (self.code,))


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_cifar10_format_files_load(tmp_path: Path, protocol: int) -> None:
    written = cifar10_folder(tmp_path, protocol, python2_names=protocol == 2)
    test = load_dataset("cifar10", "test", tmp_path)
    assert np.array_equal(test.images, written["test_batch"][0])
    assert test.labels.tolist() == written["test_batch"][1]
    assert test.classes == CLASSES
    train = load_dataset("cifar10", "train", tmp_path / "cifar-10-batches-py")
    assert np.array_equal(
        train.images,
        np.concatenate([written[f"data_batch_{n}"][0] for n in range(1, 6)]),
    )
    assert train.labels.tolist() == sum((written[f"data_batch_{n}"][1] for n in range(1, 6)), [])


@pytest.mark.parametrize(
    "payload, named",
    [
        (lambda marker: SystemCall(f"touch {marker}"), "posix.system"),
        (
            lambda marker: Evaluate(f"open({str(marker)!r}, 'w')"),
            "__builtin__.eval",
        ),  # Python 2 name at protocol 2
    ],
)
def test_a_payload_in_a_cifar10_file_is_refused_and_never_runs(tmp_path: Path, payload, named: str) -> None:
    marker = tmp_path / "payload-ran"
    cifar10_folder(tmp_path)
    test_batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    content = pickle.loads(test_batch.read_bytes())
    content[b"batch_label"] = payload(marker)
    write_pickle(test_batch, content)
    with pytest.raises(UserError) as raised:
        load_dataset("cifar10", "test", tmp_path)
    assert str(raised.value) == f"refusing to load {test_batch}: it contains {named}, which CIFAR files never do"
    assert not marker.exists()


def test_a_payload_in_cifar100_meta_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows = cifar_rows(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    write_pickle(
        folder / "test",
        {b"data": rows, b"fine_labels": [1, 2], b"coarse_labels": [0, 0]},
    )
    write_pickle(folder / "meta", {b"fine_label_names": [SystemCall(f"touch {marker}")]})
    with pytest.raises(UserError, match=r"refusing to load .*meta: it contains posix\.system"):
        load_dataset("cifar100", "test", tmp_path)
    assert not marker.exists()


def test_bytes_may_only_be_latin1_encoded(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    cifar10_folder(tmp_path)
    # _codecs.encode is allowed for protocol-2 bytes, but only with latin-1.
    data = (folder / "test_batch").read_bytes()
    assert b"X\x06\x00\x00\x00latin1" in data
    (folder / "test_batch").write_bytes(data.replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00rot_13", 1))
    with pytest.raises(
        UserError,
        match=r"cannot read .*test_batch: it encodes bytes with 'rot_13', not latin-1",
    ):
        load_dataset("cifar10", "test", tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x02}q\x00(X\x04\x00\x00\x00da", "cannot read"),  # truncated
        (b"not a pickle at all", "cannot read"),
        (pickle.dumps([1, 2, 3], protocol=2), "expected a dict, found list"),
        (
            pickle.dumps({b"data": [[1, 2]], b"labels": [0]}, protocol=2),
            "N x 3072 uint8 array",
        ),
        (
            pickle.dumps(
                {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]},
                protocol=2,
            ),
            "integer labels",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
            "one 3x32x32 image per label",
        ),
        (pickle.dumps({b"labels": [0]}, protocol=2), "no 'data' entry"),
    ],
)
def test_damaged_cifar_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    cifar10_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(UserError, match=message) as raised:
        load_dataset("cifar10", "test", tmp_path)
    assert "\n" not in str(raised.value)


def test_cli_refuses_a_payload_folder_with_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    data = tmp_path / "data"
    cifar10_folder(data)
    test_batch = data / "cifar-10-batches-py" / "test_batch"
    content = pickle.loads(test_batch.read_bytes())
    content[b"filenames"] = SystemCall(f"touch {marker}")
    write_pickle(test_batch, content)
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli(
        [
            "run",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(data),
            "--output-dir",
            "runs",
        ],
        work,
    )
    assert_one_line_error(
        result,
        f"refusing to load {test_batch}",
        "posix.system",
        "which CIFAR files never do",
    )
    assert not marker.exists()
    assert files_under(work) == []
