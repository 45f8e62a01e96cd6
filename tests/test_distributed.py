"""Distributed training on CPU: 2 processes with gloo, against a single-process run as the oracle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import TINY, final_tensors, run_dirs, tiny_args

from gancli.errors import UserError
from gancli.recipe import load_recipe, parse_override
from gancli.train import distributed
from gancli.train.checkpoint import latest_checkpoint, load_checkpoint, load_snapshot

# A few Trainer steps on one rank of a 2-process gloo group (started with the torchrun variables);
# writes the rank's G and D parameters, Adam states and pl_mean to OUT/rank-R.pt.
RANK_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch
from gancli.data import open_dataset
from gancli.losses import LossStats
from gancli.recipe import load_recipe, parse_override
from gancli.train import distributed
from gancli.train.loop import Trainer
job = json.loads(sys.argv[1])
recipe = load_recipe("quickstart", [parse_override(s) for s in job["overrides"]])
world = distributed.world_from_env()
device = distributed.setup(recipe, *world)
trainer = Trainer(recipe, open_dataset(recipe.data.source, 16, cache=False), Path(job["out"]), device=device, progress=False)
from gancli.data import batches
trainer.use_data(batches(trainer.dataset, trainer.batch_rank, seed=0, rank=world[0], world_size=world[2]))
stats = LossStats()
for _ in range(job["steps"]):
    trainer.train_step(stats)
torch.save(rank_state := {"G": trainer.training.G.state_dict(), "D": trainer.training.D.state_dict(), "pl_mean": trainer.training.loss.pl_mean,
            "opt": {k: o.state_dict()["state"] for k, o in trainer.optimizers().items()},
            "stats": distributed.mean_stats(stats)}, Path(job["out"]) / f"rank-{world[0]}.pt")
distributed.shutdown()
"""


def _overrides(data: Path, *extra: str) -> list[str]:
    return TINY + [f"data.source={data}", *extra]


def _env(rank: int, world: int, port: int) -> dict:
    return dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port))


def _rank_states(script: str, job: str, out: Path) -> tuple[dict, dict]:
    """Run `script` on 2 gloo ranks (the torchrun variables) and load the rank-R.pt each one wrote to `out`."""
    port = distributed.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", script, job], env=_env(r, 2, port), stderr=subprocess.PIPE,
                              text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    return tuple(torch.load(out / f"rank-{r}.pt", weights_only=False) for r in range(2))


def _single_process(data: Path, steps: int, *extra: str):
    from gancli.data import batches, open_dataset
    from gancli.losses import LossStats
    from gancli.train.loop import Trainer

    recipe = load_recipe("quickstart", [parse_override(s) for s in _overrides(data, *extra)])
    trainer = Trainer(recipe, open_dataset(str(data), 16, cache=False), Path("unused"), progress=False)
    trainer.use_data(batches(trainer.dataset, trainer.batch, seed=0))
    stats = LossStats()
    for _ in range(steps):
        trainer.train_step(stats)
    return trainer, stats.means()


def _params(state_dict: dict) -> dict:
    return {k: v for k, v in state_dict.items() if not k.endswith("w_avg")}  # w_avg: rank 0's running statistic


