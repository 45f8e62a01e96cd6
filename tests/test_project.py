"""gancli project: schedules and regularizer against the paper's formulas, the optimization on a tiny
generator, its files, and `gancli sample --projected-w` re-rendering the projection exactly."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image
from test_commands import make_checkpoint

import gancli.metrics.stlpips as stlpips_module
import gancli.models
from gancli import explore
from gancli import project as projection
from gancli.errors import UserError
from gancli.metrics.stlpips import STLPIPS, load_stlpips
from gancli.models import LoadedGenerator, load_generator
from gancli.render import to_uint8

STEPS = "6"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def loaded(ckpt) -> LoadedGenerator:
    return load_generator(ckpt)


@pytest.fixture(scope="module")
def perceptual() -> projection.Perceptual:
    """ST-LPIPS at 32 px (the command's default upsamples to 64) to keep the library tests fast."""
    return projection.load_perceptual(None, "cpu", min_size=32)


@pytest.fixture(scope="module")
def targets(tmp_path_factory, loaded) -> list[Path]:
    """Two 16x16 images the tiny generator made (seeds 1 and 2), as PNG files."""
    folder = tmp_path_factory.mktemp("targets")
    paths = []
    for seed, image in zip((1, 2), to_uint8(explore.sample(loaded, [1, 2]))):
        path = folder / f"seed{seed}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# --------------------------------------------------------------------------------------------------
# Closed forms


def test_learning_rate_ramps_up_linearly_and_down_with_a_cosine():
    cfg = projection.ProjectConfig(steps=1000, lr=0.1)
    lr = [projection.learning_rate(s, cfg) for s in range(1000)]
    assert lr[0] == 0.0
    assert lr[25] == pytest.approx(0.05)  # half of the 5% ramp-up
    assert lr[50] == pytest.approx(0.1) and lr[400] == pytest.approx(0.1) and lr[750] == pytest.approx(0.1)
    assert lr[875] == pytest.approx(0.05)  # half-way down the cosine: 0.5 - 0.5 cos(pi/2)
    assert lr[800] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.8 * math.pi)))  # (1 - 0.8) / 0.25 = 0.8
    assert all(a <= b for a, b in zip(lr[:50], lr[1:51])) and all(a >= b for a, b in zip(lr[750:], lr[751:]))


def test_latent_noise_decays_quadratically_to_zero_at_75_percent():
    cfg = projection.ProjectConfig(steps=100)
    assert projection.latent_noise_scale(0, cfg, 2.0) == pytest.approx(2.0 * 0.05)
    assert projection.latent_noise_scale(375 // 10, cfg, 2.0) == pytest.approx(2.0 * 0.05 * (1 - 0.37 / 0.75) ** 2)
    assert projection.latent_noise_scale(75, cfg, 2.0) == 0.0 and projection.latent_noise_scale(99, cfg, 2.0) == 0.0


def _autocorrelation_reference(n: np.ndarray) -> float:
    """float64 NumPy: sum over n and its 2x box-downsamplings (down to 8x8) of the squared lag-1 autocorrelations."""
    total = 0.0
    while True:
        total += np.mean(n * np.roll(n, 1, axis=1)) ** 2 + np.mean(n * np.roll(n, 1, axis=0)) ** 2
        if n.shape[0] <= 8:
            return total
        n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))


def test_noise_regularization_matches_a_float64_reference_per_target():
    rng = np.random.RandomState(0)
    maps = [rng.randn(2, 1, 32, 32), rng.randn(2, 1, 4, 4), np.cumsum(rng.randn(2, 1, 16, 16), axis=3)]
    got = projection.noise_regularization([torch.from_numpy(m) for m in maps])
    for i in range(2):
        expected = sum(_autocorrelation_reference(m[i, 0]) for m in maps)
        assert float(got[i]) == pytest.approx(expected, rel=1e-10)
    smooth = projection.noise_regularization([torch.from_numpy(maps[2])])
    white = projection.noise_regularization([torch.from_numpy(rng.randn(2, 1, 16, 16))])
    assert (smooth > 100 * white).all()  # a map that carries structure is penalized


def test_noise_maps_are_renormalized_per_target():
    maps = [torch.randn(3, 1, 8, 8) * torch.tensor([1.0, 5.0, 0.1]).reshape(3, 1, 1, 1) + 4]
    projection.normalize_noise_(maps)
    for n in maps[0]:
        assert float(n.mean()) == pytest.approx(0, abs=1e-5)
        assert float(n.var(unbiased=False)) == pytest.approx(1, rel=1e-5)


