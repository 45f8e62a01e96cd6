"""The class-conditional ResNet family (SNGAN, SAGAN, BigGAN): networks, losses, training, recipes, commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image

from gancli.families.resnet.nets import (
    ConditionalBatchNorm2d,
    Discriminator,
    Generator,
    SNConv2d,
    SNLinear,
    standing_statistics,
)
from gancli.latent import z_from_seeds
from gancli.losses import BCELoss, HingeLoss, add_orthogonal_grad
from gancli.models import build_networks, load_generator
from gancli.recipe import load_recipe, parse_override
from gancli.render import to_uint8
from gancli.train.checkpoint import latest_checkpoint, load_snapshot, save_checkpoint

RECIPES = ["sngan-cifar10", "sagan-cifar10", "sagan-imagenet128", "biggan-cifar10", "biggan-imagenet128", "biggan-dogs64"]


def tiny(*extra: str) -> list[str]:
    """Scale any recipe of the family down to CPU size (16 px, 2-4 channels, batch 4 in rounds of 2)."""
    return ["data.resolution=16", "model.g_ch=2", "model.d_ch=2", "model.z_dim=12", "model.g_ch_mult=null",
            "model.d_ch_mult=null", "train.batch=4", "train.batch_gpu=2", "train.image_kimg=1000",
            "train.snapshot_kimg=1000", "train.grid_seeds=4", "train.device=cpu", *extra]


def tiny_overrides(name: str, *extra: str) -> list[str]:
    recipe = load_recipe(name)
    out = tiny(*extra)
    if recipe.model.attn_res:
        out.append("model.attn_res=[8]")
    if recipe.model.shared_dim:
        out.append("model.shared_dim=4")
    if recipe.train.standing_stats:
        out.append("train.standing_stats=2")
    if recipe.train.ema_start:
        out.append("train.ema_start=1")
    return out




# --------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("variant", [
    dict(img_resolution=32),  # SNGAN / BigGAN CIFAR layout
    dict(img_resolution=48, bottom_width=6),  # SNGAN STL-10 48 px
    dict(img_resolution=16, attn_res=(8,), sn=True),  # SAGAN: attention, SN in G
    dict(img_resolution=64, attn_res=(32,), shared_dim=8, hier=True, sn=True, init="ortho"),  # BigGAN
    dict(img_resolution=16, c_dim=0),  # unconditional
])
def test_generator_and_discriminator_shapes(variant):
    torch.manual_seed(0)
    c_dim = variant.pop("c_dim", 3)
    res = variant["img_resolution"]
    G = Generator(z_dim=15, c_dim=c_dim, ch=2, **variant)
    D = Discriminator(c_dim=c_dim, img_resolution=res, ch=2, bottom_width=variant.get("bottom_width", 4),
                      attn_res=variant.get("attn_res", ()))
    z = torch.randn(3, 15)
    c = torch.eye(max(c_dim, 1))[[0, 1, 2]][:, :c_dim] if c_dim else None
    img = G(z, c)
    assert img.shape == (3, 3, res, res)
    assert img.abs().max() <= 1
    assert D(img, c).shape == (3, 1)
    if variant.get("attn_res"):
        assert len(G.attn) == 1 and len(D.attn) == 1
    if variant.get("hier"):
        assert sum(G.z_chunks) == 15 and len(G.z_chunks) == len(G.blocks) + 1


def test_generator_rejects_resolution_its_blocks_cannot_make():
    from gancli.errors import UserError

    with pytest.raises(UserError, match="makes 32 px, not 64"):
        Generator(z_dim=8, c_dim=0, img_resolution=64, ch=2, ch_mult=[4, 4, 4, 4])


def test_spectral_norm_estimate_within_5_percent_of_largest_singular_value():
    torch.manual_seed(1)
    for layer, x in ((SNConv2d(8, 16, 3, padding=1), torch.randn(2, 8, 5, 5)), (SNLinear(24, 10), torch.randn(2, 24))):
        with torch.no_grad():
            layer.weight.normal_()
        true_sigma = torch.linalg.matrix_norm(layer.weight.reshape(layer.weight.shape[0], -1), 2)
        before = float(layer.sn.sigma(layer.weight.detach()))  # eval-mode read: no iteration yet from a random u
        layer.train()
        for _ in range(30):
            layer(x)
        estimate = float(layer.sn.sigma(layer.weight.detach()))
        assert abs(estimate - true_sigma) / true_sigma < 0.05, (estimate, float(true_sigma))
        assert abs(before - true_sigma) / true_sigma > 0.05  # the iterations did the work
        normalized = layer.sn(layer.weight.detach()).reshape(layer.weight.shape[0], -1)
        assert abs(float(torch.linalg.matrix_norm(normalized, 2)) - 1) < 0.05
        # eval mode never moves u, so sampling changes no state
        layer.eval()
        u = layer.sn.u.clone()
        layer(x)
        assert torch.equal(u, layer.sn.u)


def test_class_input_is_linear_so_soft_labels_blend_embeddings():
    torch.manual_seed(2)
    G = Generator(z_dim=12, c_dim=4, img_resolution=16, ch=2, shared_dim=6, hier=True, sn=True, init="ortho")
    a, b = torch.eye(4)[[1]], torch.eye(4)[[3]]
    blend = 0.3 * a + 0.7 * b
    torch.testing.assert_close(G.class_embedding(blend), 0.3 * G.class_embedding(a) + 0.7 * G.class_embedding(b))
    G.eval()
    z = torch.randn(1, 12)
    assert not torch.allclose(G(z, a), G(z, b))


def test_conditional_batch_norm_starts_at_identity_affine_for_one_hot_classes():
    cbn = ConditionalBatchNorm2d(5, cond_dim=3)
    x = torch.randn(4, 5, 3, 3)
    c = torch.eye(3)[[0, 1, 2, 0]]
    torch.testing.assert_close(cbn(x, c), cbn.bn(x))
    with torch.no_grad():
        cbn.gain.weight[:, 1] = 1.0  # class 1: gain 2
    out = cbn(x, c)
    torch.testing.assert_close(out[1], 2 * cbn.bn(x)[1])


def test_standing_statistics_are_the_average_of_batch_statistics_and_sampling_is_batch_independent():
    torch.manual_seed(3)
    G = Generator(z_dim=12, c_dim=3, img_resolution=16, ch=2, shared_dim=4, hier=True, sn=True, init="ortho")
    seen = []
    G.out_bn.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().mean(dim=[0, 2, 3])))
    us = [m.u.clone() for m in G.modules() if hasattr(m, "u")]
    standing_statistics(G, num_batches=5, batch_size=6, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 5
    torch.testing.assert_close(G.out_bn.running_mean, torch.stack(seen).mean(0))
    assert G.out_bn.momentum == 0.1 and not G.training
    assert all(torch.equal(u, m.u) for u, m in zip(us, [m for m in G.modules() if hasattr(m, "u")]))
    z = torch.randn(5, 12)
    c = torch.eye(3)[[0, 1, 2, 0, 1]]
    with torch.no_grad():
        torch.testing.assert_close(G(z[:1], c[:1]), G(z, c)[:1], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# Losses and the truncated sampler


def test_hinge_and_bce_losses_match_their_formulas():
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[-2.0], [0.3], [1.5]])
    l_real, l_fake = HingeLoss().d_loss(real, fake)
    assert l_real.flatten().tolist() == [0.0, 0.5, 2.0]
    assert torch.allclose(l_fake.flatten(), torch.tensor([0.0, 1.3, 2.5]))
    assert torch.equal(HingeLoss().g_loss(fake), -fake)
    t = 0.9
    l_real, l_fake = BCELoss(real_target=t).d_loss(real.double(), fake.double())
    s_real, s_fake = torch.sigmoid(real.double()), torch.sigmoid(fake.double())
    torch.testing.assert_close(l_real, -(t * s_real.log() + (1 - t) * (1 - s_real).log()))
    torch.testing.assert_close(l_fake, -(1 - s_fake).log())
    torch.testing.assert_close(BCELoss(t).g_loss(fake.double()), -s_fake.log())


def test_orthogonal_regularization_gradient_matches_autograd_float64():
    torch.manual_seed(4)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    rows = w.reshape(6, -1)
    # independent oracle for the value: the sum over pairs of different filters of their squared dot product
    penalty = sum((rows[i] @ rows[j]) ** 2 for i in range(6) for j in range(6) if i != j)
    expected = float(penalty.detach())
    (autograd,) = torch.autograd.grad(penalty, w)
    # add_orthogonal_grad adds strength * grad to what is there, and leaves vectors alone
    p, bias = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
    p.grad = torch.ones_like(p)
    value = add_orthogonal_grad([p, bias], 1e-4)
    torch.testing.assert_close(p.grad, 1 + 1e-4 * autograd)
    assert bias.grad is None
    assert abs(float(value) - expected) < 1e-9 * expected


def test_truncated_sampler_resamples_rather_than_clips():
    from scipy import stats

    threshold = 0.5
    z = z_from_seeds(list(range(1500)), 8, threshold=threshold).double().flatten().numpy()
    assert np.abs(z).max() <= threshold
    # clipping would pile mass at +-threshold; resampling gives the truncated normal
    assert np.mean(np.abs(z) > 0.99 * threshold) < 0.02
    result = stats.kstest(z, stats.truncnorm(-threshold, threshold).cdf)
    assert result.pvalue > 1e-3, result
    clipped = np.clip(np.random.RandomState(0).randn(len(z)), -threshold, threshold)
    assert stats.kstest(clipped, stats.truncnorm(-threshold, threshold).cdf).pvalue < 1e-6  # the test can fail
    # entries already inside the threshold are kept: the first draw of each seed survives where it was small
    first = np.random.RandomState(7).randn(8)
    kept = np.abs(first) <= threshold
    np.testing.assert_allclose(z_from_seeds([7], 8, threshold=threshold).numpy()[0][kept], first[kept], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Recipes and training


def test_family_keys_are_checked(cli):
    result = cli("train", "biggan-cifar10", "--dry-run", "--set", "model.w_dim=256")
    assert_user_error(result, "model.w_dim", "belongs to the StyleGAN2 family (model.kind stylegan2)")
    result = cli("train", "quickstart", "--dry-run", "--set", "train.ema_start=5")
    assert_user_error(result, "train.ema_start", "ResNet family")
    result = cli("train", "biggan-cifar10", "--dry-run", "--set", "loss.kind=stylegan2")
    assert_user_error(result, "loss.kind", "expected one of 'hinge', 'bce'")
    result = cli("train", "sngan-cifar10", "--dry-run", "--set", "loss.real_target=0.9")
    assert_user_error(result, "loss.real_target", "bce")
    result = cli("train", "sagan-cifar10", "--dry-run", "--set", "train.d_loss_threshold=0.5")
    assert_user_error(result, "d_extra_steps")
    result = cli("train", "sagan-cifar10", "--dry-run")
    assert result.code == 0 and "1 D step(s) per G step" in result.out
    # the plan says what the generator EMA is: none (SNGAN), BigGAN's per-step decay, or a half-life
    assert "no EMA (G_ema is a copy of G)" in cli("train", "sngan-cifar10", "--dry-run").out
    assert "EMA decay 0.9999 from step" in cli("train", "biggan-cifar10", "--dry-run").out
    assert "EMA half-life" in cli("train", "sngan-cifar10", "--dry-run", "--set", "train.ema_decay=null").out


def _trainer(data: Path, tmp: Path, name: str, *extra: str):
    from gancli.data import open_dataset
    from gancli.train.loop import Trainer

    recipe = load_recipe(name, [parse_override(s) for s in tiny_overrides(name, f"data.source={data}", *extra)])
    dataset = open_dataset(str(data), 16, use_labels=True)
    return Trainer(recipe, dataset, tmp, progress=False), dataset


def _batches(dataset, batch):
    from gancli.data import batches

    return batches(dataset, batch, seed=0, start_index=0)


def test_biggan_ema_copies_until_start_then_decays(labelled_data, tmp_path):
    from gancli.losses import LossStats

    tr, dataset = _trainer(labelled_data, tmp_path, "biggan-cifar10", "train.d_steps=1", "train.ema_decay=0.5",
                           "train.ema_start=1")
    tr.use_data(_batches(dataset, 4))
    tr.train_step(LossStats())
    for p_ema, p in zip(tr.training.G_ema.parameters(), tr.training.G.parameters()):
        assert torch.equal(p_ema, p)  # step 0 < ema_start: copy
    before = [p.clone() for p in tr.training.G_ema.parameters()]
    tr.train_step(LossStats())
    for b, p_ema, p in zip(before, tr.training.G_ema.parameters(), tr.training.G.parameters()):
        torch.testing.assert_close(p_ema, 0.5 * b + 0.5 * p)
    assert tr.state.step == 2 and tr.state.cur_nimg == 8


def test_extra_d_steps_while_d_loss_is_above_threshold_and_lr_scaling(labelled_data, tmp_path):
    from gancli.losses import LossStats

    for threshold, expected_d in ((-1e9, 1 + 2), (1e9, 1)):  # a loss always above / never above the threshold
        tr, dataset = _trainer(labelled_data, tmp_path, "sagan-cifar10", f"train.d_loss_threshold={threshold}",
                               "train.d_extra_steps=2", "train.lr_ref_batch=2")
        tr.use_data(_batches(dataset, 4))
        stats = LossStats()
        tr.train_step(stats)
        assert tr.state.cur_nimg == 4 * expected_d
        assert stats.counts["loss/D"] == expected_d and stats.means()["train/extra_d_steps"] == expected_d - 1
        assert tr.optimizers()["G"].param_groups[0]["lr"] == pytest.approx(1e-4 * 4 / 2)
        assert tr.optimizers()["D"].param_groups[0]["lr"] == pytest.approx(4e-4 * 4 / 2)


@pytest.mark.parametrize("name", RECIPES)
def test_one_training_step_of_each_recipe_then_load_and_sample(cli, labelled_data, tmp_path, name):
    d_steps = load_recipe(name).train.d_steps
    args = ["train", name, "--data", labelled_data, "--outdir", tmp_path / "runs", "--set", "train.total_kimg=0.001"]
    for item in tiny_overrides(name):
        args += ["--set", item]
    result = cli(*args)
    assert result.code == 0, result
    (run,) = (tmp_path / "runs").iterdir()
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    assert snap.meta["step"] == 1 and snap.meta["cur_nimg"] == 4 * d_steps  # every D step saw its own reals
    assert snap.meta["c_dim"] == 3
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    losses = next(r for r in records if "loss/D" in r)
    assert np.isfinite(losses["loss/D"]) and np.isfinite(losses["loss/G"])
    assert ("loss/ortho" in losses) == (load_recipe(name).loss.ortho_reg > 0)
    # the weights moved (G and D were trained) and G_ema loads back through the generator API
    init_G, _ = build_networks(load_recipe(name, [parse_override(s) for s in tiny_overrides(name)]), c_dim=3)
    assert any(not torch.equal(v, snap.modules["G"][k]) for k, v in init_G.state_dict().items() if v.is_floating_point())
    # G_ema's batch-norm statistics: G's running averages, or standing statistics of G_ema's own weights
    standing = load_recipe(name).train.standing_stats > 0
    same = torch.equal(snap.modules["G_ema"]["out_bn.running_mean"], snap.modules["G"]["out_bn.running_mean"])
    assert same != standing
    loaded = load_generator(run)
    assert not loaded.has("w") and loaded.has("trunc_resample")
    z = z_from_seeds([5], loaded.G.z_dim)
    c = torch.eye(3)[[2]]
    with torch.no_grad():
        expected = to_uint8(loaded.G(z, c))[0]
    assert cli("sample", run, "--seeds", "5", "--class", "2", "--outdir", tmp_path / "out").code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "seed0005.png")), expected)


def test_biggan_resume_is_exact(cli, labelled_data, tmp_path):
    """2 steps straight == 1 step, stop, resume, 1 more step (EMA, BN statistics, SN vectors, data order)."""
    base = ["train", "biggan-cifar10", "--data", labelled_data]
    for item in tiny_overrides("biggan-cifar10", "train.d_steps=2"):
        base += ["--set", item]
    assert cli(*base, "--set", "train.total_kimg=0.016", "--outdir", tmp_path / "a").code == 0
    assert cli(*base, "--set", "train.total_kimg=0.008", "--outdir", tmp_path / "b").code == 0
    (run_b,) = (tmp_path / "b").iterdir()
    assert cli(*base, "--set", "train.total_kimg=0.016", "--resume", run_b).code == 0
    (run_a,) = (tmp_path / "a").iterdir()
    a, b = load_snapshot(latest_checkpoint(run_a).snapshot), load_snapshot(latest_checkpoint(run_b).snapshot)
    assert a.meta["step"] == b.meta["step"] == 2
    for module in ("G", "D", "G_ema"):
        for key, value in a.modules[module].items():
            assert torch.equal(value, b.modules[module][key]), f"{module}.{key}"


# --------------------------------------------------------------------------------------------------
# Latent-space commands with a BigGAN checkpoint


@pytest.fixture(scope="module")
def biggan_ckpt(tmp_path_factory) -> Path:
    recipe = load_recipe("biggan-cifar10", [parse_override(s) for s in tiny_overrides("biggan-cifar10")])
    torch.manual_seed(5)
    G, D = build_networks(recipe, c_dim=3)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    standing_statistics(G, 4, 8, torch.Generator().manual_seed(1))
    modules = {"G_ema": G.state_dict(), "G": G.state_dict(), "D": D.state_dict()}
    meta = {"step": 0, "cur_nimg": 0, "c_dim": 3, "img_channels": 3, "resolution": 16}
    run = tmp_path_factory.mktemp("bigganrun")
    return save_checkpoint(run, 0, step=0, modules=modules, recipe=recipe.to_dict(), meta=meta, state={"step": 0}).snapshot


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _expected(loaded, seeds, c, threshold=None):
    z = z_from_seeds(seeds, loaded.G.z_dim, threshold=threshold)
    with torch.no_grad():
        return to_uint8(torch.cat([loaded.G(z[i: i + 1], c[i: i + 1]) for i in range(len(seeds))]))


def test_truncate_sweeps_resampling_thresholds_for_biggan(cli, biggan_ckpt, tmp_path):
    loaded = load_generator(biggan_ckpt)
    out = tmp_path / "trunc.png"
    result = cli("truncate", biggan_ckpt, "--seeds", "0,1", "--class", "1", "--out", out)
    assert result.code == 0, result
    assert "psi 2, 1, 0.5, 0.04" in result.out
    grid = _png(out)
    assert grid.shape == (2 * 16, 4 * 16, 3)
    c = torch.eye(3)[[1, 1]]
    for col, threshold in enumerate((2.0, 1.0, 0.5, 0.04)):
        expected = _expected(loaded, [0, 1], c, threshold)
        for row in range(2):
            np.testing.assert_array_equal(grid[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16], expected[row])
    assert not np.array_equal(grid[:16, :16], grid[:16, 48:])
    assert_user_error(cli("truncate", biggan_ckpt, "--class", "1", "--psi", "-1:1:3", "--out", tmp_path / "x.png"),
                      "threshold, which must be > 0")


def test_sample_with_class_and_threshold(cli, biggan_ckpt, tmp_path):
    loaded = load_generator(biggan_ckpt)
    assert cli("sample", biggan_ckpt, "--seeds", "3,4", "--class", "0", "--trunc", "0.7", "--outdir", tmp_path).code == 0
    expected = _expected(loaded, [3, 4], torch.eye(3)[[0, 0]], threshold=0.7)
    np.testing.assert_array_equal(_png(tmp_path / "seed0004.png"), expected[1])
    assert_user_error(cli("sample", biggan_ckpt, "--seeds", "1", "--outdir", tmp_path / "n"), "--class 0..2")


def test_interpolate_between_classes_walks_the_class_embedding(cli, biggan_ckpt, tmp_path):
    loaded = load_generator(biggan_ckpt)
    frames_dir = tmp_path / "frames"
    result = cli("interpolate", biggan_ckpt, "--seeds", "7", "--classes", "0,2", "--frames", "4",
                 "--frames-dir", frames_dir, "--out", tmp_path / "walk.gif")
    assert result.code == 0, result
    frames = sorted(frames_dir.glob("frame*.png"))
    assert len(frames) == 5
    z = z_from_seeds([7], loaded.G.z_dim)
    e0, e2 = torch.eye(3)[[0]], torch.eye(3)[[2]]
    with torch.no_grad():
        for i, t in ((0, 0.0), (2, 0.5), (4, 1.0)):
            expected = to_uint8(loaded.G(z, (1 - t) * e0 + t * e2))[0]
            np.testing.assert_array_equal(_png(frames[i]), expected)
    # z walks need no --space for a generator without W; W walks say what is missing
    assert cli("interpolate", biggan_ckpt, "--seeds", "1,2", "--class", "1", "--frames", "2",
               "--out", tmp_path / "z.gif").code == 0
    assert_user_error(cli("interpolate", biggan_ckpt, "--seeds", "1,2", "--class", "1", "--space", "w",
                          "--out", tmp_path / "w.gif"), "interpolate --space w: a biggan generator has no per-layer styles")
    assert_user_error(cli("interpolate", biggan_ckpt, "--seeds", "1,2,3", "--classes", "0,1",
                          "--out", tmp_path / "bad.gif"), "as many seeds as classes")


@pytest.mark.parametrize("command", [["mix", "--rows", "1,2", "--cols", "3"], ["noise", "--seeds", "1"]])
def test_style_commands_say_in_one_line_that_biggan_has_no_mapping(cli, biggan_ckpt, tmp_path, command):
    result = cli(command[0], biggan_ckpt, *command[1:], "--class", "0", "--out", tmp_path / "x.png")
    lacks = {"mix": "has no per-layer styles", "noise": "has no noise inputs"}[command[0]]
    assert_user_error(result, f"{command[0]}: a biggan generator {lacks}")


def test_unconditional_biggan_on_the_builtin_emoji_data(cli, tmp_path):
    """The runnable example of docs/biggan.md, scaled down: emoji has no labels, so no class embedding."""
    args = ["train", "biggan-cifar10", "--data", "emoji", "--outdir", tmp_path / "runs", "--set", "data.use_labels=false",
            "--set", "data.max_size=8", "--set", "train.total_kimg=0.001", "--set", "data.resolution=8"]
    for item in tiny_overrides("biggan-cifar10"):
        if not item.startswith("data.resolution"):
            args += ["--set", item]
    result = cli(*args)
    assert result.code == 0, result
    (run,) = (tmp_path / "runs").iterdir()
    loaded = load_generator(run)
    assert loaded.G.c_dim == 0 and loaded.G.shared is None
    assert cli("sample", run, "--seeds", "1", "--trunc", "1.0", "--outdir", tmp_path / "out").code == 0
    assert _png(tmp_path / "out" / "seed0001.png").shape == (8, 8, 3)
    assert_user_error(cli("sample", run, "--seeds", "1", "--class", "0", "--outdir", tmp_path / "o2"),
                      "unconditional")


def test_info_shows_the_keys_of_its_own_family(cli, biggan_ckpt):
    result = cli("info", biggan_ckpt)
    assert result.code == 0, result
    assert "shared_dim" in result.out and "hier" in result.out
    assert "w_dim" not in result.out and "mapping_layers" not in result.out


def test_attention_resolution_must_exist_and_psi_is_refused(cli):
    assert_user_error(cli("train", "sagan-cifar10", "--dry-run", "--set", "model.attn_res=[64]"),
                      "model.attn_res", "no generator block outputs 64 px")
    from gancli.errors import UserError

    G = Generator(z_dim=8, c_dim=0, img_resolution=8, ch=2)
    with pytest.raises(UserError, match="resampling"):
        G(torch.randn(1, 8), None, truncation_psi=0.7)


@pytest.mark.parametrize("g_batch, loss", [(None, "hinge"), (8, "hinge"), (8, "rahinge")])
def test_g_update_draws_train_g_batch_fakes(labelled_data, tmp_path, g_batch, loss):
    """train.g_batch (SNGAN's n_gen_samples: 2x the batch) sets the fakes of the G update, in rounds of
    batch_gpu; a relativistic loss also reads as many reals; D updates keep train.batch."""
    from gancli.losses import LossStats

    extra = ["train.d_steps=1", f"loss.kind={loss}", f"train.g_batch={g_batch or 'null'}"]
    extra += ["train.batch_gpu=null"] if loss == "rahinge" else []  # relativistic: whole batches
    tr, dataset = _trainer(labelled_data, tmp_path, "sngan-cifar10", *extra)
    tr.use_data(_batches(dataset, 4))
    G, seen = tr.training.G, []
    forward = G.forward

    def counting(z, c, *args, **kwargs):
        seen.append((next(G.parameters()).requires_grad, len(z)))  # G trains only in its own update
        return forward(z, c, *args, **kwargs)

    G.forward = counting
    tr.train_step(LossStats())
    n = g_batch or 4
    g_rows = sum(rows for grad, rows in seen if grad)
    d_rows = sum(rows for grad, rows in seen if not grad)
    assert g_rows == n and d_rows == 4 and all(rows <= (n if loss == "rahinge" else 2) for _, rows in seen)
    assert tr.state.cur_nimg == 4 + (n if loss == "rahinge" else 0)
