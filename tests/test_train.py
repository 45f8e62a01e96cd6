"""Training: a tiny StyleGAN2 run end to end, exact resume, Ctrl-C, NaN detection, lazy regularization."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancli.recipe import Recipe, load_recipe, parse_override
from gancli.train.checkpoint import latest_checkpoint, load_snapshot

TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2", "model.channel_base=128",
    "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null", "model.mbstd_group_size=2",
    "train.batch=4", "train.ema_kimg=0.01", "loss.r1_interval=4", "loss.pl_interval=2", "loss.pl_weight=2",
    "loss.r1_gamma=1", "train.image_kimg=1000", "train.snapshot_kimg=1000", "train.grid_seeds=4",
]


def tiny_args(data: Path, *extra: str) -> list[str]:
    args = ["train", "quickstart", "--data", str(data)]
    for item in TINY + list(extra):
        args += ["--set", item]
    return args


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    pair = latest_checkpoint(run_dir)
    snap = load_snapshot(pair.snapshot)
    return {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_train_writes_run_directory(cli, tiny_data, tmp_path):
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.016"), "--outdir", tmp_path)
    assert result.code == 0, result
    (run,) = run_dirs(tmp_path)
    assert run.name == "quickstart-00000"
    for name in ("reals.png", "fakes-000000.png", "recipe.yaml", "stats.jsonl", "snapshot-000000-step00000004.safetensors",
                 "state-000000-step00000004.pt"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "snapshot"
    # the session's steady speed: the 3 steps after the first (4 images each), once, before the last snapshot
    speed = records[-2]
    assert speed["event"] == "speed" and [r.get("event") for r in records].count("speed") == 1
    assert speed["kimg"] == 0.016 and speed["measured_kimg"] == 0.012 and speed["excluded_first_step"] is True
    assert speed["sec_per_kimg"] > 0 and speed["img_per_s"] == pytest.approx(12 / speed["measured_seconds"], rel=0.02)
    assert "peak_gpu_mem_gb" not in speed  # CPU run
    assert any("loss/G" in r and np.isfinite(r["loss/G"]) for r in records)
    snap = load_snapshot(run / "snapshot-000000-step00000004.safetensors")
    assert snap.meta["step"] == 4 and snap.meta["cur_nimg"] == 16
    assert Recipe.from_dict(snap.recipe).data.resolution == 16
    # a second run never reuses the directory
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.004"), "--outdir", tmp_path).code == 0
    assert [p.name for p in run_dirs(tmp_path)] == ["quickstart-00000", "quickstart-00001"]


def test_image_ticks_below_one_kimg_keep_every_grid(cli, tiny_data, tmp_path):
    """Grids are named by whole kimg; a second grid in the same kimg gets the step, so none (the step-0
    grid included) is overwritten: here a grid every step (4 images) for 4 steps."""
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.016", "train.image_kimg=0.004"), "--outdir", tmp_path)
    assert result.code == 0, result
    (run,) = run_dirs(tmp_path)
    names = sorted(p.name for p in run.glob("fakes-*.png"))
    assert names == ["fakes-000000-step00000001.png", "fakes-000000-step00000002.png", "fakes-000000-step00000003.png",
                     "fakes-000000-step00000004.png", "fakes-000000.png"]
    first, last = (np.asarray(Image.open(run / n)) for n in ("fakes-000000.png", "fakes-000000-step00000004.png"))
    assert first.shape == last.shape and not np.array_equal(first, last)  # the step-0 grid is still the untrained G


def test_resume_is_bit_identical(cli, tiny_data, tmp_path):
    """A run stopped at 6 steps and resumed to 12 ends with the weights of a run never stopped."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.048"), "--outdir", straight).code == 0
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.024"), "--outdir", split).code == 0
    (run,) = run_dirs(split)
    resumed = cli(*tiny_args(tiny_data, "train.total_kimg=0.048"), "--resume", run)
    assert resumed.code == 0, resumed
    a, b = final_tensors(run_dirs(straight)[0]), final_tensors(run)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # and the comparison can fail: a run with another seed differs
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.048", "train.seed=1"), "--outdir", tmp_path / "other").code == 0
    c = final_tensors(run_dirs(tmp_path / "other")[0])
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_errors(cli, tiny_data, tmp_path):
    from helpers import assert_user_error

    assert_user_error(cli(*tiny_args(tiny_data), "--resume", tmp_path / "nothing"), "nothing", "no such run")
    (tmp_path / "empty").mkdir()
    assert_user_error(cli(*tiny_args(tiny_data), "--resume", tmp_path / "empty"), "no complete checkpoint")