def test_perceptual_features_once_equal_stlpips(perceptual):
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    model = perceptual.model
    split = perceptual.distance(perceptual.features(x), perceptual.features(y))
    assert torch.allclose(split, model(x, y), rtol=1e-5, atol=1e-6)
    # small images are upsampled to the minimum size before the network (64 by default)
    default = projection.Perceptual(model)
    small = torch.rand(1, 3, 16, 16) * 2 - 1
    up = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(default.distance(default.features(small), default.features(small * 0)),
                          model(up, up * 0), rtol=1e-5, atol=1e-6)
    # large ones are area-downsampled to 256 (first feature map at full input size)
    assert default.resize(torch.zeros(1, 3, 512, 512)).shape[2:] == (256, 256)
    big = torch.rand(1, 3, 2, 2).repeat_interleave(256, 2).repeat_interleave(256, 3)
    assert torch.equal(default.resize(big), big[:, :, ::2, ::2])


def test_w_statistics_match_their_definition(loaded):
    w_avg, w_std = projection.w_statistics(loaded.G, 500, seed=5)
    z = torch.from_numpy(np.random.RandomState(5).randn(500, loaded.G.z_dim)).float()
    w = loaded.G.mapping(z, None)[:, 0].double()
    assert torch.allclose(w_avg.double(), w.mean(0), atol=1e-6)
    assert w_std == pytest.approx(float(torch.sqrt(((w - w.mean(0)) ** 2).sum(1).mean())), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# The optimization (library)


def _targets(loaded, seeds):
    return to_uint8(explore.sample(loaded, seeds))


def test_distance_decreases_and_fit_improves(loaded, perceptual):
    target = _targets(loaded, [1])
    cfg = projection.ProjectConfig(steps=25, space="w+", seed=0)
    result = projection.project(loaded.G, target, cfg, perceptual)
    history = [h[0] for h in result.history]
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3]), history
    start = projection.render(loaded.G, projection.w_statistics(loaded.G, cfg.w_avg_samples, 0)[0].reshape(1, 1, -1)
                              .repeat(1, loaded.G.num_ws, 1), None)
    assert projection.psnr(to_uint8(result.images)[0], target[0]) > projection.psnr(to_uint8(start)[0], target[0]) + 0.5


def test_batch_of_targets_is_projected_as_each_alone(loaded, perceptual):
    pair = _targets(loaded, [1, 2])
    cfg = projection.ProjectConfig(steps=8, space="w+", seed=4)
    both = projection.project(loaded.G, pair, cfg, perceptual)
    for i in range(2):
        alone = projection.project(loaded.G, pair[i: i + 1], cfg, perceptual)
        assert torch.allclose(both.ws[i], alone.ws[0], atol=1e-4), float((both.ws[i] - alone.ws[0]).abs().max())
        for name, maps in both.noise.items():
            assert torch.allclose(maps[i], alone.noise[name][0], atol=1e-4), name
    assert not torch.allclose(both.ws[0], both.ws[1], atol=1e-3)  # two targets, two latents


