"""The dry run says what a long plan would take here; training picks its CPU threads and reports stalls."""

from __future__ import annotations

import os
import re
import time

import pytest

from gancli.recipe import load_recipe, parse_override
from gancli.train import estimate
from gancli.train.threads import StallWatch, busy_elsewhere, choose_threads, free_cores

TIME_LINE = re.compile(r"^time +at ~[\d.,]+ img/s on this CPU, \d+ threads? \((?P<how>[^)]*)\) "
                       r"(?P<kimg>[\d.]+) kimg is (about [\d.]+ (minutes|hours|days|years)|under a minute)$", re.M)


def test_a_long_plan_says_how_long_it_would_take_here(cli):
    """stylegan2-auto at 16 px plans 25,000 kimg (781,250 steps): the dry run times the networks."""
    result = cli("train", "stylegan2-auto", "--dry-run", "--resolution", "16")
    assert result.code == 0, result
    assert "781250 steps" in result.out
    m = TIME_LINE.search(result.out)
    assert m, result.out
    assert m["kimg"] == "25000" and "timed" in m["how"] and "regularizers not counted" in m["how"]
    assert "nothing was trained or written" in result.out


def test_a_short_plan_is_not_timed(cli):
    result = cli("train", "quickstart", "--dry-run")  # 5,000 steps
    assert result.code == 0 and "\ntime " not in result.out and "timing the networks" not in result.err


def test_both_ways_of_timing_give_a_rate(monkeypatch):
    recipe = load_recipe("quickstart", [parse_override(s) for s in ("data.resolution=16", "model.channel_max=16")])
    monkeypatch.setattr(estimate, "STEP_BUDGET_S", 1e9)  # real steps of the per-device batch
    stepped = estimate.measure_rate(recipe)
    assert stepped.how == "G and D steps of batch 16 timed" and stepped.img_per_s > 0
    monkeypatch.setattr(estimate, "STEP_BUDGET_S", 0.0)  # too slow to step: the forward pass x 6.5
    forward = estimate.measure_rate(recipe)
    assert forward.how == "G + D forward of 1 image timed, x6.5 for a step" and forward.img_per_s > 0
    line = estimate.plan_time_line(recipe, steps=estimate.LONG_PLAN_STEPS)
    assert line.startswith("at ~") and "80 kimg is " in line
    assert estimate.plan_time_line(recipe, steps=estimate.LONG_PLAN_STEPS - 1) is None


def test_families_without_a_z_step_say_they_are_not_timed():
    line = estimate.plan_time_line(load_recipe("pix2pix-facades", []), steps=10**6)
    assert line == "not timed: a pix2pix step is not a G(z) -> D step"


@pytest.mark.parametrize("seconds, text", [(30, "under a minute"), (600, "about 10 minutes"), (7200, "about 2.0 hours"),
                                           (86400 * 12, "about 12 days"), (86400 * 365.25 * 7.3, "about 7.3 years")])
def test_plan_duration(seconds, text):
    assert estimate.plan_duration(seconds) == text


# --------------------------------------------------------------------------------------------------
# Threads


def test_threads_follow_the_free_cores_unless_chosen():
    assert free_cores(2, 0.1) == 2  # idle: every core, as torch would
    assert free_cores(2, 1.2) == 1 and free_cores(2, 6.6) == 1  # busy: what is left, at least one
    assert free_cores(16, 3.4) == 13 and free_cores(4, None) == 4
    busy = choose_threads(None, environ={}, cores=2, load=6.6)
    assert busy.threads == 1 and busy.automatic and busy.reduced and "other work keeps 6.6 cores busy" in busy.reason
    assert "--threads" in busy.reason
    assert not choose_threads(None, environ={}, cores=2, load=0.2).reduced
    assert choose_threads(3, environ={"OMP_NUM_THREADS": "1"}, cores=2, load=6.6).threads == 3  # train.threads wins
    env = choose_threads(None, environ={"OMP_NUM_THREADS": "2"}, cores=2, load=6.6)
    assert env.threads == 2 and not env.automatic


def test_stall_watch_warns_once_about_a_step_far_slower_than_the_median():
    watch = StallWatch()
    for i in range(20):
        assert watch.step(0.15 + 0.01 * (i % 3), step=i) is None
    assert watch.step(1.2, step=20) is None  # 8x the median: a lazy regularization step, not a stall
    warning = watch.step(31.0, step=21)
    assert warning is not None and warning.startswith("step 21 took 31.0 s, ")
    assert "x the median 0.16 s" in warning and "OMP_NUM_THREADS=1" in warning and "--threads 1" in warning
    assert watch.step(40.0, step=22) is None  # once