def test_sigterm_saves_and_exits_zero(tiny_data, tmp_path):
    args = [sys.executable, "-m", "gancli", *tiny_args(tiny_data, "train.total_kimg=1000"), "--outdir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list(tmp_path.glob("*/stats.jsonl"))
        if found and found[0].stat().st_size > 0:
            stats = found[0]
            break
        time.sleep(0.2)
    assert stats is not None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping" in err and "--resume" in err
    first = err.splitlines()[0]  # a log (stderr is a pipe) gets whole lines, not rich's 80 columns
    assert first.startswith("training quickstart into ") and first.endswith(" kimg)"), err
    pair = latest_checkpoint(stats.parent)
    assert pair is not None and load_snapshot(pair.snapshot).meta["step"] > 0


def test_nan_is_detected_and_not_saved(cli, tiny_data, tmp_path, monkeypatch):
    import gancli.losses as losses

    monkeypatch.setattr(losses, "g_nonsaturating", lambda logits: logits * float("nan"))
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.016"), "--outdir", tmp_path)
    assert result.code == 1
    assert "diverged at step" in result.err and "Traceback" not in result.err
    (run,) = run_dirs(tmp_path)
    assert not list(run.glob("snapshot-*")), "a diverged state must not be saved as a checkpoint"


def test_lazy_regularization_corrects_adam(tiny_data):
    from gancli.data import open_dataset
    from gancli.train.loop import Trainer

    recipe = load_recipe("quickstart", [parse_override(s) for s in TINY] + [parse_override(f"data.source={tiny_data}")])
    trainer = Trainer(recipe, open_dataset(str(tiny_data), 16), Path("unused"), progress=False)
    names = [(p.name, p.interval, p.parts) for p in trainer.training.phases]
    assert names == [("Gmain", 1, ["Gmain"]), ("Greg", 2, ["Greg"]), ("Dmain", 1, ["Dmain"]), ("Dreg", 4, ["Dreg"])]
    g_opt, d_opt = trainer.training.phases[0].opt, trainer.training.phases[2].opt
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.0025 * 2 / 3)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(0.0025 * 4 / 5)
    assert d_opt.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (4 / 5))


def test_batch_accumulation_runs_same_steps(cli, tiny_data, tmp_path):
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.008", "train.batch_gpu=2"), "--outdir", tmp_path)
    assert result.code == 0, result
    (run,) = run_dirs(tmp_path)
    assert load_snapshot(run / "snapshot-000000-step00000002.safetensors").meta["step"] == 2


def test_metrics_during_training(cli, tiny_data, tmp_path):
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.008", "metrics.names=[fid,kid]", "metrics.num=6",
                            "metrics.interval_kimg=0.004"), "--outdir", tmp_path)
    assert result.code == 0, result
    (run,) = run_dirs(tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["kimg"] for line in lines] == [0.004, 0.008]  # every 4 images, and at the end
    assert json.loads(lines[0])["snapshot"] is None
    record = json.loads(lines[-1])
    assert record["snapshot"] == "snapshot-000000-step00000002.safetensors"
    assert record["protocol"]["n_fake"] == 6 and record["protocol"]["n_real"] == 12
    assert record["results"]["fid"] > 0
    assert any('"event": "metrics"' in line for line in (run / "stats.jsonl").read_text().splitlines())


def test_cuda_ops_on_a_cpu_run_are_refused(cli, tiny_data, tmp_path):
    """ops: cuda promises the CUDA kernels; a CPU run cannot keep that promise and says so."""
    from helpers import assert_user_error

    result = cli(*tiny_args(tiny_data, "train.device=cpu"), "--ops", "cuda", "--outdir", tmp_path)
    assert_user_error(result, "ops: 'cuda'", "cpu", "auto or ref")
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_bad_dataset_for_training(cli, tmp_path):
    from helpers import assert_user_error

    assert_user_error(cli("train", "quickstart", "--data", tmp_path / "missing", "--outdir", tmp_path / "runs"), "missing")
    assert not (tmp_path / "runs").exists(), "no run directory is created for a run that cannot start"


