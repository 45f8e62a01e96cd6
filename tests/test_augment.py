"""ADA: the augmentation pipeline (closed forms, invertibility, gradients, non-leaking) and the p controller."""

from __future__ import annotations

import math

import pytest
import torch

from gancli.augment import (
    OPS,
    PRESETS,
    AdaController,
    AugmentPipe,
    apply_color_matrix,
    band_filters,
    blit,
    brightness_matrix,
    contrast_matrix,
    filter_per_image,
    hue_rotation_matrix,
    luma_flip_matrix,
    preset_multipliers,
    resample_affine,
    rotate2d,
    saturation_matrix,
    scale2d,
    translate2d,
)


def only(*ops: str, **strength: float) -> dict[str, float]:
    return {op: (strength.get(op, 1.0) if op in ops else 0.0) for op in OPS}


def smooth_image(size: int = 32, channels: int = 3, where=None) -> torch.Tensor:
    """An asymmetric, band-limited image (Gaussian blobs) that the resampling filter passes almost unchanged.

    `where(x, y) -> (x', y')`: evaluate the image at other positions (pixel units, centre of pixel
    (0, 0) at (0.5, 0.5)): the analytic oracle of a geometric transform.
    """
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64) + 0.5, torch.arange(size, dtype=torch.float64) + 0.5, indexing="ij")
    if where is not None:
        x, y = where(x, y)
    s = size / 32
    blobs = [torch.exp(-((x - cx * s) ** 2 + (y - cy * s) ** 2) / (30 * s * s)) for cx, cy in ((10, 20), (22, 9), (16, 16))]
    return torch.stack(blobs[:channels])[None].float() * 2 - 1


def test_presets_are_the_papers():
    import typing

    from gancli.recipe import AugmentConfig

    assert set(PRESETS) == set(typing.get_args(typing.get_type_hints(AugmentConfig)["pipe"]))
    assert PRESETS["bgc"] == ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
                              "brightness", "contrast", "lumaflip", "hue", "saturation")
    assert PRESETS["bgcfnc"] == PRESETS["bgc"] + ("imgfilter", "noise", "cutout")
    assert preset_multipliers("bgc", {"hue": 0.5, "xflip": None})["hue"] == 0.5
    assert preset_multipliers("blit", {"noise": 2})["noise"] == 2 and preset_multipliers("blit")["noise"] == 0


@pytest.mark.parametrize("pipe", list(PRESETS))
def test_p_zero_is_the_identity(pipe):
    torch.manual_seed(0)
    images = torch.randn(6, 3, 16, 16)
    out = AugmentPipe(preset_multipliers(pipe), p=0.0)(images)
    assert torch.equal(out, images)