def test_two_ranks_stay_identical_and_equal_one_process(tiny_data, tmp_path):
    steps = 5  # steps 0, 2, 4 run Greg (interval 2); steps 0 and 4 run Dreg (interval 4)
    job = json.dumps({"overrides": _overrides(tiny_data, "train.batch_gpu=2"), "steps": steps, "out": str(tmp_path)})
    r0, r1 = _rank_states(RANK_SCRIPT, job, tmp_path)
    # identical on both ranks, bit for bit: parameters, optimizer moments, pl_mean, logged loss means
    for net in ("G", "D"):
        for k, v in _params(r0[net]).items():
            assert torch.equal(v, r1[net][k]), (net, k)
    for name, states in r0["opt"].items():
        for i, s in states.items():
            assert torch.equal(s["exp_avg"], r1["opt"][name][i]["exp_avg"]) and torch.equal(s["exp_avg_sq"], r1["opt"][name][i]["exp_avg_sq"])
    assert torch.equal(r0["pl_mean"], r1["pl_mean"]) and float(r0["pl_mean"]) > 0
    assert r0["stats"] == r1["stats"]

    # one process, same global batch and seeds, batch_gpu = batch / 2: the same computation round by round
    single, single_stats = _single_process(tiny_data, steps, "train.batch_gpu=2")
    for net, module in (("G", single.training.G), ("D", single.training.D)):
        for k, v in _params(module.state_dict()).items():
            torch.testing.assert_close(r0[net][k], v, rtol=1e-5, atol=2e-6, msg=f"{net}.{k}")
    torch.testing.assert_close(r0["pl_mean"], single.training.loss.pl_mean, rtol=1e-5, atol=1e-6)
    assert r0["stats"].keys() == single_stats.keys()
    for k in single_stats:  # the loss means over all ranks equal the single process's means
        assert r0["stats"][k] == pytest.approx(single_stats[k], rel=1e-4, abs=1e-5), k

    # the comparison can fail: one round of 4 draws other noise and mixing, so the weights differ
    other, _ = _single_process(tiny_data, steps, "train.batch_gpu=4")
    diff = max((r0["G"][k] - v).abs().max().item() for k, v in _params(other.training.G.state_dict()).items())
    assert diff > 1e-3


def test_gpus_2_matches_one_process_and_resumes_across_world_sizes(cli, tiny_data, tmp_path):
    """--gpus 2 for 6 steps, resumed with 1 process to 12; and 1 process resumed with --gpus 2."""
    extra = ("train.batch_gpu=2",)
    straight = tmp_path / "straight"
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.048", *extra), "--outdir", straight).code == 0
    reference = final_tensors(run_dirs(straight)[0])

    two = tmp_path / "two"
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.024", *extra), "--gpus", "2", "--outdir", two)
    assert result.code == 0, result
    (run,) = run_dirs(two)  # one run directory, written by rank 0 only
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    assert snap.meta["step"] == 6 and snap.meta["cur_nimg"] == 24
    assert snap.recipe["distributed"]["gpus"] == 2
    resumed = cli(*tiny_args(tiny_data, "train.total_kimg=0.048", *extra), "--gpus", "1", "--resume", run)
    assert resumed.code == 0, resumed

    one = tmp_path / "one"
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.024", *extra), "--outdir", one).code == 0
    (run1,) = run_dirs(one)
    resumed = cli(*tiny_args(tiny_data, "train.total_kimg=0.048", *extra), "--gpus", "2", "--resume", run1)
    assert resumed.code == 0, resumed

    for path in (run, run1):
        got = final_tensors(path)
        assert load_snapshot(latest_checkpoint(path).snapshot).meta["step"] == 12
        for k, v in reference.items():
            if not k.endswith("w_avg"):
                torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5, msg=k)
        _, state = load_checkpoint(latest_checkpoint(path))
        assert state["data_position"] == 48

    # a number of processes that does not divide the run's batch is refused in one line
    from helpers import assert_user_error

    assert_user_error(cli(*tiny_args(tiny_data, "train.total_kimg=0.1"), "--gpus", "3", "--resume", run),
                      "train.batch (4)", "divisible", "(3)")


def test_gpus_2_with_decoding_workers_matches_one_process(cli, tiny_data, tmp_path):
    """The data streams from the folder (no cache), decoded by one worker process per rank."""
    extra = ("train.batch_gpu=2", "train.total_kimg=0.024", "data.cache_max_gb=0", "data.workers=1")
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli(*tiny_args(tiny_data, *extra), "--outdir", one).code == 0
    result = cli(*tiny_args(tiny_data, *extra), "--gpus", "2", "--outdir", two)
    assert result.code == 0, result
    reference, got = final_tensors(run_dirs(one)[0]), final_tensors(run_dirs(two)[0])
    for k, v in reference.items():
        if not k.endswith("w_avg"):
            torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_killed_rank_stops_the_job_promptly_and_keeps_the_checkpoint(cli, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.KILL_HOOK, "1:5")  # rank 1 dies (os._exit(1)) after step 5
    start = time.time()
    result = cli(*tiny_args(tiny_data, "train.total_kimg=1000", "train.snapshot_kimg=0.008"), "--gpus", "2",
                 "--outdir", tmp_path)
    assert result.code == 1, result
    assert time.time() - start < 90
    assert "rank 1 of 2 exited with code 1" in result.err and "Traceback" not in result.err
    (run,) = run_dirs(tmp_path)
    pair = latest_checkpoint(run)  # verified: snapshot and state belong together
    assert pair is not None and load_snapshot(pair.snapshot).meta["step"] == 4