def test_fine_tune_from_official_pickle(cli, tmp_path):
    """--resume network.pkl starts a new run from the official weights (architecture from the pickle)."""
    from gancli.convert import open_network

    pkl = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "stylegan2-ada" / "sg2-uncond-32-nosrc.pkl"
    if not pkl.is_file():
        pytest.skip("conformance fixtures not found")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(data / f"{i}.png")
    args = ["train", "quickstart", "--data", data, "--kimg", "0.004", "--batch", "4", "--set", "train.grid_seeds=4",
            "--outdir", tmp_path / "runs", "--resume", pkl]
    result = cli(*args)
    assert result.code == 0, result
    assert "fine-tuning sg2-uncond-32-nosrc.pkl" in result.err
    (run,) = run_dirs(tmp_path / "runs")
    snap = load_snapshot(run / "snapshot-000000-step00000001.safetensors")
    assert snap.meta["step"] == 1 and Recipe.from_dict(snap.recipe).model.z_dim == 64
    original, _, _ = open_network(pkl)
    for name in ("G", "D"):
        diffs = [float((snap.modules[name][k] - original[name][k]).abs().max()) for k in original[name]]
        assert 0 < max(diffs) < 0.1, name  # one small Adam step away from the official weights


def test_tensorboard_events_when_installed(tmp_path, monkeypatch):
    """With the tensorboard package present, every numeric log field also becomes a scalar event."""
    import importlib.util
    import sys
    import types

    from gancli.train.run import RunLog

    written = []

    class FakeWriter:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, global_step):
            written.append((tag, value, global_step))

        def close(self):
            written.append("closed")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorboard" else real_find_spec(name, *a))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    with RunLog(tmp_path) as log:
        log.log(kimg=1.5, step=10, **{"loss/G": 0.7})
        log.log(event="snapshot", kimg=1.5, path="snapshot-000001.safetensors")
    assert ("loss/G", 0.7, 1500) in written and ("step", 10, 1500) in written
    assert written[-1] == "closed" and len(written) == 3  # events are not scalars
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == 2


def test_class_conditional_training(cli, tmp_path):
    """use_labels trains a conditional G and D; fakes get labels of real images; --class samples it."""
    data = tmp_path / "data"
    data.mkdir()
    labels = []
    for i in range(8):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(data / f"{i}.png")
        labels.append([f"{i}.png", i % 2])
    (data / "dataset.json").write_text(json.dumps({"labels": labels}))
    result = cli(*tiny_args(data, "train.total_kimg=0.008", "data.use_labels=true"), "--outdir", tmp_path / "runs")
    assert result.code == 0, result
    (run,) = run_dirs(tmp_path / "runs")
    snap = load_snapshot(run / "snapshot-000000-step00000002.safetensors")
    assert snap.meta["c_dim"] == 2 and snap.meta["step"] == 2
    assert cli("sample", run, "--seeds", "0", "--class", "1", "--outdir", tmp_path / "out").code == 0
    assert (tmp_path / "out" / "seed0000.png").is_file()


def test_speed_meter_leaves_out_the_first_step_and_maintenance(monkeypatch):
    """sec_per_kimg counts the time from the end of the first step to the end of the last, less the
    paused (maintenance) spans, over the images in between."""
    from gancli.train import loop

    clock = iter([10.0, 12.0, 15.0, 20.0])  # start, pause, resume, result
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    meter = loop.SpeedMeter(torch.device("cpu"))
    assert meter.result(64) is None  # nothing measured before start
    meter.start(64)
    meter.resume()  # not paused: no effect, reads no clock
    meter.pause()
    meter.resume()
    out = meter.result(64 + 1000)
    assert out["measured_seconds"] == pytest.approx(7.0)  # 10 s elapsed, 3 s of maintenance
    assert out["sec_per_kimg"] == pytest.approx(7.0) and out["measured_kimg"] == 1.0
    assert out["img_per_s"] == pytest.approx(1000 / 7, abs=0.01)
