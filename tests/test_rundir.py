"""Run directories and the JSON-lines log."""

from __future__ import annotations

import json
import math
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.errors import UserError
from gancli.train.rundir import JsonlLogger, create_run_dir, read_jsonl


def test_create_run_dir_numbering(tmp_path):
    root = tmp_path / "runs"
    a = create_run_dir(root, "quickstart")
    assert a == root / "quickstart-00000" and a.is_dir()
    b = create_run_dir(root, "quickstart")
    assert b == root / "quickstart-00001"
    c = create_run_dir(root, "stylegan2-ffhq")  # the index counts runs of any name
    assert c == root / "stylegan2-ffhq-00002"
    (root / "imported-00041").mkdir()
    assert create_run_dir(root, "quickstart") == root / "quickstart-00042"
    (root / "notes.txt").write_text("not a run")
    (root / "file-99999").write_text("a file, not a run directory")
    assert create_run_dir(root) == root / "quickstart-00043"
    assert create_run_dir(root, "x") == root / "x-00044"


def test_create_run_dir_default_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert create_run_dir() == Path("runs") / "quickstart-00000"


def test_create_run_dir_never_reuses(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    first = create_run_dir(root, "q")
    (first / "snapshot-000000.safetensors").write_bytes(b"precious")
    # Simulate a race: another process creates the directory we are about to take.
    import gancli.train.rundir as rundir

    real = rundir._run_indices

    def stale_scan(r):
        assert real(r) == [0]
        (root / "q-00001").mkdir()  # the other process wins index 1 after our scan
        return [0]

    monkeypatch.setattr(rundir, "_run_indices", stale_scan)
    second = create_run_dir(root, "q")
    assert second == root / "q-00002"
    assert (first / "snapshot-000000.safetensors").read_bytes() == b"precious"
    assert list(second.iterdir()) == []


def test_create_run_dir_concurrent(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    results: list[Path] = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            d = create_run_dir(root, "c")
            with lock:
                results.append(d)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and len(set(results)) == 40
    assert sorted(p.name for p in root.iterdir()) == [f"c-{i:05d}" for i in range(40)]


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", "-x", "sp ace", ".hidden"])
def test_create_run_dir_bad_name(tmp_path, bad):
    with pytest.raises(UserError) as e:
        create_run_dir(tmp_path, bad)
    assert repr(bad) in str(e.value) and "letters, digits" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_create_run_dir_root_is_file(tmp_path):
    root = tmp_path / "runs"
    root.write_text("oops")
    with pytest.raises(UserError) as e:
        create_run_dir(root)
    assert "runs" in str(e.value) and "not a directory" in str(e.value)


def test_jsonl_logger_appends_valid_lines(tmp_path):
    path = tmp_path / "run" / "stats.jsonl"
    with JsonlLogger(path) as log:
        log.log(kimg=0, loss_G=1.5, tag="start")
        # each record is on disk as soon as log() returns
        assert json.loads(path.read_text().splitlines()[0]) == {"kimg": 0, "loss_G": 1.5, "tag": "start"}
        log.log(
            kimg=1,
            loss_D=torch.tensor(0.25),
            aug_p=np.float32(0.5),
            shape=torch.tensor([1, 2]),
            nan=float("nan"),
            inf=-math.inf,
            path=Path("x/y"),
        )
    assert log.closed
    with pytest.raises(ValueError):
        log.log(kimg=2)

    with JsonlLogger(path) as log:  # resume appends
        log.log(kimg=2)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    recs = [json.loads(line) for line in lines]  # strict JSON on every line
    assert recs[1] == {
        "kimg": 1,
        "loss_D": 0.25,
        "aug_p": 0.5,
        "shape": [1, 2],
        "nan": "NaN",
        "inf": "-Infinity",
        "path": "x/y",
    }
    assert recs[2] == {"kimg": 2}
    assert read_jsonl(path) == recs


def test_jsonl_logger_after_crash_mid_line(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text('{"kimg": 0}\n{"kimg": 1, "lo')  # writer died half-way through a line
    log = JsonlLogger(path)
    log.log(kimg=2)
    log.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"kimg": 2}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_jsonl(path) == [{"kimg": 0}, {"kimg": 2}]
    assert any("skipped 1 damaged line" in str(w.message) for w in caught)


def test_jsonl_logger_on_directory(tmp_path):
    d = tmp_path / "stats.jsonl"
    d.mkdir()
    with pytest.raises(UserError) as e:
        JsonlLogger(d)
    assert "stats.jsonl" in str(e.value)