@pytest.mark.parametrize("pipe", list(PRESETS))
def test_gradients_reach_the_images(pipe):
    """Every preset is differentiable w.r.t. the (fake) images, twice too (R1 through the pipeline)."""
    torch.manual_seed(1)
    images = torch.randn(8, 3, 16, 16, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = AugmentPipe(preset_multipliers(pipe), p=1.0)(images)
    assert out.shape == images.shape and torch.isfinite(out).all()
    logits = torch.nn.functional.conv2d(out, weight).square().mean(dim=[1, 2, 3])
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grad.square().sum().backward()  # the R1 path: second-order through the pipeline
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def test_four_quarter_turns_return_the_input():
    images = torch.randn(3, 2, 8, 8)
    no = torch.zeros(3, dtype=torch.bool)
    zero = torch.zeros(3, dtype=torch.int64)
    out = images
    for _ in range(4):
        out = blit(out, no, torch.ones(3, dtype=torch.int64), zero, zero)
    assert torch.equal(out, images)
    for k in range(4):  # and each quarter turn is torch.rot90's
        assert torch.equal(blit(images, no, zero + k, zero, zero), torch.rot90(images, k, dims=(2, 3)))


def test_xflip_closed_form():
    images = torch.randn(2, 3, 5, 6)
    flip = torch.tensor([True, False])
    zero = torch.zeros(2, dtype=torch.int64)
    out = blit(images, flip, zero, zero, zero)
    assert torch.equal(out[0], images[0, :, :, torch.arange(5, -1, -1)]) and torch.equal(out[1], images[1])


def test_integer_translation_moves_a_marked_pixel():
    images = torch.zeros(2, 1, 9, 9)
    images[:, 0, 4, 4] = 1
    zero = torch.zeros(2, dtype=torch.int64)
    out = blit(images, zero.bool(), zero, torch.tensor([3, -2]), torch.tensor([-1, 3]))
    assert out[0, 0].nonzero().tolist() == [[3, 7]]  # (y, x): up 1, right 3
    assert out[1, 0].nonzero().tolist() == [[7, 2]]  # down 3, left 2
    # at the border the image is reflected, not wrapped: shifting right by 2 shows columns 2, 1 on the left
    ramp = torch.arange(6.0).view(1, 1, 1, 6).repeat(1, 1, 2, 1)
    shifted = blit(ramp, torch.tensor([False]), torch.tensor([0]), torch.tensor([2]), torch.tensor([0]))
    assert shifted[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3]


def test_general_geometry_matches_closed_forms():
    image = smooth_image()
    identity = resample_affine(image, torch.eye(3)[None])
    assert (identity - image).abs().max() < 0.01
    # rotate2d(pi/2) is a clockwise quarter turn on screen (y down): torch.rot90 with k=3
    quarter = rotate2d(torch.tensor([math.pi / 2]))
    assert (resample_affine(image, torch.linalg.inv(quarter)) - torch.rot90(image, 3, dims=(2, 3))).abs().max() < 0.01
    # translations (whole and fractional pixels; content moves right/down), against the analytic image
    # (the interior: at the borders the pipeline reflects the image)
    for tx, ty in ((3.0, 2.0), (0.5, -1.25)):
        moved = resample_affine(image, torch.linalg.inv(translate2d(torch.tensor([tx]), torch.tensor([ty]))))
        oracle = smooth_image(where=lambda x, y, tx=tx, ty=ty: (x - tx, y - ty))
        assert (moved - oracle)[..., 5:-5, 5:-5].abs().max() < 0.01, (tx, ty)
    # scaling by 1.5 about the centre, then rotation by 0.3 rad: output offset d shows input offset R^-1 d / 1.5
    forward = rotate2d(torch.tensor([0.3])) @ scale2d(torch.tensor([1.5]), torch.tensor([1.5]))
    warped = resample_affine(image, torch.linalg.inv(forward))
    c, s = math.cos(0.3), math.sin(0.3)

    def source(x, y):
        u, v = x - 16, y - 16
        return (c * u + s * v) / 1.5 + 16, (-s * u + c * v) / 1.5 + 16

    assert (warped - smooth_image(where=source)).abs().max() < 0.01
    # a constant image stays exactly constant under any transform (the filters have unit DC gain)
    const = torch.full([2, 3, 8, 8], 0.7)
    warped = resample_affine(const, torch.linalg.inv(rotate2d(torch.tensor([0.3, 2.0])) @ scale2d(torch.tensor([0.7, 1.3]), torch.tensor([1.2, 0.8]))))
    assert (warped - 0.7).abs().max() < 1e-5


def test_colour_matrices_invert_where_they_should():
    theta = torch.tensor([0.4, -2.0, 3.0])
    eye = torch.eye(4).expand(3, 4, 4)
    flip = luma_flip_matrix(torch.ones(3))
    assert torch.allclose(flip @ flip, eye, atol=1e-6)
    assert torch.allclose(hue_rotation_matrix(theta) @ hue_rotation_matrix(-theta), eye, atol=1e-6)
    s = torch.tensor([0.5, 2.0, 3.0])
    assert torch.allclose(saturation_matrix(s) @ saturation_matrix(1 / s), eye, atol=1e-6)
    assert torch.allclose(contrast_matrix(s) @ contrast_matrix(1 / s), eye, atol=1e-6)
    assert torch.allclose(brightness_matrix(theta) @ brightness_matrix(-theta), eye, atol=1e-6)
    images = torch.rand(3, 3, 4, 4) * 2 - 1
    twice = apply_color_matrix(apply_color_matrix(images, flip), flip)
    assert torch.allclose(twice, images, atol=1e-6)
    # closed forms: luma flip negates the grey component and keeps the chroma; hue rotation keeps the
    # grey component and the chroma length; saturation 0 leaves only grey; brightness adds to all.
    grey = images.mean(dim=1, keepdim=True)
    flipped = apply_color_matrix(images, flip)
    assert torch.allclose(flipped.mean(dim=1, keepdim=True), -grey, atol=1e-6)
    assert torch.allclose(flipped - flipped.mean(dim=1, keepdim=True), images - grey, atol=1e-6)
    rotated = apply_color_matrix(images, hue_rotation_matrix(theta))
    assert torch.allclose(rotated.mean(dim=1, keepdim=True), grey, atol=1e-6)
    assert torch.allclose((rotated - grey).norm(dim=1), (images - grey).norm(dim=1), atol=1e-5)
    assert torch.allclose(apply_color_matrix(images, saturation_matrix(torch.zeros(3))), grey.expand_as(images), atol=1e-6)
    assert torch.allclose(apply_color_matrix(images, brightness_matrix(theta)), images + theta[:, None, None, None], atol=1e-6)
    # hue rotation by 2 pi / 3 about the grey axis permutes the channels (r -> g -> b)
    perm = apply_color_matrix(images, hue_rotation_matrix(torch.full([3], 2 * math.pi / 3)))
    assert torch.allclose(perm, images[:, [2, 0, 1]], atol=1e-5)


def test_band_filters_split_the_identity():
    bands = band_filters()
    impulse = torch.zeros(bands.shape[1])
    impulse[bands.shape[1] // 2] = 1
    assert torch.allclose(bands.sum(dim=0), impulse, atol=1e-6)
    assert abs(float(bands[0].sum()) - 1) < 1e-6 and bands[1:].sum(dim=1).abs().max() < 1e-6  # DC only in band 0
    images = torch.randn(2, 3, 16, 16)
    assert torch.allclose(filter_per_image(images, bands.sum(dim=0).expand(2, -1)), images, atol=1e-5)
    # the top band of a Nyquist checkerboard passes it, the bottom band removes it
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2 - 1).float().expand(1, 1, 16, 16)
    assert filter_per_image(checker, bands[0:1]).abs().max() < 0.05
    assert (filter_per_image(checker, bands[3:4]) - checker).abs().max() < 0.05


def test_flip_and_quarter_turns_do_not_leak_below_the_threshold():
    """x-flip composed with 90-degree rotations at p < 0.8: the untransformed image is the most likely
    outcome (the augmentation is invertible in distribution, ADA Section 2.2). Counted over many draws
    of a small asymmetric image; the frequencies match the closed form of the 8 dihedral outcomes."""
    torch.manual_seed(0)
    base = torch.arange(9.0).view(1, 1, 3, 3)
    outcomes = [torch.rot90(f, k, dims=(2, 3)) for f in (base, base.flip(3)) for k in range(4)]
    draws = 20000
    for p in (0.5, 0.75):
        pipe = AugmentPipe(only("xflip", "rotate90"), p=p)
        out = pipe(base.expand(draws, 1, 3, 3))
        counts = torch.zeros(8)
        for i, o in enumerate(outcomes):
            counts[i] = (out == o).flatten(1).all(dim=1).sum()
        assert counts.sum() == draws  # every draw is one of the 8 symmetries
        assert counts.argmax() == 0, (p, counts.tolist())
        flip_p, rot_p = p / 2, p * 3 / 4  # x-flip draws flip with 1/2; a rotation draws k = 1..3 with 3/4
        expected = torch.tensor([(1 - flip_p if f == 0 else flip_p) * (1 - rot_p if k == 0 else rot_p / 3)
                                 for f in range(2) for k in range(4)])
        assert (counts / draws - expected).abs().max() < 0.015, (counts / draws, expected)


def test_op_probability_follows_p_and_its_multiplier():
    torch.manual_seed(3)
    images = torch.randn(1, 3, 4, 4).expand(20000, 3, 4, 4)
    out = AugmentPipe(only("noise", noise=0.5), p=0.6)(images)
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert abs(float(changed) - 0.3) < 0.015


def test_every_op_changes_images_at_p_one():
    torch.manual_seed(4)
    images = smooth_image(16).expand(16, 3, 16, 16).contiguous()
    for op in OPS:
        out = AugmentPipe(only(op), p=1.0)(images)
        assert torch.isfinite(out).all() and (out - images).abs().max() > 1e-3, op


def test_randomness_comes_from_the_global_generator():
    images = torch.randn(4, 3, 16, 16)
    pipe = AugmentPipe(preset_multipliers("bgcfnc"), p=0.7)
    torch.manual_seed(11)
    a = pipe(images)
    torch.manual_seed(11)
    b = pipe(images)
    torch.manual_seed(12)
    c = pipe(images)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grey_images_are_supported():
    torch.manual_seed(5)
    out = AugmentPipe(preset_multipliers("bgcfnc"), p=1.0)(torch.randn(4, 1, 16, 16))
    assert out.shape == (4, 1, 16, 16) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------------
# The p controller


def make_controller(p=0.5, adaptive=True):
    pipe = AugmentPipe(preset_multipliers("bgc"), p=p)
    return AdaController(pipe, target=0.6, speed_kimg=1.0, interval=4, batch=16, adaptive=adaptive)


def test_controller_moves_p_towards_the_target_at_the_expected_rate():
    ada = make_controller()
    step = 16 * 4 / 1000
    assert ada.step_size == pytest.approx(step)
    ada.record(torch.tensor([[2.0], [1.0], [0.5], [-1.0], [3.0]]))  # mean sign 0.6 + ... = (4 - 1) / 5 = 0.6
    ada.record(torch.tensor([[1.0], [1.0], [1.0], [1.0], [1.0]]))  # now 8 / 10 = 0.8 > 0.6: overfitting
    ada.update()
    assert float(ada.p) == pytest.approx(0.5 + step)
    assert ada.signs.tolist() == [0.0, 0.0]  # statistics reset
    ada.record(torch.tensor([[-1.0], [1.0], [-2.0]]))  # -1/3 < 0.6
    ada.update()
    assert float(ada.p) == pytest.approx(0.5)
    ada.record(torch.tensor([[1.0], [1.0], [-1.0], [1.0], [1.0]]))  # exactly 0.6: no change
    ada.update()
    assert float(ada.p) == pytest.approx(0.5)
    ada.update()  # no statistics: no change
    assert float(ada.p) == pytest.approx(0.5)


def test_controller_clamps_p_to_a_probability():
    ada = make_controller(p=0.02)
    ada.record(-torch.ones(8, 1))
    ada.update()
    assert float(ada.p) == 0.0
    ada = make_controller(p=0.98)
    ada.record(torch.ones(8, 1))
    ada.update()
    assert float(ada.p) == 1.0


def test_fixed_p_mode_keeps_p():
    ada = make_controller(p=0.3, adaptive=False)
    ada.record(torch.ones(8, 1))
    ada.update()
    assert float(ada.p) == pytest.approx(0.3)


def test_controller_state_round_trip():
    ada = make_controller(p=0.25)
    ada.record(torch.tensor([[1.0], [-1.0], [1.0]]))
    state = ada.state_dict()
    other = make_controller(p=0.0)
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.25) and other.signs.tolist() == [1.0, 3.0]