def test_mse_term_changes_the_loss(loaded, perceptual):
    target = _targets(loaded, [3])
    losses = {}
    for mse in (0.0, 10.0):
        def record(step, images, dist, loss, mse=mse):
            losses.setdefault(mse, (images, float(dist[0]), float(loss[0])))

        projection.project(loaded.G, target, projection.ProjectConfig(steps=2, mse=mse, noise_reg=0), perceptual, on_step=record)
    images, dist, loss = losses[0.0]
    assert loss == pytest.approx(dist, rel=1e-6)
    images10, dist10, loss10 = losses[10.0]
    pixel = float((images10 - projection.to_float(target, "cpu")).square().mean())
    assert loss10 == pytest.approx(dist10 + 10 * pixel, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# The command


def test_project_writes_files_and_a_summary_per_target(cli, ckpt, targets, tmp_path, loaded):
    result = cli("project", ckpt, *targets, "--steps", STEPS, "--outdir", tmp_path)
    assert result.code == 0, result
    for target in targets:
        folder = tmp_path / target.stem
        assert sorted(p.name for p in folder.iterdir()) == ["proj.png", "projected_w.npz", "target.png"]
        assert np.array_equal(png(folder / "target.png"), png(target))  # already 16x16: unchanged
        assert png(folder / "proj.png").shape == (16, 16, 3)
        with np.load(folder / "projected_w.npz") as data:
            assert data["w"].shape == (1, loaded.G.num_ws, loaded.G.w_dim) and data["w"].dtype == np.float32
            w = data["w"][0]
            assert np.array_equal(w, np.broadcast_to(w[:1], w.shape))  # space W: one w for every layer
            noise = {k: data[k] for k in data.files if k.startswith("noise.")}
        assert {k[len("noise."):] for k in noise} == {name for name, _ in projection.noise_layers(loaded.G)}
        for name, layer in projection.noise_layers(loaded.G):
            assert noise["noise." + name].shape == (1, *layer.noise_const.shape)
        line = next(line for line in result.out.splitlines() if str(target) in line)
        assert "ST-LPIPS" in line and "PSNR" in line and "dB" in line
        psnr = float(line.split("PSNR ")[1].split(" dB")[0])
        assert psnr == pytest.approx(projection.psnr(png(folder / "proj.png"), png(target)), abs=0.01)


def test_space_w_plus_has_one_latent_per_layer(cli, ckpt, targets, tmp_path, loaded):
    assert cli("project", ckpt, targets[0], "--steps", STEPS, "--space", "w+", "--outdir", tmp_path).code == 0
    with np.load(tmp_path / targets[0].stem / "projected_w.npz") as data:
        w = data["w"]
    assert w.shape == (1, loaded.G.num_ws, loaded.G.w_dim)
    assert not np.allclose(w[0, 0], w[0, -1])


def test_same_seed_same_result_other_seed_other_result(cli, ckpt, targets, tmp_path):
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert cli("project", ckpt, targets[0], "--steps", STEPS, "--seed", seed, "--outdir", tmp_path / name).code == 0
    stem = targets[0].stem
    for file in ("proj.png", "projected_w.npz"):
        assert (tmp_path / "a" / stem / file).read_bytes() == (tmp_path / "b" / stem / file).read_bytes()
    assert (tmp_path / "a" / stem / "projected_w.npz").read_bytes() != (tmp_path / "c" / stem / "projected_w.npz").read_bytes()


def test_sample_projected_w_reproduces_proj_png(cli, ckpt, targets, tmp_path):
    assert cli("project", ckpt, *targets, "--steps", STEPS, "--space", "w+", "--outdir", tmp_path / "p").code == 0
    for target in targets:
        folder = tmp_path / "p" / target.stem
        out = tmp_path / "s" / target.stem
        assert cli("sample", ckpt, "--projected-w", folder / "projected_w.npz", "--outdir", out).code == 0
        assert np.array_equal(png(out / "projected00.png"), png(folder / "proj.png"))
        # the stored noise maps matter: the network's own constant noise gives another image
        assert cli("sample", ckpt, "--projected-w", folder / "projected_w.npz", "--noise-mode", "none",
                   "--outdir", out / "none").code == 0
        assert not np.array_equal(png(out / "none" / "projected00.png"), png(folder / "proj.png"))
    # noise maps of another shape (another network) are refused in one line
    with np.load(tmp_path / "p" / targets[0].stem / "projected_w.npz") as data:
        arrays = {k: data[k] for k in data.files}
    first = next(k for k in arrays if k.startswith("noise."))
    arrays[first] = arrays[first][:, :2]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert_user_error(cli("sample", ckpt, "--projected-w", tmp_path / "bad.npz", "--outdir", tmp_path / "x"), "bad.npz", first)


def test_targets_are_centre_cropped_and_resized(cli, ckpt, tmp_path):
    rng = np.random.RandomState(0)
    blocks = rng.randint(0, 256, (16, 16, 3), dtype=np.uint8)
    centre = blocks.repeat(2, axis=0).repeat(2, axis=1)  # 32x32 of 2x2 blocks: a box filter to 16 gives `blocks`
    wide = np.concatenate([np.zeros((32, 8, 3), np.uint8), centre, np.full((32, 8, 3), 255, np.uint8)], axis=1)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    result = cli("project", ckpt, tmp_path / "wide.png", "--steps", "1", "--resize-filter", "box", "--outdir", tmp_path / "o")
    assert result.code == 0, result
    assert np.array_equal(png(tmp_path / "o" / "wide" / "target.png"), blocks)
    assert_user_error(cli("project", ckpt, tmp_path / "wide.png", "--resize-filter", "cubic", "--outdir", tmp_path / "q"),
                      "--resize-filter cubic", "lanczos")


def test_video_shows_target_and_fit_side_by_side(cli, ckpt, targets, tmp_path):
    result = cli("project", ckpt, targets[0], "--steps", "5", "--video", "--video-format", "gif", "--outdir", tmp_path)
    assert result.code == 0, result
    folder = tmp_path / targets[0].stem
    frames = iio.imread(folder / "proj.gif", index=None)
    assert frames.shape[:3] == (6, 16, 32)  # one frame per step below 100 steps, then the result
    # GIF frames are palette-quantized: compare approximately (left: the target, right: the fit)
    target, fit = png(folder / "target.png").astype(float), png(folder / "proj.png").astype(float)
    left, right = frames[-1][:, :16, :3].astype(float), frames[-1][:, 16:, :3].astype(float)
    assert np.abs(left - target).mean() < 6 < np.abs(left - fit).mean()
    assert np.abs(right - fit).mean() < 6 < np.abs(right - target).mean()


def test_existing_outputs_are_kept_without_force(cli, ckpt, targets, tmp_path):
    assert cli("project", ckpt, targets[0], "--steps", "1", "--outdir", tmp_path).code == 0
    before = (tmp_path / targets[0].stem / "proj.png").read_bytes()
    assert_user_error(cli("project", ckpt, targets[0], "--steps", "1", "--outdir", tmp_path), "target.png", "--force")
    assert (tmp_path / targets[0].stem / "proj.png").read_bytes() == before
    assert cli("project", ckpt, targets[0], "--steps", "1", "--outdir", tmp_path, "--force").code == 0


def test_bad_input_is_one_line(cli, ckpt, targets, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    assert_user_error(cli("project", ckpt, tmp_path / "notes.png", "--outdir", tmp_path / "o"), "notes.png")
    assert_user_error(cli("project", ckpt, tmp_path / "missing.png", "--outdir", tmp_path / "o"), "missing.png", "not found")
    assert_user_error(cli("project", ckpt, targets[0], "--space", "z", "--outdir", tmp_path / "o"), "--space z", "w+")
    assert_user_error(cli("project", ckpt, targets[0], "--steps", "0", "--outdir", tmp_path / "o"), "--steps 0")
    assert_user_error(cli("project", ckpt, targets[0], "--lr", "-1", "--outdir", tmp_path / "o"), "--lr")
    other = tmp_path / "other"
    other.mkdir()
    (other / targets[0].name).write_bytes(targets[0].read_bytes())
    assert_user_error(cli("project", ckpt, targets[0], other / targets[0].name, "--outdir", tmp_path / "o"), "rename one")
    assert not (tmp_path / "o").exists()
    assert_user_error(cli("project", ckpt, targets[0], "--outdir", tmp_path / "notes.png"), "notes.png", "not a directory")


def test_generator_without_mapping_is_refused(cli, ckpt, targets, tmp_path, monkeypatch):
    class NoMapping(torch.nn.Module):  # a generator z -> image, as BigGAN-like models are
        z_dim, c_dim, img_resolution = 4, 0, 16

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3 * 16 * 16)

        def forward(self, z, c):
            return self.fc(z).reshape(-1, 3, 16, 16)

    from gancli.families import get_family

    monkeypatch.setattr(gancli.models, "load_generator", lambda spec, device="cpu", which=None: LoadedGenerator(
        NoMapping(), None, {}, Path(spec), family=get_family("biggan")))
    assert_user_error(cli("project", ckpt, targets[0], "--outdir", tmp_path),
                      "project: a sngan generator has no latent space to project into")


def test_missing_stlpips_weights_say_what_to_install(cli, ckpt, targets, tmp_path, monkeypatch):
    monkeypatch.setattr(stlpips_module, "stlpips_file", lambda variant="vgg": None)
    assert_user_error(cli("project", ckpt, targets[0], "--outdir", tmp_path), "pip install --no-deps stlpips-pytorch")


@pytest.mark.skipif(__import__("importlib").util.find_spec("imageio_ffmpeg") is not None, reason="imageio-ffmpeg installed")
def test_mp4_without_ffmpeg_says_so(cli, ckpt, targets, tmp_path):
    assert_user_error(cli("project", ckpt, targets[0], "--video", "--video-format", "mp4", "--outdir", tmp_path),
                      "imageio-ffmpeg", "gif")
    result = cli("project", ckpt, targets[0], "--steps", "2", "--video", "--outdir", tmp_path)
    assert result.code == 0, result
    assert (tmp_path / targets[0].stem / "proj.gif").is_file() and "imageio-ffmpeg" in result.out


def _vgg_lpips_state() -> dict:
    torch.manual_seed(0)
    model = STLPIPS("vgg-lpips")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    for k in range(5):
        getattr(model, f"lin{k}").model[1].weight.data.abs_()
    return model.state_dict()


def test_user_vgg16_lpips_weights(cli, ckpt, targets, tmp_path):
    """A vanilla VGG16 LPIPS state_dict (lpips.LPIPS(net='vgg') layout) as .pth and as .safetensors."""
    from safetensors.torch import save_file

    state = _vgg_lpips_state()
    torch.save(state, tmp_path / "vgg.pth")
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("scaling_layer.")}, str(tmp_path / "vgg.safetensors"))
    x, y = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    reference = STLPIPS("vgg-lpips")
    reference.load_state_dict(state)
    for name in ("vgg.pth", "vgg.safetensors"):
        model = projection.load_weight_file(tmp_path / name, "cpu")
        assert torch.allclose(model(x, y), reference(x, y), rtol=1e-6)
        result = cli("project", ckpt, targets[0], "--steps", "2", "--lpips-weights", tmp_path / name, "--outdir", tmp_path / f"out-{name}")
        assert result.code == 0, result
        assert "LPIPS" in result.out and "ST-LPIPS" not in result.out
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("lin")}, str(tmp_path / "heads.safetensors"))
    assert_user_error(cli("project", ckpt, targets[0], "--lpips-weights", tmp_path / "heads.safetensors", "--outdir", tmp_path / "h"),
                      "heads.safetensors", "net.slice")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "heads.pth")
    assert_user_error(cli("project", ckpt, targets[0], "--lpips-weights", tmp_path / "heads.pth", "--outdir", tmp_path / "h"),
                      "heads.pth", "linear heads")