def test_sigterm_stops_all_ranks_at_one_step_and_saves(tiny_data, tmp_path):
    args = [sys.executable, "-m", "gancli", *tiny_args(tiny_data, "train.total_kimg=1000"), "--gpus", "2",
            "--outdir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.stat().st_size for p in tmp_path.glob("*/stats.jsonl")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping" in err and "--resume" in err
    (run,) = run_dirs(tmp_path)
    pair = latest_checkpoint(run)
    assert pair is not None and load_snapshot(pair.snapshot).meta["step"] > 0
    events = [json.loads(line).get("event") for line in (run / "stats.jsonl").read_text().splitlines()]
    assert events.count("snapshot") == 1  # saved once, by rank 0


def test_torchrun_environment_joins_and_makes_one_run_dir(tiny_data, tmp_path):
    """Under torchrun every rank runs the same command: no spawning, one run directory. A metric during
    training (fakes generated by both ranks) equals the single-process evaluation of the snapshot."""
    port = distributed.free_port()
    args = [sys.executable, "-m", "gancli", *tiny_args(tiny_data, "train.total_kimg=0.008", "metrics.names=[fid]",
                                                       "metrics.num=7"),
            "--outdir", str(tmp_path)]
    procs = [subprocess.Popen(args, env=_env(r, 2, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (run,) = run_dirs(tmp_path)
    assert load_snapshot(latest_checkpoint(run).snapshot).meta["step"] == 2
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["kimg"] == 0.008 and record["protocol"]["n_fake"] == 7
    from gancli.metrics import evaluate_generator
    from gancli.models import load_generator

    alone = evaluate_generator(load_generator(latest_checkpoint(run).snapshot), ["fid"], num=7, seed=0)
    assert record["results"]["fid"] == pytest.approx(alone["results"]["fid"], rel=1e-3)
    assert "2 processes (gloo)" in outs[0][1] and outs[1][1].strip() == ""  # rank 1 prints nothing


def test_bad_settings_are_one_line_errors(cli, tiny_data, tmp_path):
    from helpers import assert_user_error

    assert_user_error(cli(*tiny_args(tiny_data), "--gpus", "3", "--outdir", tmp_path), "train.batch (4)", "divisible",
                      "distributed.gpus (3)")
    assert_user_error(cli(*tiny_args(tiny_data, "distributed.backend=nccl", "train.device=cpu"), "--gpus", "2",
                          "--outdir", tmp_path), "nccl", "CPU")
    assert_user_error(cli(*tiny_args(tiny_data, "distributed.timeout=0"), "--outdir", tmp_path), "distributed.timeout")
    assert not list(tmp_path.iterdir())


def test_world_from_env():
    assert distributed.world_from_env({}) is None
    assert distributed.world_from_env({"WORLD_SIZE": "1"}) is None
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert distributed.world_from_env(env) == (3, 1, 4)
    with pytest.raises(UserError, match="MASTER_ADDR"):
        distributed.world_from_env({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(UserError, match="do not fit"):
        distributed.world_from_env({**env, "RANK": "4"})
    assert distributed.under_launcher({"WORLD_SIZE": "1"}) and not distributed.under_launcher({})
    assert distributed.choose_backend("auto", "cpu") == "gloo"
    assert distributed.choose_backend("auto", "cuda") == "nccl"


HANG_SCRIPT = r"""
import os, sys, time
from gancli.recipe import load_recipe, parse_override
from gancli.train import distributed
recipe = load_recipe("quickstart", [parse_override("distributed.timeout=2"), parse_override("train.device=cpu")])
distributed.setup(recipe, *distributed.world_from_env())
if distributed.current().rank == 1:
    time.sleep(30)  # hangs instead of joining the step's collective
    sys.exit(0)
start = time.time()
try:
    distributed.agree(1, False, False)
except RuntimeError:
    print(f"failed after {time.time() - start:.1f}")
"""


def test_hung_rank_makes_collectives_fail_after_the_timeout():
    port = distributed.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", HANG_SCRIPT], env=_env(r, 2, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    out, err = procs[0].communicate(timeout=60)
    procs[1].kill()
    procs[1].wait()
    assert out.startswith("failed after"), err
    assert 1.5 <= float(out.split()[-1]) < 15  # distributed.timeout=2 seconds


SHARD_SCRIPT = r"""
import json, sys
import numpy as np
from gancli.metrics import evaluate
from gancli.train import distributed
from gancli.families import get_family
from gancli.recipe import load_recipe, parse_override
# an oracle detector: the features of seed s are (s, label, rank that computed it)
rank_of = {}
def fake_features(family, G, det, seeds, labels, *, psi, batch, probs, progress=False):
    rank = distributed.current().rank
    feats = np.array([[s, labels[i, 0], rank] for i, s in enumerate(seeds)], np.float64).reshape(-1, 3)
    return feats, (feats[:, :2] * 2 if probs else None)
evaluate.fake_features = fake_features
distributed._job_detector = lambda job, G: None
recipe = load_recipe("quickstart", [parse_override("train.device=cpu")])
distributed.setup(recipe, *distributed.world_from_env())
out = []
for num in (7, 1, 6):  # uneven shards, fewer seeds than ranks, even shards
    seeds = list(range(100, 100 + num))
    labels = np.arange(num, dtype=np.float32)[:, None] * 10
    with distributed.metrics_session(None) as evaluates:
        if evaluates:
            f, p = distributed.sharded_fake_features(get_family("stylegan2"), None, None, None, seeds, labels, psi=1.0,
                                                     batch=2, probs=True)
            out.append({"f": f.tolist(), "p": p.tolist()})
if distributed.current().rank == 0:
    print(json.dumps(out))
distributed.shutdown()
"""


def test_metric_fakes_are_shared_by_ranks_and_gathered_in_seed_order():
    port = distributed.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT], env=_env(r, 2, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for num, got in zip((7, 1, 6), json.loads(outs[0][0])):
        f = np.array(got["f"])
        assert f[:, 0].tolist() == list(range(100, 100 + num))  # every seed once, in order
        assert f[:, 1].tolist() == [10.0 * i for i in range(num)]  # with its own label
        ranks = f[:, 2].tolist()
        assert ranks == ([0.0] if num == 1 else [float(i % 2) for i in range(num)])  # rank r made seeds r, r+2, ...
        assert np.array_equal(np.array(got["p"]), f[:, :2] * 2)


# A few steps of any recipe (e.g. the ResNet family: several D steps per G step, batch norm, spectral
# norm) on one rank; writes the rank's G and D parameters and ADA state to OUT/rank-R.pt.
RECIPE_RANK_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch
from gancli.data import batches, open_dataset
from gancli.losses import LossStats
from gancli.recipe import load_recipe, parse_override
from gancli.train import distributed
from gancli.train.loop import Trainer
job = json.loads(sys.argv[1])
recipe = load_recipe(job["recipe"], [parse_override(s) for s in job["overrides"]])
world = distributed.world_from_env()
device = distributed.setup(recipe, *world)
trainer = Trainer(recipe, open_dataset(recipe.data.source, 16, cache=False), Path(job["out"]), device=device, progress=False)
trainer.use_data(batches(trainer.dataset, trainer.batch_rank, seed=0, rank=world[0], world_size=world[2]))
stats = LossStats()
for _ in range(job["steps"]):
    trainer.train_step(stats)
tt = trainer.training
torch.save({"G": dict(tt.G.named_parameters()), "D": dict(tt.D.named_parameters()),
            "cur_nimg": trainer.state.cur_nimg, "ada": tt.ada.state_dict() if getattr(tt, "ada", None) else None},
           Path(job["out"]) / f"rank-{world[0]}.pt")
distributed.shutdown()
"""


def test_resnet_family_ranks_take_the_same_steps(tiny_data, tmp_path):
    """SAGAN with extra D steps while the D loss is above a threshold: both ranks take the same steps and stay identical."""
    from test_biggan import tiny_overrides

    overrides = tiny_overrides("sagan-cifar10", f"data.source={tiny_data}", "train.d_loss_threshold=-1.0",
                               "train.d_extra_steps=2", "train.batch_gpu=1")
    job = json.dumps({"recipe": "sagan-cifar10", "overrides": overrides, "steps": 2, "out": str(tmp_path)})
    r0, r1 = _rank_states(RECIPE_RANK_SCRIPT, job, tmp_path)
    # the hinge D loss is >= 0 > -1, so each step takes 1 + 2 extra D steps of the global batch 4
    assert r0["cur_nimg"] == r1["cur_nimg"] == 2 * 3 * 4
    for net in ("G", "D"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), (net, k)


def test_ada_p_is_the_same_on_every_rank_and_as_one_process(tiny_data, tmp_path):
    """ADA's sign statistics are summed over the ranks each step: p moves as in a single process."""
    extra = ("augment.kind=ada", "augment.interval=2", "augment.speed_kimg=0.1", "train.batch_gpu=2")
    job = json.dumps({"recipe": "quickstart", "overrides": _overrides(tiny_data, *extra), "steps": 5, "out": str(tmp_path)})
    r0, r1 = _rank_states(RECIPE_RANK_SCRIPT, job, tmp_path)
    assert torch.equal(r0["ada"]["p"], r1["ada"]["p"]) and torch.equal(r0["ada"]["signs"], r1["ada"]["signs"])
    single, _ = _single_process(tiny_data, 5, *extra)
    # two updates (after steps 2 and 4) of 4 * 2 / 100 each; the step-5 statistics count all 4 reals
    assert float(r0["ada"]["p"]) == pytest.approx(float(single.training.ada.p)) and float(single.training.ada.p) > 0
    assert torch.equal(r0["ada"]["signs"], single.training.ada.signs.cpu()) and float(single.training.ada.signs[1]) == 4
    for net, module in (("G", single.training.G), ("D", single.training.D)):
        for k, v in module.named_parameters():
            torch.testing.assert_close(r0[net][k], v, rtol=1e-5, atol=2e-6, msg=f"{net}.{k}")


# One rank of a 2-process group: a trainer-like reference cycle holds the group (as Trainer <-> its family
# training object do), an all-reduce runs, then shutdown(); prints the OS thread counts before setup and after.
SHUTDOWN_SCRIPT = r"""
import gc, os, sys
import torch
from gancli.recipe import load_recipe
from gancli.train import distributed
torch.ones(8).add_(1)
gc.collect()
before = len(os.listdir("/proc/self/task"))
distributed.setup(load_recipe("quickstart"), *distributed.world_from_env())
class Owner: pass
a, b = Owner(), Owner()
a.other, b.other, a.ddp = b, a, distributed.current()
x = torch.ones(1000)
torch.distributed.all_reduce(x)
del a, b, x
distributed.shutdown()
print(before, len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_shutdown_joins_the_gloo_threads_before_the_interpreter_exits():
    """The gloo groups' threads are gone after shutdown(), even while reference cycles held the groups:
    a group thread that outlives it aborts the process at exit ('terminate called without an active
    exception', signal 6), which killed 1 in ~15 two-process runs before the fix."""
    port = distributed.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", SHUTDOWN_SCRIPT], env=_env(r, 2, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for out, _ in outs:
        before, after = (int(v) for v in out.split())
        assert after <= before, out
