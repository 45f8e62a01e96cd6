"""Progress off a terminal: plain lines with count, rate and ETA instead of silence (gancli.progress)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gancli.progress import PlainProgress, image_progress, task_progress

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^gancli: (?P<what>.+?) (?P<count>[\d,]+)/(?P<total>[\d,]+) images \([\d.]+%\), "
                  r"(?P<rate>[\d,.]+) img/s, elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_with_count_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(interval=20, stream=out, clock=clock)
    task = progress.add_task("generated features", total=1000)
    with progress:
        for _ in range(9):  # 90 images in 9 s: quiet (less than the interval)
            clock.now += 1
            progress.update(task, advance=10)
        assert out.getvalue() == ""
        for _ in range(11):  # 20 s after the start: one line, 200 images at 10 img/s, 80 s to go
            clock.now += 1
            progress.update(task, advance=10)
        assert out.getvalue() == "gancli: generated features 200/1,000 images (20.0%), 10.0 img/s, elapsed 0:00:20, ETA 0:01:20\n"
        for _ in range(30):  # then one line per 20 s, not one per update
            clock.now += 1
            progress.advance(task, 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].startswith("gancli: generated features 400/1,000 images (40.0%)")
    assert lines[2] == "gancli: generated features 500/1,000 images, 10.0 img/s, elapsed 0:00:50, done"


def test_short_work_stays_quiet_and_fields_are_shown():
    clock, out = FakeClock(), io.StringIO()
    quiet = PlainProgress(interval=20, stream=out, clock=clock)
    task = quiet.add_task("rendering", total=8)
    with quiet:
        for _ in range(8):
            clock.now += 0.5
            quiet.update(task, advance=1)
    assert out.getvalue() == ""  # no line during the work, so no closing line either
    steps = PlainProgress(unit="steps", interval=0, stream=out, clock=clock)
    task = steps.add_task("projecting", total=100, loss=float("nan"))
    clock.now += 2
    steps.update(task, advance=50, loss=0.25, psnr=21.5)
    assert out.getvalue() == ("gancli: projecting 50/100 steps (50.0%), 25.0 steps/s, elapsed 0:00:02, ETA 0:00:02; "
                              "loss 0.25, psnr 21.5\n")


def test_a_terminal_gets_the_rich_bar_and_disabled_gets_nothing(monkeypatch, capsys):
    progress, _ = image_progress(10, "x")  # capsys: stderr is not a terminal
    assert isinstance(progress, PlainProgress)
    progress, task = task_progress(10, "x", [], enabled=False)
    assert not isinstance(progress, PlainProgress)
    with progress:
        progress.update(task, advance=10)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    progress, _ = image_progress(10, "x")
    assert not isinstance(progress, PlainProgress)
    assert capsys.readouterr().err == ""


def _pngs(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray(rng.randint(0, 256, (16, 16, 3)).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _fake_detector(path: Path) -> Path:
    from test_metrics import _FakeNVlabs

    torch.jit.save(torch.jit.script(_FakeNVlabs()), str(path))
    return path


def test_evaluate_with_stderr_not_a_terminal_prints_progress_lines(tmp_path):
    """`gancli evaluate` in a subprocess whose stderr is a pipe: plain lines with count, rate, ETA."""
    a, b = _pngs(tmp_path / "a", 24, 1), _pngs(tmp_path / "b", 24, 2)
    detector = _fake_detector(tmp_path / "fake-nvlabs.pt")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), GANCLI_PROGRESS_INTERVAL="0",
               GANCLI_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "gancli", "evaluate", "--data", str(a), "--against", str(b),
                             "--metrics", "fid", "--detector", str(detector), "--batch", "8"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [m.groupdict() for m in map(LINE.match, result.stderr.splitlines()) if m]
    assert [(d["count"], d["total"]) for d in lines if "compared" in d["what"]] == [("8", "24"), ("16", "24"), ("24", "24")]
    assert any("reference" in d["what"] or "real" in d["what"] for d in lines), result.stderr
    assert all(float(d["rate"].replace(",", "")) > 0 for d in lines)
    assert "fid" in result.stdout
    # and without the override, this short work prints no progress at all
    env.pop("GANCLI_PROGRESS_INTERVAL")
    quiet = subprocess.run([sys.executable, "-m", "gancli", "evaluate", "--data", str(a), "--against", str(b),
                            "--metrics", "fid", "--detector", str(detector)], capture_output=True, text=True, env=env,
                           timeout=300)
    assert quiet.returncode == 0 and "gancli:" not in quiet.stderr, quiet.stderr


def test_sample_in_process_prints_rendering_progress(cli, tmp_path, monkeypatch):
    from test_commands import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "run")
    monkeypatch.setenv("GANCLI_PROGRESS_INTERVAL", "0")
    result = cli("sample", ckpt, "--seeds", "0-19", "--outdir", tmp_path / "out")
    assert result.code == 0, result
    counts = [m.group("count") for m in map(LINE.match, result.err.splitlines()) if m]
    assert counts and counts[-1] == "20", result.err


def test_training_in_a_log_prints_plain_lines(cli, tiny_data, tmp_path, monkeypatch):
    """`gancli train` with stderr captured: kimg as images, rate, ETA and the losses, then a closing line."""
    from test_train import tiny_args

    monkeypatch.setenv("GANCLI_PROGRESS_INTERVAL", "0")
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.048"), "--outdir", tmp_path)
    assert result.code == 0, result
    lines = [line for line in result.err.splitlines() if line.startswith("gancli: training ")]
    assert lines[0].startswith("gancli: training 40/48 images (83.3%), ") and "ETA" in lines[0] and "; G " in lines[0]
    assert lines[-1].startswith("gancli: training 48/48 images, ") and ", done; G " in lines[-1]
