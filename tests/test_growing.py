"""Progressive growing (PGGAN and StyleGAN v1): the schedule, growth continuity of G and D, the faded
reals, StyleGAN's AdaIN and noise against float64 formulas, exact resume mid-fade and across phase
boundaries, the commands on grown checkpoints, the dry-run plan and the progress bar."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error

from gancli.families.pggan.nets import PGDiscriminator, PGGenerator
from gancli.families.stylegan.nets import AdaIN, NoiseInput, StyleDiscriminator, StyleGenerator
from gancli.recipe import Recipe
from gancli.train.checkpoint import latest_checkpoint, load_snapshot
from gancli.train.growing import Schedule, fade_reals

TINY = {
    "pggan": "model: {kind: pggan, z_dim: 8, channel_base: 64, channel_max: 16}\n",
    "stylegan": "model: {kind: stylegan, z_dim: 8, w_dim: 8, mapping_layers: 2, channel_base: 64, channel_max: 16}\n",
}


def _recipe(tmp_path: Path, kind: str, extra: str = "") -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(f"name: {kind}-tiny\n{TINY[kind]}data: {{resolution: 16}}\n"
                    "train: {batch: 4, start_res: 4, fade_kimg: 0.008, stable_kimg: 0.008, ema_kimg: 0.01,\n"
                    "        snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 4,\n"
                    "        schedule: [{res: 4, lr: 0.002}, {res: 16, batch: 4, lr: 0.003}]" + extra + "}\n")
    return path


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    return {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}


def _train(cli, recipe, data, kimg, outdir=None, resume=None):
    args = ["train", recipe, "--data", data, "--kimg", kimg]
    args += ["--resume", resume] if resume else ["--outdir", outdir]
    result = cli(*args)
    assert result.code == 0, result
    return result


# --------------------------------------------------------------------------------------------------
# The schedule


def _train_section(**kw):
    data = {"kind": "pggan"}
    recipe = Recipe.from_dict({"model": data, "data": {"resolution": 64},
                               "train": {"batch": 8, "start_res": 8, "fade_kimg": 0.5, "stable_kimg": 0.3, **kw}})
    return recipe.train


def test_schedule_phases_add_up_and_alpha_reaches_exactly_one():
    t = _train_section(schedule=[{"res": 16, "batch": 4, "lr": 0.01}])
    sched = Schedule(t, 64)
    assert [p.res for p in sched.phases] == [8, 16, 32, 64]
    # first phase: stable only; each later one: fade then stable; they tile the kimg axis.
    assert [(p.start_nimg, p.fade_nimg, p.stable_nimg) for p in sched.phases] == [
        (0, 0, 300), (300, 500, 300), (1100, 500, 300), (1900, 500, 300)]
    assert sched.full_nimg == 300 + 3 * 800 == 2700
    assert [(p.batch, p.g_lr) for p in sched.phases] == [(8, 0.002), (4, 0.01), (8, 0.002), (8, 0.002)]
    # alpha: linear over the fade, exactly 1 from its end on (and never above).
    assert sched.at(299).res == 8 and sched.at(299).alpha == 1.0
    assert sched.at(300).res == 16 and sched.at(300).alpha == 0.0 and sched.at(300).fading
    assert sched.at(550).alpha == 0.5
    assert sched.at(799).alpha == pytest.approx(499 / 500) and sched.at(799).alpha < 1
    assert sched.at(800).alpha == 1.0 and not sched.at(800).fading
    assert sched.at(10**7).res == 64 and sched.at(10**7).alpha == 1.0
    alphas = [sched.at(n).alpha for n in range(1100, 1601, 4)]
    assert alphas[-1] == 1.0 and all(b >= a for a, b in zip(alphas, alphas[1:]))
    assert len({sched.at(n).segment for n in range(0, 2700, 10)}) == 7  # 1 + 2 per grown resolution


def test_faded_reals_are_the_papers_blend():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    x8 = x.reshape(2, 3, 8, 2, 8, 2).mean(dim=[3, 5])  # box-filtered to 8 px
    x4 = x8.reshape(2, 3, 4, 2, 4, 2).mean(dim=[3, 5])
    up = x4.repeat_interleave(2, 2).repeat_interleave(2, 3)
    for alpha in (0.0, 0.3, 1.0):
        oracle = (1 - alpha) * up + alpha * x8
        assert torch.allclose(fade_reals(x, 8, alpha), oracle, atol=1e-12)
    assert torch.equal(fade_reals(x, 16, 1.0), x)


# --------------------------------------------------------------------------------------------------
# Growth continuity: just after growing (alpha 0), G's output equals the old network's upsampled
# output, and D's score equals the old D's score on the downsampled image.


def _nets(kind):
    torch.manual_seed(0)
    if kind == "pggan":
        G = PGGenerator(z_dim=8, img_resolution=32, channel_base=64, channel_max=16, start_res=4)
        D = PGDiscriminator(img_resolution=32, channel_base=64, channel_max=16, start_res=4)
    else:
        G = StyleGenerator(z_dim=8, w_dim=8, img_resolution=32, mapping_layers=2, channel_base=64, channel_max=16,
                           start_res=4)
        D = StyleDiscriminator(img_resolution=32, channel_base=64, channel_max=16, start_res=4)
        with torch.no_grad():  # non-zero noise strengths, so the noise inputs take part
            for name, p in G.named_parameters():
                if name.endswith("noise.weight"):
                    p.normal_()
    return G.eval(), D.eval()


@pytest.mark.parametrize("kind", ["pggan", "stylegan"])
@pytest.mark.parametrize("res", [8, 16, 32])
def test_growth_continuity_of_g_and_d(kind, res):
    G, D = _nets(kind)
    z = torch.randn(4, 8)
    with torch.no_grad():
        G.set_growth(res // 2, 1.0)
        old = G(z, upsample=False)
        old_full = G(z)
        G.set_growth(res, 0.0)
        new = G(z, upsample=False)
        assert new.shape[-1] == res and old.shape[-1] == res // 2
        up = old.repeat_interleave(2, 2).repeat_interleave(2, 3)
        assert torch.allclose(new, up, atol=1e-6), (new - up).abs().max()
        assert torch.allclose(G(z), old_full, atol=1e-6)  # at the final size too
        G.set_growth(res, 0.5)
        assert not torch.allclose(G(z, upsample=False), up, atol=1e-3)  # the new block does take part

        x = torch.randn(4, 3, res, res)
        D.set_growth(res // 2, 1.0)
        old_score = D(torch.nn.functional.avg_pool2d(x, 2))
        D.set_growth(res, 0.0)
        assert torch.allclose(D(x), old_score, atol=1e-6)
        D.set_growth(res, 0.5)
        assert not torch.allclose(D(x), old_score, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# StyleGAN's layers against float64 formulas


def test_adain_is_the_float64_formula():
    torch.manual_seed(1)
    layer = AdaIN(5, 7).double()
    with torch.no_grad():
        layer.affine.bias.normal_()
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64) * 3 + 1
    w = torch.randn(3, 7, dtype=torch.float64)
    A = layer.affine.weight.detach().numpy() / math.sqrt(7)  # equalized lr: weight / sqrt(fan_in), gain 1
    y = w.numpy() @ A.T + layer.affine.bias.detach().numpy()
    ys, yb = y[:, :5] + 1, y[:, 5:]
    xn = x.numpy()
    mu = xn.mean(axis=(2, 3), keepdims=True)
    sigma = np.sqrt(((xn - mu) ** 2).mean(axis=(2, 3), keepdims=True) + 1e-8)
    oracle = ys[:, :, None, None] * (xn - mu) / sigma + yb[:, :, None, None]
    assert np.allclose(layer(x, w).detach().numpy(), oracle, rtol=1e-12, atol=1e-12)


def test_noise_input_is_the_float64_formula():
    torch.manual_seed(2)
    layer = NoiseInput(4, 8).double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    strength = layer.weight.detach().numpy()[None, :, None, None]
    const = layer.noise_const.numpy()[None, None]
    assert np.allclose(layer(x, "const").detach().numpy(), x.numpy() + strength * const, rtol=0, atol=1e-12)
    assert torch.equal(layer(x, "none"), x)
    torch.manual_seed(5)
    out = layer(x, "random")
    torch.manual_seed(5)
    noise = torch.randn(2, 1, 8, 8, dtype=torch.float64).numpy()  # one map per sample, shared by channels
    assert np.allclose(out.detach().numpy(), x.numpy() + strength * noise, rtol=0, atol=1e-12)


def test_stylegan_api_truncation_and_per_resolution_noise():
    G, _ = _nets("stylegan")
    assert (G.num_ws, G.z_dim, G.c_dim, G.img_resolution, tuple(G.w_avg.shape)) == (8, 8, 0, 32, (8,))
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        z = torch.randn(2, 8)
        ws = G.mapping(z, None)
        tr = G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=3)
        oracle = ws.clone()
        oracle[:, :3] = G.w_avg + 0.7 * (ws[:, :3] - G.w_avg)
        assert torch.allclose(tr, oracle, atol=1e-6)
        assert torch.equal(G.synthesis(ws, noise_mode={}), G.synthesis(ws, noise_mode="none"))
        every = {r: "const" for r in (4, 8, 16, 32)}
        assert torch.equal(G.synthesis(ws, noise_mode=every), G.synthesis(ws, noise_mode="const"))
        only4 = G.synthesis(ws, noise_mode={4: "const"})
        assert not torch.equal(only4, G.synthesis(ws, noise_mode="none"))
        assert not torch.equal(only4, G.synthesis(ws, noise_mode="const"))


# --------------------------------------------------------------------------------------------------
# Training: exact resume in the middle of a fade and across phase boundaries; the commands.
# Schedule of the tiny recipe (batch 4): 4 px 0-8 images, 8 px fade 8-16 + stable 16-24,
# 16 px fade 24-32 + stable from 32.


@pytest.mark.parametrize("kind", ["pggan", "stylegan"])
def test_exact_resume_mid_fade_and_across_phase_boundaries(cli, tiny_data, tmp_path, kind):
    recipe = _recipe(tmp_path, kind)
    _train(cli, recipe, tiny_data, 0.036, outdir=tmp_path / "straight")
    _train(cli, recipe, tiny_data, 0.012, outdir=tmp_path / "split")  # stops at alpha 0.5 of the 8 px fade
    (straight,), (split,) = (list((tmp_path / d).iterdir()) for d in ("straight", "split"))
    mid = _tensors(split)
    assert int(mid["G.growth_res" if kind == "pggan" else "G.synthesis.growth_res"]) == 8
    _train(cli, recipe, tiny_data, 0.028, resume=split)  # across 8 px stable and into the 16 px fade
    _train(cli, recipe, tiny_data, 0.036, resume=split)  # across the end of the 16 px fade
    a, b = _tensors(straight), _tensors(split)
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    prefix = "G." if kind == "pggan" else "G.synthesis."
    assert int(a[prefix + "growth_res"]) == 16 and float(a[prefix + "growth_alpha"]) == 1.0
    assert not torch.equal(a["G.torgb16.weight" if kind == "pggan" else "G.synthesis.torgb16.weight"],
                           mid["G.torgb16.weight" if kind == "pggan" else "G.synthesis.torgb16.weight"])
    state = torch.load(latest_checkpoint(straight).state, weights_only=True)["state"]
    sa = torch.load(latest_checkpoint(split).state, weights_only=True)["state"]
    assert state["growth"] == sa["growth"]
    assert state["growth"]["adam_resets"] == 4  # 8 px fade, its end, 16 px fade, its end
    assert state["cur_nimg"] == 36 and state["step"] == 9
    assert {g["lr"] for name in ("G", "D") for g in state["optimizers"][name]["param_groups"]} == {0.003}  # 16 px
    logged = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    assert any(r.get("grow/res") == 16.0 and r.get("grow/alpha") == 1.0 for r in logged)

    # The snapshot renders at the final resolution through the commands.
    out = tmp_path / "out"
    result = cli("sample", straight, "--seeds", "0-1", "--outdir", out)
    assert result.code == 0, result
    from PIL import Image

    assert Image.open(out / "seed0000.png").size == (16, 16)
    # training grids at every stage are upsampled to the final resolution (2x2 grid of 16 px images)
    grids = sorted(straight.glob("fakes-*.png"))
    assert grids and all(Image.open(g).size == (32, 32) for g in grids)


def test_stylegan_checkpoints_serve_the_latent_commands(cli, tiny_data, tmp_path):
    from PIL import Image

    recipe = _recipe(tmp_path, "stylegan")
    _train(cli, recipe, tiny_data, 0.012, outdir=tmp_path / "run")
    (run,) = list((tmp_path / "run").iterdir())
    for args, out in (
        (["mix", run, "--rows", "1,2", "--cols", "3,4", "--styles", "coarse"], "mix.png"),
        (["noise", run, "--seeds", "1", "--draws", "2"], "noise.png"),
        (["truncate", run, "--seeds", "0-1", "--psi", "1,0.7,0", "--trunc-cutoff", "4"], "trunc.png"),
        (["interpolate", run, "--seeds", "1,2", "--frames", "3", "--space", "w"], "walk.gif"),
    ):
        result = cli(*args, "--out", tmp_path / out)
        assert result.code == 0, (args, result)
        assert (tmp_path / out).exists()
    assert Image.open(tmp_path / "mix.png").size == (16 * 3, 16 * 3)
    # project into W+ (noise maps of the StyleGAN layers included), and render the result back
    result = cli("project", run, run / "reals.png", "--steps", "2", "--space", "w+", "--outdir", tmp_path / "proj")
    assert result.code == 0, result
    (target,) = list((tmp_path / "proj").iterdir())
    with np.load(target / "projected_w.npz") as f:
        assert f["w"].shape == (1, 6, 8) and sum(k.startswith("noise.") for k in f.files) == 6
    result = cli("sample", run, "--projected-w", target / "projected_w.npz", "--outdir", tmp_path / "back")
    assert result.code == 0, result
    back = next((tmp_path / "back").iterdir())
    assert np.array_equal(np.asarray(Image.open(back)), np.asarray(Image.open(target / "proj.png")))
    result = cli("sample", run, "--seeds", "3", "--trunc", "0.7", "--trunc-cutoff", "6", "--outdir", tmp_path / "s")
    assert result.code == 0, result
    assert_user_error(cli("sample", run, "--seeds", "3", "--trunc-cutoff", "7", "--trunc", "0.5",
                          "--outdir", tmp_path / "s2"), "--trunc-cutoff 7", "1..6")


def test_pggan_is_refused_what_it_lacks(cli, tiny_data, tmp_path):
    recipe = _recipe(tmp_path, "pggan")
    _train(cli, recipe, tiny_data, 0.008, outdir=tmp_path / "run")
    (run,) = list((tmp_path / "run").iterdir())
    from PIL import Image

    grid = np.asarray(Image.open(run / "fakes-000000.png"))  # G at 4 px, upsampled to 16: constant 4x4 blocks
    assert grid.shape[:2] == (32, 32) and grid.std() > 0
    assert (grid == grid[::4, ::4].repeat(4, 0).repeat(4, 1)).all()
    assert_user_error(cli("mix", run, "--rows", "1", "--cols", "2", "--out", tmp_path / "m.png"),
                      "mix: a pggan generator has no per-layer styles")
    assert_user_error(cli("sample", run, "--seeds", "1", "--trunc", "0.7", "--outdir", tmp_path / "s"),
                      "--trunc", "no truncation")


# --------------------------------------------------------------------------------------------------
# Recipes, plan, progress, bad input


def test_dry_run_lists_the_phases(cli, tmp_path):
    result = cli("train", _recipe(tmp_path, "pggan"), "--dry-run", "--kimg", "0.04")
    assert result.code == 0, result
    assert re.search(r"4 px: 0-0.008 kimg \(stable 0.008\), batch 4, lr G 0.002 / D 0.002", result.out), result.out
    assert "8 px: 0.008-0.024 kimg (fade 0.008 + stable 0.008), batch 4, lr G 0.002 / D 0.002" in result.out
    assert "16 px: 0.024-0.04 kimg (fade 0.008 + stable 0.008), batch 4, lr G 0.003 / D 0.003" in result.out
    assert "= 10 steps" in result.out


@pytest.mark.parametrize("name", ["pggan-quick", "stylegan-quick", "pggan-celebahq1024", "stylegan-ffhq1024",
                                  "stylegan-ffhq256"])
def test_builtin_recipes_plan(cli, name):
    result = cli("train", name, "--dry-run")
    assert result.code == 0, result
    assert "phases" in result.out and "px:" in result.out


def test_progress_bar_shows_resolution_and_alpha(monkeypatch):
    from rich.console import Console

    from gancli.train.loop import _Progress

    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    with _Progress(1000, 0, enabled=True, console=console) as bar:
        bar.update(500, 10.0, {"loss/G": 0.5, "grow/res": 16.0, "grow/alpha": 0.25}, extra=["grow/res", "grow/alpha"])
    text = console.file.getvalue()
    assert "res 16" in text and "alpha 0.250" in text and "G 0.500" in text
    # not a terminal (a log file): the same values in the plain lines (gancli.progress)
    log = Console(file=io.StringIO(), width=200, force_terminal=False)
    monkeypatch.setenv("GANCLI_PROGRESS_INTERVAL", "0")
    with _Progress(1000, 0, enabled=True, console=log) as bar:
        bar.update(500, 10.0, {"loss/G": 0.5, "grow/res": 16.0, "grow/alpha": 0.25}, extra=["grow/res", "grow/alpha"])
    line = log.file.getvalue().splitlines()[0]
    assert line.startswith("gancli: training 500/1,000 images (50.0%)") and line.endswith("; G 0.500, res 16, alpha 0.250")


@pytest.mark.parametrize("setting, fragments", [
    ("train.schedule=[{res: 12}]", ("train.schedule[0].res", "power of two")),
    ("train.start_res=32", ("train.start_res", "above data.resolution 16")),
    ("train.schedule=[{res: 32}]", ("train.schedule", "outside")),
    ("train.stable_kimg=0", ("stable_kimg",)),
    ("train.batch_gpu=2", ("train.batch_gpu",)),
    ("data.use_labels=true", ("data.use_labels", "unconditional")),
])
def test_bad_growth_settings_are_one_line_errors(cli, tmp_path, setting, fragments):
    assert_user_error(cli("train", _recipe(tmp_path, "pggan"), "--dry-run", "--set", setting), *fragments)


def test_sample_uses_the_recipes_sampling_truncation(cli, tiny_data, tmp_path):
    recipe = _recipe(tmp_path, "stylegan")
    result = cli("train", recipe, "--data", tiny_data, "--kimg", 0.028, "--outdir", tmp_path / "run",  # into 16 px
                 "--set", "model.sample_trunc=0.5", "--set", "model.sample_trunc_cutoff=2")
    assert result.code == 0, result
    (run,) = list((tmp_path / "run").iterdir())
    outs = {}
    for name, args in (("default", []), ("explicit", ["--trunc", "0.5", "--trunc-cutoff", "2"]),
                       ("none", ["--trunc", "1"]), ("all", ["--trunc", "0.5"])):
        result = cli("sample", run, "--seeds", "0-3", "--grid", "2x2", "--outdir", tmp_path / name, *args)
        assert result.code == 0, result
        outs[name] = (tmp_path / name / "grid.png").read_bytes()
        if name == "default":
            assert "truncation psi 0.5 on the first 2 layers of W" in result.out
    assert outs["default"] == outs["explicit"]
    assert outs["default"] != outs["none"] and outs["default"] != outs["all"]
    assert_user_error(cli("train", recipe, "--dry-run", "--set", "model.sample_trunc_cutoff=7"),
                      "model.sample_trunc_cutoff", "6 layers of W")


def test_wgan_gp_loss_is_the_float64_formula():
    from gancli.families.pggan.steps import wgan_gp_d_loss

    torch.manual_seed(3)
    w = torch.randn(3 * 4 * 4, dtype=torch.float64)

    def D(x):  # linear: grad D = w everywhere, so the penalty is (|w| - target)^2 whatever x_hat is
        return (x.flatten(1) @ w)[:, None]

    reals, fakes = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    loss = wgan_gp_d_loss(D, reals, fakes, gp_lambda=10.0, gp_target=2.0, drift=0.001)
    r, f = reals.flatten(1).numpy() @ w.numpy(), fakes.flatten(1).numpy() @ w.numpy()
    oracle = np.mean(f - r) + 10.0 / 4.0 * (np.linalg.norm(w.numpy()) - 2.0) ** 2 + 0.001 * np.mean(r**2)
    assert math.isclose(float(loss), oracle, rel_tol=1e-12)


def test_style_mixing_takes_the_second_latent_from_a_cutoff_among_the_layers_in_use():
    from gancli.families.stylegan.steps import mixed_ws

    G, _ = _nets("stylegan")
    z = torch.randn(2, 8)
    with torch.no_grad():
        plain = G.mapping(z)
        cutoffs = set()
        for seed in range(40):
            torch.manual_seed(seed)
            ws = mixed_ws(G, z, 16, prob=1.0, update_emas=False)  # 16 px: layers 0-5 in use
            same = [bool(torch.equal(ws[:, i], plain[:, i])) for i in range(G.num_ws)]
            cutoff = same.index(False)
            assert all(same[:cutoff]) and not any(same[cutoff:]) and 1 <= cutoff < 6
            cutoffs.add(cutoff)
        assert cutoffs == {1, 2, 3, 4, 5}
        torch.manual_seed(0)
        assert torch.equal(mixed_ws(G, z, 16, prob=0.0, update_emas=False), plain)