# --------------------------------------------------------------------------------------------------
# ADA in training: p in the logs and the training state, exact resume; FreezeD; --init

TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2", "model.channel_base=128",
    "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null", "model.mbstd_group_size=2",
    "train.batch=4", "train.ema_kimg=0.01", "loss.r1_interval=4", "loss.pl_interval=2", "loss.pl_weight=2",
    "loss.r1_gamma=1", "train.image_kimg=1000", "train.snapshot_kimg=1000", "train.grid_seeds=4",
]
# p starts at 0.3 and moves 4 * 4 / 100 = 0.16 per update (every 4 steps), so it visibly changes.
ADA = ["augment.kind=ada", "augment.pipe=bgcfnc", "augment.p=0.3", "augment.speed_kimg=0.1", "augment.interval=4"]


def tiny_args(data, *extra: str) -> list:
    args = ["train", "quickstart", "--data", str(data)]
    for item in TINY + ADA + list(extra):
        args += ["--set", item]
    return args


def _run(root):
    (run,) = sorted(p for p in root.iterdir() if p.is_dir())
    return run


def _final(run):
    from gancli.train.checkpoint import latest_checkpoint, load_checkpoint

    snap, state = load_checkpoint(latest_checkpoint(run))
    tensors = {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}
    return tensors, state