def test_default_weights_are_stlpips(perceptual):
    assert perceptual.name == "ST-LPIPS" and perceptual.model.net_name == "vgg"
    assert perceptual.model.sha1 == load_stlpips("vgg").sha1


def test_noise_maps_can_start_from_the_networks_constant_noise(loaded, perceptual):
    target = _targets(loaded, [1])
    cfg = projection.ProjectConfig(steps=1, noise_init="const", noise_reg=0)  # lr is 0 at step 0: nothing moves
    result = projection.project(loaded.G, target, cfg, perceptual)
    for name, layer in projection.noise_layers(loaded.G):
        const = layer.noise_const
        expected = (const - const.mean()) / const.var(unbiased=False).sqrt()  # renormalized after the step
        assert torch.allclose(result.noise[name][0], expected, atol=1e-5), name
    w_avg = projection.w_statistics(loaded.G, cfg.w_avg_samples, cfg.seed)[0]
    assert torch.allclose(result.ws[0], w_avg.expand_as(result.ws[0]))
    other = projection.project(loaded.G, target, projection.ProjectConfig(steps=1, noise_reg=0), perceptual)
    assert not torch.allclose(other.noise[name], result.noise[name], atol=0.1)
    with pytest.raises(UserError, match="--noise-init zero"):
        projection.ProjectConfig(noise_init="zero").validate()


