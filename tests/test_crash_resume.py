"""Crashes and resumes: a SIGKILL at any moment of a checkpoint write leaves a complete pair, a resume
continues the run's own recipe, cleans up after the crash and ends bit-identical to a run never stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch
from test_train import final_tensors, run_dirs, tiny_args

from gancli.train.checkpoint import latest_checkpoint, list_checkpoints, load_snapshot

SRC = str(Path(__file__).resolve().parents[1] / "src")


def gancli_killed_at(k: int, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`gancli ARGS` in a fresh process that SIGKILLs itself at its k-th write step (gancli.fileio.kill_point)."""
    env = {**os.environ, "GANCLI_TEST_KILL_AFTER_WRITE": str(k),
           "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "gancli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def steps_logged(run: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines()) if "step" in r]


def test_kill_at_every_write_of_a_checkpoint_keeps_a_complete_pair(cli, tiny_data, tmp_path):
    keep_one = ["train.snapshot_kimg=0.004", "train.keep_snapshots=1"]
    straight = tmp_path / "straight"
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.012", *keep_one), "--outdir", straight).code == 0
    expected = final_tensors(run_dirs(straight)[0])
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.008", *keep_one), "--outdir", tmp_path / "base").code == 0
    (base,) = run_dirs(tmp_path / "base")
    assert [p.step for p in list_checkpoints(base)] == [2]  # keep_snapshots=1 removed the pair of step 1

    seen_tmp = seen_two_pairs = False
    for k in range(1, 20):
        run = tmp_path / f"kill{k:02d}" / base.name
        shutil.copytree(base, run)
        proc = gancli_killed_at(k, "train", "--resume", run, "--kimg", "0.012")  # writes the pair of step 3
        if proc.returncode == 0:  # k is past the last write step: nothing left to kill
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        pairs = [p for p in list_checkpoints(run) if p.state.is_file()]
        seen_two_pairs |= len(pairs) == 2
        seen_tmp |= any(run.glob(".snapshot-*.tmp")) or any(run.glob(".state-*.tmp"))
        survivor = latest_checkpoint(run)
        assert survivor is not None and survivor.step in (2, 3), (k, sorted(p.name for p in run.iterdir()))
        leftovers = sorted(p.name for p in run.glob(".*.tmp"))

        resumed = cli("train", "--resume", run, "--kimg", "0.012")
        assert resumed.code == 0, (k, resumed)
        if leftovers:
            (line,) = [x for x in resumed.err.splitlines() if x.startswith("removed ")]  # one line says so
            assert "by an interrupted write" in line and all(name in line for name in leftovers), line
        assert not list(run.glob(".*.tmp")), k
        final = final_tensors(run)
        assert [name for name in expected if not torch.equal(expected[name], final[name])] == [], k
        assert [p.step for p in list_checkpoints(run)] == [3], k
        logged = steps_logged(run)
        assert logged == sorted(set(logged)), (k, logged)  # no step twice, never backwards
    else:
        raise AssertionError("the resumed run was killed at every one of 19 write steps")
    assert k >= 8, k  # grid (2 steps), snapshot (2), state (2), removal of the older pair (2)
    assert seen_tmp and seen_two_pairs


def test_resume_continues_the_runs_own_recipe(cli, tiny_data, tmp_path):
    """Started with --kimg 0.016 --snap 0.008 and killed after its first checkpoint, `gancli train --resume RUN`
    (no recipe argument) trains to 0.016 kimg, not to the built-in recipe's 80."""
    started = gancli_killed_at(10, *tiny_args(tiny_data), "--kimg", "0.016", "--snap", "0.008", "--outdir", tmp_path)
    assert started.returncode == -signal.SIGKILL, started.stderr
    (run,) = run_dirs(tmp_path)
    assert [p.step for p in list_checkpoints(run) if p.state.is_file()] == [2]

    plan = cli("train", "--resume", run, "--dry-run")
    assert plan.code == 0, plan
    assert "total_kimg: 0.016" in plan.out and "snapshot_kimg: 0.008" in plan.out
    assert "training   0.016 kimg" in plan.out and f"resuming {run} at 0.008 kimg (step 2)" in plan.out
    assert "from the command line" not in plan.out
    changed = cli("train", "quickstart", "--resume", run, "--snap", "0.004", "--set", "train.g_lr=0.1", "--dry-run")
    assert changed.code == 0, changed
    assert "from the command line: train.snapshot_kimg 0.008 -> 0.004" in changed.out
    assert "ignored (an exact resume keeps them): train.g_lr" in changed.out
    assert "snapshot_kimg: 0.004" in changed.out and "g_lr: 0.1" not in changed.out

    resumed = cli("train", "--resume", run)
    assert resumed.code == 0, resumed
    pair = latest_checkpoint(run)
    assert pair.step == 4
    t = load_snapshot(pair.snapshot).recipe["train"]
    assert (t["total_kimg"], t["snapshot_kimg"]) == (0.016, 0.008)


def test_runs_with_kimg_names_from_older_versions_still_resume(cli, tiny_data, tmp_path):
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.008"), "--outdir", tmp_path).code == 0
    (run,) = run_dirs(tmp_path)
    (pair,) = list_checkpoints(run)
    pair.snapshot.rename(run / "snapshot-000000.safetensors")
    pair.state.rename(run / "state-000000.pt")
    assert cli("info", run).code == 0
    assert cli("sample", run / "snapshot-000000.safetensors", "--seeds", "0", "--outdir", tmp_path / "o").code == 0
    resumed = cli("train", "--resume", run, "--kimg", "0.012")
    assert resumed.code == 0, resumed
    assert [p.snapshot.name for p in list_checkpoints(run)] == [
        "snapshot-000000.safetensors", "snapshot-000000-step00000003.safetensors"]


def test_stats_trimmed_to_the_checkpoint_on_resume(tmp_path):
    from gancli.train.rundir import trim_jsonl

    log = tmp_path / "stats.jsonl"
    lines = [{"kimg": 0.004, "step": 1}, {"kimg": 0.008, "step": 2}, {"event": "snapshot", "kimg": 0.008},
             {"kimg": 0.012, "step": 3}, {"event": "metrics", "kimg": 0.012}]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kimg": 0.016, "st')
    assert trim_jsonl(log, step=2, kimg=0.008) == 3
    assert [json.loads(x) for x in log.read_text().splitlines()] == lines[:3]
    assert trim_jsonl(log, step=2, kimg=0.008) == 0
    assert trim_jsonl(tmp_path / "missing.jsonl", step=0, kimg=0) == 0


def test_resume_arguments(cli, tiny_data, tmp_path):
    from helpers import assert_user_error

    assert_user_error(cli("train"), "give a recipe", "--resume")
    assert_user_error(cli("train", "--resume", tmp_path / "nothing"), "nothing", "no such run")
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.004"), "--outdir", tmp_path / "runs").code == 0
    (run,) = run_dirs(tmp_path / "runs")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for extra in ([], ["--dry-run"]):
        assert_user_error(cli(*tiny_args(tiny_data), "--init", run, "--resume", run, *extra), "--init", "--resume")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