def test_ada_run_logs_p_and_resumes_exactly(cli, tiny_data, tmp_path):
    """A run with ADA stopped after 6 steps (mid-interval) and resumed to 8 ends bit-identical to one
    never stopped, with the same p; p is in the log and moved from its start."""
    import json

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.032"), "--outdir", straight).code == 0
    assert cli(*tiny_args(tiny_data, "train.total_kimg=0.024"), "--outdir", split).code == 0
    half, half_state = _final(_run(split))
    assert half_state["augment"]["signs"][1] == 2 * 4  # two steps of reals recorded since the update at step 4
    resumed = cli(*tiny_args(tiny_data, "train.total_kimg=0.032"), "--resume", _run(split))
    assert resumed.code == 0, resumed
    (a, state_a), (b, state_b) = _final(_run(straight)), _final(_run(split))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert torch.equal(state_a["augment"]["p"], state_b["augment"]["p"])
    p = float(state_a["augment"]["p"])
    assert p != pytest.approx(0.3) and 0 <= p <= 1
    assert abs(p - 0.3) / 0.16 == pytest.approx(round(abs(p - 0.3) / 0.16), abs=1e-5)  # whole update steps
    records = [json.loads(line) for line in (_run(straight) / "stats.jsonl").read_text().splitlines()]
    logged = [r["augment/p"] for r in records if "augment/p" in r]
    assert logged and logged[-1] == pytest.approx(p) and all(-1 <= r["augment/rt"] <= 1 for r in records if "augment/rt" in r)
    assert any(not torch.equal(a[k], half[k]) for k in a)  # the comparison can fail: 2 more steps change weights