def test_noise_init_option(cli, ckpt, targets, tmp_path, loaded):
    result = cli("project", ckpt, targets[0], "--steps", "1", "--noise-init", "const", "--noise-reg", "0", "--outdir", tmp_path)
    assert result.code == 0, result
    with np.load(tmp_path / targets[0].stem / "projected_w.npz") as data:
        for name, layer in projection.noise_layers(loaded.G):
            const = layer.noise_const
            expected = ((const - const.mean()) / const.var(unbiased=False).sqrt()).numpy()
            assert np.allclose(data["noise." + name][0], expected, atol=1e-5), name
    assert_user_error(cli("project", ckpt, targets[0], "--noise-init", "zero", "--outdir", tmp_path / "z"), "--noise-init zero")


def test_progress_bar_shows_loss_and_psnr():
    progress, task = projection.progress_bar(10, enabled=False)
    progress.update(task, advance=3, loss=0.12345, psnr=21.5)
    text = " ".join(str(column.render(progress.tasks[0])) for column in progress.columns if hasattr(column, "text_format"))
    assert "loss 0.1235" in text and "PSNR 21.50 dB" in text
    # PSNR of float images in [-1, 1] uses peak-to-peak 2, the scale of uint8 / 255
    a = torch.zeros(1, 3, 4, 4)
    assert float(projection.step_psnr(a + 0.2, a)[0]) == pytest.approx(10 * math.log10(4 / 0.04))
    assert projection.psnr(np.full((4, 4, 3), 10, np.uint8), np.full((4, 4, 3), 20, np.uint8)) == pytest.approx(
        10 * math.log10(255**2 / 100))
