"""The DCGAN family: networks, every loss of the zoo in training, ACGAN, exact resume with the schedules
and tricks in play, the commands; and the zoo in the ResNet family."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image

from gancli.families.dcgan.nets import Discriminator, Generator
from gancli.losses import LOSS_KINDS
from gancli.recipe import load_recipe
from gancli.train.checkpoint import latest_checkpoint, load_snapshot, load_training_state
from gancli.train.schedules import lr_factor

TINY = ["data.resolution=16", "model.g_ch=4", "model.d_ch=4", "model.z_dim=8", "train.batch=4",
        "train.image_kimg=1000", "train.snapshot_kimg=1000", "train.grid_seeds=4", "train.device=cpu"]
PAPER_RECIPES = ["dcgan-emoji32", "dcgan-emoji32-lsgan", "dcgan-emoji32-wgan", "dcgan-emoji32-wgan-gp", "dcgan-emoji32-hinge",
                 "dcgan-emoji32-rals", "dcgan-celeba64", "dcgan-cifar10", "wgan-lsun64", "lsgan-cifar10", "ralsgan-cat64"]




def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _train(cli, data, outdir, kimg, *extra, recipe="dcgan-emoji32", resume=None):
    args = ["train", recipe, "--data", data, "--kimg", kimg, *_sets(*TINY, *extra)]
    args += ["--resume", resume] if resume else ["--outdir", outdir]
    result = cli(*args)
    assert result.code == 0, result
    return result


def _run(outdir: Path) -> Path:
    (run,) = Path(outdir).iterdir()
    return run


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    return {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}


# --------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("res,g_ch,first", [(64, 128, 1024), (32, 64, 256), (16, 4, 8)])
def test_dcgan_networks_follow_the_paper_layout(res, g_ch, first):
    torch.manual_seed(0)
    G = Generator(z_dim=100, c_dim=0, img_resolution=res, ch=g_ch)
    D = Discriminator(img_resolution=res, ch=8)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert convs[0].out_channels == first and convs[-1].in_channels == g_ch  # Fig. 1: 1024 at 4x4 for 64 px
    assert len(convs) == int(np.log2(res // 4)) + 1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules()) == len(convs) - 1  # not on the output
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, torch.nn.LeakyReLU))
    d_convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert isinstance(D.features[1], torch.nn.LeakyReLU)  # no batch norm after D's first layer
    weights = torch.cat([m.weight.detach().flatten() for m in convs + d_convs])
    assert abs(float(weights.std()) - 0.02) < 0.002 and abs(float(weights.mean())) < 0.001  # N(0, 0.02)
    z = torch.randn(3, 100)
    img = G(z)
    assert img.shape == (3, 3, res, res) and float(img.detach().abs().max()) <= 1
    assert D(img).shape == (3, 1)


def test_acgan_heads_and_conditional_generator():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, img_resolution=16, ch=4)
    D = Discriminator(c_dim=3, img_resolution=16, ch=4, norm="layer")
    c = torch.eye(3)
    G.eval()
    a, b = G(torch.zeros(3, 8), c), G(torch.zeros(3, 8), c[[1, 1, 1]])
    assert not torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the class changes the image
    logits, cls = D.heads(a)
    assert logits.shape == (3, 1) and cls.shape == (3, 3)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in D.modules())
    with torch.no_grad():  # layer norm: each sample's logit is independent of the rest of the batch
        torch.testing.assert_close(D(a[:1]), D(a)[:1])


# --------------------------------------------------------------------------------------------------
# Training


def test_exact_resume_with_schedule_noise_ema_start_and_adaptive_d_steps(cli, tiny_data, tmp_path):
    extra = ["loss.kind=rals", "loss.instance_noise=0.1", "loss.instance_noise_kimg=0.1", "loss.pixel_noise=true",
             "train.d_steps=2", "train.d_loss_threshold=-1.0e+9", "train.d_extra_steps=1", "train.ema_decay=0.5",
             "train.ema_start=1", "train.lr_schedule=cosine", "train.lr_period_kimg=0.02", "train.lr_period_mult=2",
             "train.lr_min=0.1"]
    # every step: 2 + 1 D updates and the G update's reals (rals), 4 each = 16 images; 4 steps = 0.064 kimg
    _train(cli, tiny_data, tmp_path / "straight", 0.064, *extra)
    _train(cli, tiny_data, tmp_path / "split", 0.032, *extra)
    _train(cli, tiny_data, None, 0.064, *extra, resume=_run(tmp_path / "split"))
    a, b = _tensors(_run(tmp_path / "straight")), _tensors(_run(tmp_path / "split"))
    assert a.keys() == b.keys() and any(k.startswith("D.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not torch.equal(a["G.net.0.weight"], a["G_ema.net.0.weight"])  # the EMA started and lags
    state = load_training_state(latest_checkpoint(_run(tmp_path / "straight")).state)
    t = SimpleNamespace(lr_schedule="cosine", lr_decay_start_kimg=0.0, lr_period_kimg=0.02, lr_period_mult=2.0,
                        lr_min=0.1)
    factor = lr_factor(t, 0.048)  # the last step started at 48 images
    assert factor < 0.99
    assert state["optimizers"]["D"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * factor)
    assert state["step"] == 4 and state["cur_nimg"] == 64


@pytest.mark.parametrize("kind", list(LOSS_KINDS))
def test_every_loss_trains_the_dcgan_family(cli, tiny_data, tmp_path, kind):
    extra = [f"loss.kind={kind}"] + (["train.optimizer=rmsprop", "train.g_lr=0.00005", "train.d_lr=0.00005",
                                      "model.d_norm=none"] if kind == "wgan" else [])
    _train(cli, tiny_data, tmp_path, 0.008, *extra)
    run = _run(tmp_path)
    after = _tensors(run)
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    relativistic = kind.startswith("ra")  # their G update reads its own 4 reals
    assert snap.meta["step"] == (1 if relativistic else 2) and snap.meta["cur_nimg"] == 8
    d = [v for k, v in after.items() if k.startswith("D.") and v.is_floating_point() and v.ndim > 1]
    assert all(torch.isfinite(v).all() for v in after.values())
    if kind == "wgan":
        assert max(float(v.abs().max()) for k, v in after.items() if k.startswith("D.")) <= 0.01
        state = load_training_state(latest_checkpoint(run).state)
        assert "square_avg" in state["optimizers"]["D"]["state"][0]  # RMSprop
    else:
        assert max(float(v.abs().max()) for v in d) > 0.01  # not clipped
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert ("loss/gp" in stats[0]) == (kind == "wgan-gp")


def test_acgan_trains_with_labels_and_samples_a_class(cli, labelled_data, tmp_path):
    _train(cli, labelled_data, tmp_path / "runs", 0.008, "data.use_labels=true", "loss.acgan_weight=1.0")
    run = _run(tmp_path / "runs")
    stats = json.loads((run / "stats.jsonl").read_text().splitlines()[0])
    assert stats["loss/D_class"] > 0 and stats["loss/G_class"] > 0
    snap = latest_checkpoint(run).snapshot
    assert _tensors(run)["D.classifier.weight"].shape[0] == 3
    for cls in ("0", "2"):
        result = cli("sample", snap, "--seeds", "0-1", "--class", cls, "--outdir", tmp_path / f"c{cls}")
        assert result.code == 0, result
    a = np.asarray(Image.open(tmp_path / "c0" / "seed0000.png"))
    b = np.asarray(Image.open(tmp_path / "c2" / "seed0000.png"))
    assert a.shape == (16, 16, 3) and not np.array_equal(a, b)


def test_dcgan_checkpoints_in_the_commands(cli, tiny_data, tmp_path):
    _train(cli, tiny_data, tmp_path / "runs", 0.004)
    snap = latest_checkpoint(_run(tmp_path / "runs")).snapshot
    result = cli("sample", snap, "--seeds", "3,5", "--outdir", tmp_path / "s")
    assert result.code == 0, result
    # seed 3 alone gives the same image as seed 3 among others
    assert cli("sample", snap, "--seeds", "3", "--outdir", tmp_path / "s1").code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s" / "seed0003.png")),
                          np.asarray(Image.open(tmp_path / "s1" / "seed0003.png")))
    assert_user_error(cli("sample", snap, "--seeds", "1", "--trunc", "0.7", "--outdir", tmp_path / "t"),
                      "dcgan generator has no truncation")
    assert_user_error(cli("mix", snap, "--rows", "1", "--cols", "2", "--out", tmp_path / "m.png"),
                      "mix: a dcgan generator has no per-layer styles")
    assert cli("interpolate", snap, "--seeds", "1,2", "--frames", "3", "--out", tmp_path / "w.gif").code == 0


def test_dry_run_plans_and_bad_input(cli, tiny_data):
    out = cli("train", "dcgan-emoji32", "--dry-run", *_sets("loss.kind=wgan-gp", "train.lr_schedule=linear",
                                                            "train.lr_decay_start_kimg=40")).out
    assert "wgan-gp: Wasserstein critic with gradient penalty" in out and "gradient penalty 10" in out
    assert "linear lr decay to 0 from 40 kimg" in out and "dcgan: G 256 channels at 4x4 down to 64" in out
    assert "RMSprop lr G 5e-05" in cli("train", "wgan-lsun64", "--dry-run").out
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("loss.kind=nope")), "loss.kind", "rahinge")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("loss.acgan_weight=1")),
                      "loss.acgan_weight", "data.use_labels")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("data.use_labels=true")),
                      "data.use_labels", "loss.acgan_weight")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("train.batch_gpu=16")), "train.batch_gpu")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("train.lr_schedule=linear",
                                                                       "train.lr_decay_start_kimg=80")),
                      "train.lr_decay_start_kimg", "total_kimg")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("loss.kind=hinge", "loss.real_target=0.9")),
                      "loss.real_target", "nonsat")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("train.lr_gamma=1.5")), "train.lr_gamma")
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("data.resolution=4")), "data.resolution")
    assert_user_error(cli("train", "quickstart", "--dry-run", *_sets("train.lr_schedule=linear")),
                      "train.lr_schedule", "ResNet family")


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_each_recipe_trains_one_step(cli, tiny_data, tmp_path, name):
    recipe = load_recipe(name)
    reads = recipe.train.d_steps + (1 if recipe.loss.kind.startswith("ra") else 0)  # minibatches of reals per step
    _train(cli, tiny_data, tmp_path, 0.001, recipe=name)
    snap = load_snapshot(latest_checkpoint(_run(tmp_path)).snapshot)
    assert snap.meta["step"] == 1 and snap.meta["cur_nimg"] == 4 * reads


# --------------------------------------------------------------------------------------------------
# The zoo in the ResNet family

RESNET_TINY = ["data.resolution=16", "model.g_ch=2", "model.d_ch=2", "model.z_dim=12", "model.g_ch_mult=null",
               "model.d_ch_mult=null", "train.batch=4", "train.image_kimg=1000", "train.snapshot_kimg=1000",
               "train.grid_seeds=4", "train.device=cpu",
               "train.g_batch=null",  # the G update on train.batch fakes (sngan-cifar10: 128, 2x its batch)
               "train.d_steps=1"]  # last: some tests leave it out


def test_wgan_gp_resnet_recipe_has_a_plain_critic_and_trains(cli, tiny_data, tmp_path):
    result = cli("train", "wgan-gp-cifar10", "--data", tiny_data, "--outdir", tmp_path, "--kimg", 0.001,
                 *_sets(*RESNET_TINY[:-1]))
    assert result.code == 0, result
    run = _run(tmp_path)
    weights = _tensors(run)
    assert not any(k.startswith("D.") and k.endswith(".u") for k in weights)  # no spectral norm in D
    assert any(k.startswith("D.") for k in weights)
    assert load_snapshot(latest_checkpoint(run).snapshot).meta["cur_nimg"] == 4 * 5  # 5 critic steps
    out = cli("train", "wgan-gp-cifar10", "--dry-run").out
    assert "no SN" in out and "gradient penalty 10" in out and "linear lr decay to 0 from 0 kimg" in out


@pytest.mark.parametrize("kind", ["wgan-gp", "rahinge", "lsgan"])
def test_resnet_family_takes_the_zoo(cli, labelled_data, tmp_path, kind):
    args = ["train", "sngan-cifar10", "--data", labelled_data, "--outdir", tmp_path, "--kimg", 0.016,
            *_sets(*RESNET_TINY, f"loss.kind={kind}")]
    result = cli(*args)
    assert result.code == 0, result
    run = _run(tmp_path)
    stats = json.loads((run / "stats.jsonl").read_text().splitlines()[0])
    assert ("loss/gp" in stats) == (kind == "wgan-gp")
    state = load_training_state(latest_checkpoint(run).state)
    # sngan-cifar10 decays its lr linearly to 0 at total_kimg (Miyato & Koyama 2018); the relativistic
    # G step reads its own reals, so a step takes 8 images instead of 4
    t = load_recipe("sngan-cifar10").train
    t.total_kimg = 0.016  # --kimg
    per_step = 8 if kind == "rahinge" else 4
    assert state["cur_nimg"] == 16 and state["step"] == 16 // per_step
    factor = lr_factor(t, (16 - per_step) / 1000)  # at the start of the last step
    assert factor == pytest.approx(1 - (16 - per_step) / 16)
    assert state["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * factor)
    assert_user_error(cli("train", "sngan-cifar10", "--dry-run", *_sets("loss.kind=rals", "train.batch_gpu=32")),
                      "train.batch_gpu", "rals")


# --------------------------------------------------------------------------------------------------
# data.color_jitter (training reals only, drawn from the step seed)


def _pil_enhanced(img_u8: np.ndarray, which: str, factor: float) -> np.ndarray:
    from PIL import ImageEnhance

    enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                "saturation": ImageEnhance.Color}[which]
    return np.asarray(enhancer(Image.fromarray(img_u8)).enhance(factor)).astype(np.int64)


@pytest.mark.parametrize("which,col,factor", [("brightness", 0, 1.3), ("brightness", 0, 0.7), ("contrast", 1, 1.4),
                                              ("contrast", 1, 0.6), ("saturation", 2, 1.5), ("saturation", 2, 0.3)])
def test_color_jitter_matches_pil_image_enhance(which, col, factor):
    from gancli.data.jitter import color_jitter

    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float64)) / 127.5 - 1
    f = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    f[0, col] = factor
    out = ((color_jitter(x, f)[0].numpy().transpose(1, 2, 0) + 1) * 127.5)
    oracle = _pil_enhanced(img, which, factor)  # PIL works in uint8 (rounded grey and mean): +-2 levels
    assert np.abs(out - oracle).max() <= 2.0, np.abs(out - oracle).max()
    assert np.abs(out - img).max() > 10  # the change is real


def test_hue_rotation_keeps_luma_and_inverts():
    from gancli.data.jitter import LUMA, hue_rotate

    torch.manual_seed(0)
    x = torch.rand(3, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.1, -0.2, 0.5], dtype=torch.float64)
    y = hue_rotate(x, t)
    w = torch.tensor(LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close((y * w).sum(1), (x * w).sum(1))
    torch.testing.assert_close(hue_rotate(y, -t), x)
    torch.testing.assert_close(hue_rotate(x, torch.zeros(3, dtype=torch.float64)), x)
    assert (y - x).abs().max() > 0.05


def test_jitter_factors_lie_in_their_ranges():
    from gancli.data.jitter import jitter_factors

    f = jitter_factors(4000, [0.1, 0.2, 0.3, 0.05], torch.Generator().manual_seed(0))
    for col, s in enumerate([0.1, 0.2, 0.3]):
        assert 1 - s <= float(f[:, col].min()) and float(f[:, col].max()) <= 1 + s
        assert float(f[:, col].max()) > 1 + 0.9 * s and float(f[:, col].min()) < 1 - 0.9 * s
    assert float(f[:, 3].abs().max()) <= 0.05
    assert torch.equal(f, jitter_factors(4000, [0.1, 0.2, 0.3, 0.05], torch.Generator().manual_seed(0)))


def test_color_jitter_trains_resumes_exactly_and_stays_out_of_the_reals_grid(cli, tiny_data, tmp_path):
    extra = ["data.color_jitter=[0.2,0.2,0.2,0.05]", "train.lr_schedule=exponential", "train.lr_gamma=0.001",
             "train.d_steps=2"]  # (linear would move with --kimg, which ends the first half early)
    _train(cli, tiny_data, tmp_path / "straight", 0.032, *extra)
    _train(cli, tiny_data, tmp_path / "split", 0.016, *extra)
    _train(cli, tiny_data, None, 0.032, *extra, resume=_run(tmp_path / "split"))
    _train(cli, tiny_data, tmp_path / "plain", 0.032, *extra[1:])
    a, b, plain = (_tensors(_run(tmp_path / d)) for d in ("straight", "split", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not torch.equal(a["D.out.weight"], plain["D.out.weight"])  # D saw jittered reals
    reals = [np.asarray(Image.open(_run(tmp_path / d) / "reals.png")) for d in ("straight", "plain")]
    assert np.array_equal(*reals)  # the reals grid (like evaluation) shows the data as it is
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("data.color_jitter=[0.1,0.1]")),
                      "data.color_jitter")


def test_dcgan_lr_scaling_and_the_adaptive_rule_in_the_trainer(tiny_data, tmp_path):
    from gancli.data import batches, open_dataset
    from gancli.losses import LossStats
    from gancli.recipe import parse_override
    from gancli.train.loop import Trainer

    for threshold, reads in ((-1e9, 1 + 2), (1e9, 1)):  # a D loss always / never above the threshold
        recipe = load_recipe("dcgan-emoji32", [parse_override(s) for s in [*TINY, f"data.source={tiny_data}",
                                                                             "train.lr_ref_batch=2",
                                                                             f"train.d_loss_threshold={threshold}",
                                                                             "train.d_extra_steps=2"]])
        dataset = open_dataset(str(tiny_data), 16)
        tr = Trainer(recipe, dataset, tmp_path, progress=False)
        tr.use_data(batches(dataset, 4, seed=0, start_index=0))
        stats = LossStats()
        tr.train_step(stats)
        assert tr.state.cur_nimg == 4 * reads and stats.counts["loss/D"] == reads
        assert stats.means()["train/extra_d_steps"] == reads - 1
        for opt in tr.optimizers().values():
            assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 4 / 2)  # batch / lr_ref_batch


def test_resnet_family_resumes_exactly_with_wgan_gp_and_a_cosine_schedule(cli, labelled_data, tmp_path):
    extra = [*RESNET_TINY, "loss.kind=wgan-gp", "train.lr_schedule=cosine", "train.lr_period_kimg=0.008"]

    def run(outdir, kimg, resume=None):
        args = ["train", "sngan-cifar10", "--data", labelled_data, "--kimg", kimg, *_sets(*extra)]
        args += ["--resume", resume] if resume else ["--outdir", outdir]
        result = cli(*args)
        assert result.code == 0, result

    run(tmp_path / "straight", 0.016)
    run(tmp_path / "split", 0.008)
    run(None, 0.016, resume=_run(tmp_path / "split"))
    a, b = _tensors(_run(tmp_path / "straight")), _tensors(_run(tmp_path / "split"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# --------------------------------------------------------------------------------------------------
# data.random_crop (store larger, train on random crops; evaluation on the centre crop)


def test_random_crops_and_centre_crop_against_slicing():
    from gancli.data.jitter import centre_crop, random_crops

    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    out = random_crops(x, torch.tensor([[0, 3], [4, 1]]), 6)
    assert torch.equal(out[0], x[0, :, 0:6, 3:9]) and torch.equal(out[1], x[1, :, 4:10, 1:7])
    assert np.array_equal(centre_crop(x.numpy(), 6), x.numpy()[..., 2:8, 2:8])


def test_random_crop_training_from_data_stored_larger(cli, tiny_data, tmp_path):
    stored = tmp_path / "stored20.zip"
    # any size converts now (the family decides what it trains on); --any-size is still accepted
    result = cli("dataset", tiny_data, stored, "--resolution", "20", "--any-size")
    assert result.code == 0, result
    extra = ["data.random_crop=20", "data.color_jitter=[0.1,0.1,0.1,0.02]", "train.lr_schedule=cosine",
             "train.lr_period_kimg=0.01"]
    _train(cli, stored, tmp_path / "straight", 0.016, *extra)
    _train(cli, stored, tmp_path / "split", 0.008, *extra)
    _train(cli, stored, None, 0.016, *extra, resume=_run(tmp_path / "split"))
    a, b = _tensors(_run(tmp_path / "straight")), _tensors(_run(tmp_path / "split"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert a["G.net.0.weight"].shape[0] == 8 and load_snapshot(latest_checkpoint(_run(tmp_path / "straight")).snapshot).meta["resolution"] == 16
    # the same data without random_crop is refused in one line: it is 20 px, not 16
    result = cli("train", "dcgan-emoji32", "--data", stored, "--kimg", 0.004, "--outdir", tmp_path / "x", *_sets(*TINY))
    assert result.code == 2 and "20" in result.err
    assert_user_error(cli("train", "dcgan-emoji32", "--dry-run", *_sets("data.random_crop=32")), "data.random_crop")