def _tiny_trainer(data, *extra: str):
    from pathlib import Path

    from gancli.data import open_dataset
    from gancli.recipe import load_recipe, parse_override
    from gancli.train.loop import Trainer

    recipe = load_recipe("quickstart", [parse_override(s) for s in TINY + [f"data.source={data}", *extra]])
    return Trainer(recipe, open_dataset(str(data), 16), Path("unused"), progress=False)


def test_freeze_d_keeps_the_first_layers_fixed(tiny_data):
    from gancli.losses import LossStats

    trainer = _tiny_trainer(tiny_data, "train.freeze_d=2")
    before = {k: v.clone() for k, v in trainer.training.D.state_dict().items()}
    trainable = {n for n, _ in trainer.training.D.named_parameters()}
    frozen = {"b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight", "b16.conv0.bias"}  # layers 0 and 1
    assert not frozen & trainable and "b16.conv1.weight" in trainable
    reals = torch.rand(4, 3, 16, 16) * 2 - 1

    class SameReals:  # the same minibatch at every step
        def take(self, n):
            return reals[:n], torch.zeros(n, 0)

    trainer.use_data(SameReals())
    for _ in range(4):
        trainer.train_step(LossStats())
    after = trainer.training.D.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    changed = {k for k in trainable if not torch.equal(before[k], after[k])}
    assert changed == trainable  # every other D parameter was trained