def test_stall_watch_ignores_tiny_steps_and_the_first_ones():
    watch = StallWatch()
    assert all(watch.step(0.001) is None for _ in range(25))
    assert watch.step(0.5) is None  # 500x the median, but half a second: timer noise of tiny steps
    early = StallWatch()
    assert early.step(0.1) is None and early.step(30.0) is None  # no median yet


def test_a_stalled_training_step_is_reported(cli, tiny_data, tmp_path, monkeypatch):
    """The trainer feeds its step times to the watch: a step made slow by the test gets the one warning."""
    import time

    from test_train import tiny_args

    from gancli.train import loop

    real_step, calls = loop.Trainer.train_step, {"n": 0}

    def slow_23rd_step(self, stats):
        calls["n"] += 1
        real_step(self, stats)
        if calls["n"] == 23:
            time.sleep(1.5)

    monkeypatch.setattr(loop.Trainer, "train_step", slow_23rd_step)
    monkeypatch.setattr(StallWatch, "min_seconds", 1.0)
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.1"), "--outdir", tmp_path)  # 25 steps
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: step")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: step 23 took 1.") and "--threads 1" in warnings[0]


def test_training_on_a_busy_machine_uses_the_free_cores_and_says_so(cli, tiny_data, tmp_path, monkeypatch):
    import torch
    from test_train import tiny_args

    from gancli.train import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 6.6)
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.008"), "--outdir", tmp_path)
    assert result.code == 0, result
    assert "note: 1 torch thread(s) for 2 cores: other work keeps 6.6 cores busy" in result.err
    assert torch.get_num_threads() == 1
    quiet = cli(*tiny_args(tiny_data, "train.total_kimg=0.008"), "--threads", "1", "--outdir", tmp_path)
    assert quiet.code == 0 and "load average" not in quiet.err  # chosen: no note
    bad = cli(*tiny_args(tiny_data, "train.total_kimg=0.008"), "--threads", "0", "--outdir", tmp_path)
    assert bad.code == 2 and "train.threads: must be a positive integer, got 0" in bad.err


def test_timing_that_takes_too_long_is_cut_short(cli, monkeypatch):
    monkeypatch.setenv("GANCLI_TIMING_BUDGET_S", "0.05")  # the child process cannot even import torch in time
    result = cli("train", "stylegan2-auto", "--dry-run", "--resolution", "16")
    assert result.code == 0, result
    assert "\ntime       not timed: building and timing the networks here took over 0.05 s" in result.out


def test_commands_on_a_busy_cpu_use_the_free_cores_too(cli, tmp_path, monkeypatch):
    import torch
    from test_commands import make_checkpoint

    from gancli import cli as cli_module
    from gancli.train import threads

    ckpt = make_checkpoint(tmp_path / "run")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 3.0)
    monkeypatch.setattr(cli_module, "_said_threads", [])
    result = cli("sample", ckpt, "--seeds", "0-1", "--outdir", tmp_path / "out")
    assert result.code == 0, result
    assert "note: 1 torch thread(s) for 2 cores: other work keeps 3.0 cores busy" in result.err
    assert "OMP_NUM_THREADS=N chooses" in result.err and "--threads" not in result.err
    assert torch.get_num_threads() == 1


def test_busy_cores_are_measured_now_without_this_process():
    """Over the window, 2 CPUs give 30 ticks: 20 busy, 5 of them this process's own -> 1 core elsewhere."""
    readings = iter([(1000, 4000, 50, 2), (1020, 4030, 55, 2)])
    assert busy_elsewhere(read=lambda: next(readings), sleep=lambda s: None) == pytest.approx(1.0)
    readings = iter([(1000, 4000, 50, 2), (1010, 4030, 60, 2)])  # only this process was busy
    assert busy_elsewhere(read=lambda: next(readings), sleep=lambda s: None) == 0.0

    def unreadable():
        raise OSError("no /proc")

    assert busy_elsewhere(read=unreadable, sleep=lambda s: None) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_a_spinning_process_is_seen_as_busy():
    """Oracle: a child process that spins on one core is measured as (about) one busy core."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        assert busy_elsewhere(window=0.5) >= 0.5
    finally:
        child.kill()
        child.wait()