def test_freeze_d_counts_layers_from_the_highest_resolution(tiny_data):
    trainer = _tiny_trainer(tiny_data, "train.freeze_d=5")  # b16: fromrgb, conv0, conv1, skip; b8: conv0
    names = {n.rsplit(".", 1)[0] for n, _ in trainer.training.D.named_parameters()}
    assert not any(n.startswith("b16.") for n in names) and "b8.conv0" not in names and "b8.conv1" in names


def test_init_starts_a_new_run_from_a_snapshot(cli, tiny_data, tmp_path):
    """--init: weights from a gancli run (any recipe with ADA and FreezeD on top), counters and optimizers fresh."""
    from helpers import assert_user_error

    from gancli.train.checkpoint import latest_checkpoint, load_snapshot

    base = ["train", "quickstart", "--data", str(tiny_data)] + [a for s in TINY for a in ("--set", s)]
    assert cli(*base, "--kimg", "0.008", "--outdir", tmp_path / "pre").code == 0
    source = _run(tmp_path / "pre")
    result = cli(*tiny_args(tiny_data, "train.total_kimg=0.004", "train.freeze_d=2"), "--init", source,
                 "--outdir", tmp_path / "fine")
    assert result.code == 0, result
    assert "fine-tuning" in result.err
    run = _run(tmp_path / "fine")
    assert run != source
    snap = load_snapshot(run / "snapshot-000000-step00000001.safetensors")
    assert snap.meta["step"] == 1  # a new run: counters start at zero
    original = load_snapshot(latest_checkpoint(source).snapshot).modules
    for name in ("G", "D"):
        diffs = {k: float((snap.modules[name][k] - original[name][k]).abs().max()) for k in original[name]}
        assert 0 < max(diffs.values()) < 0.1, name  # one small step away from the source weights
    assert diffs["b16.fromrgb.weight"] == 0 and diffs["b16.conv1.weight"] > 0  # FreezeD in the fine-tuning
    assert_user_error(cli(*tiny_args(tiny_data), "--init", source, "--resume", source), "--init", "--resume")
    assert_user_error(cli(*tiny_args(tiny_data), "--init", tmp_path / "nothing"), "nothing")


def test_bad_augment_settings_are_user_errors(cli, tiny_data, tmp_path):
    from helpers import assert_user_error

    assert_user_error(cli(*tiny_args(tiny_data, "augment.pipe=bgx"), "--outdir", tmp_path), "augment.pipe", "'bgc'")
    assert_user_error(cli(*tiny_args(tiny_data, "augment.hue=-1"), "--outdir", tmp_path), "augment.hue", ">= 0")
    assert_user_error(cli(*tiny_args(tiny_data, "augment.speed_kimg=0"), "--outdir", tmp_path), "augment.speed_kimg")
    assert_user_error(cli(*tiny_args(tiny_data, "train.freeze_d=-1"), "--outdir", tmp_path), "train.freeze_d")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_progress_bar_shows_p():
    import io

    from rich.console import Console

    from gancli.train.loop import _Progress

    out = io.StringIO()
    with _Progress(1000, 0, enabled=True, console=Console(file=out, force_terminal=True, width=200)) as bar:
        bar.update(500, 12.0, {"loss/G": 1.5, "augment/p": 0.25})
    assert "p 0.250" in out.getvalue() and "G 1.500" in out.getvalue()


def test_dense_and_convolution_resampling_agree():
    torch.manual_seed(6)
    images = torch.randn(3, 3, 16, 16)
    inverse = torch.linalg.inv(rotate2d(torch.tensor([0.3, -2.0, 1.0])) @ scale2d(torch.tensor([0.8, 1.3, 1.0]), torch.tensor([1.1, 0.7, 1.0])))
    a = resample_affine(images, inverse, dense=True)
    b = resample_affine(images, inverse, dense=False)
    assert torch.allclose(a, b, atol=1e-5) and (a - images).abs().max() > 0.1
