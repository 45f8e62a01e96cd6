"""sample, mix, interpolate, truncate, info and evaluate on a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image

from gancli.models import build_networks, load_generator
from gancli.recipe import load_recipe, parse_override
from gancli.train.checkpoint import save_checkpoint

TINY_MODEL = ["data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
              "model.channel_base=128", "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null"]


def make_checkpoint(run_dir: Path, c_dim: int = 0) -> Path:
    recipe = load_recipe("quickstart", [parse_override(s) for s in TINY_MODEL])
    torch.manual_seed(c_dim)
    G, D = build_networks(recipe, c_dim=c_dim)
    with torch.no_grad():  # make w_avg and the weights non-trivial so truncation and mixing show
        G.mapping.w_avg.normal_()
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    modules = {"G_ema": G.state_dict(), "G": G.state_dict(), "D": D.state_dict()}
    meta = {"step": 0, "cur_nimg": 0, "c_dim": c_dim, "img_channels": 3, "resolution": 16}
    pair = save_checkpoint(run_dir, 0, step=0, modules=modules, recipe=recipe.to_dict(), meta=meta, state={"step": 0})
    return pair.snapshot


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def cond_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("condrun"), c_dim=3)


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_sample_writes_one_png_per_seed_independent_of_other_seeds_and_order(cli, ckpt, tmp_path):
    assert cli("sample", ckpt, "--seeds", "0-4,42", "--outdir", tmp_path / "a").code == 0
    assert cli("sample", ckpt, "--seeds", "42,3,0-2,4", "--outdir", tmp_path / "b").code == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0004.png", "seed0042.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not np.array_equal(png(tmp_path / "a" / "seed0000.png"), png(tmp_path / "a" / "seed0001.png"))


def test_sample_matches_generator_api(cli, ckpt, tmp_path):
    assert cli("sample", ckpt, "--seeds", "7", "--trunc", "0.5", "--outdir", tmp_path).code == 0
    loaded = load_generator(ckpt)
    z = torch.from_numpy(np.random.RandomState(7).randn(1, 16)).float()
    img = loaded.G(z, torch.zeros(1, 0), truncation_psi=0.5, noise_mode="const")
    expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    assert np.array_equal(png(tmp_path / "seed0007.png"), expected)


def test_sample_run_directory_grid_and_noise_modes(cli, ckpt, tmp_path):
    assert cli("sample", ckpt.parent, "--seeds", "0-5", "--grid", "2x3", "--outdir", tmp_path).code == 0
    assert png(tmp_path / "grid.png").shape == (32, 48, 3)
    for mode in ("random", "none"):
        assert cli("sample", ckpt, "--seeds", "1", "--noise-mode", mode, "--outdir", tmp_path / mode).code == 0
    assert cli("sample", ckpt, "--seeds", "1", "--noise-mode", "random", "--outdir", tmp_path / "random2").code == 0
    assert (tmp_path / "random" / "seed0001.png").read_bytes() == (tmp_path / "random2" / "seed0001.png").read_bytes()


def test_projected_w_round_trip(cli, ckpt, tmp_path):
    loaded = load_generator(ckpt)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 16)).float()
    w = loaded.G.mapping(z, torch.zeros(1, 0)).numpy()
    np.savez(tmp_path / "projected_w.npz", w=w)
    assert cli("sample", ckpt, "--projected-w", tmp_path / "projected_w.npz", "--outdir", tmp_path / "p").code == 0
    assert cli("sample", ckpt, "--seeds", "3", "--outdir", tmp_path / "s").code == 0
    assert np.array_equal(png(tmp_path / "p" / "projected00.png"), png(tmp_path / "s" / "seed0003.png"))
    np.savez(tmp_path / "bad.npz", w=w[:, :2])
    assert_user_error(cli("sample", ckpt, "--projected-w", tmp_path / "bad.npz"), "bad.npz", "expected [N,")


def test_mix_grid_layout(cli, ckpt, tmp_path):
    out = tmp_path / "mix.png"
    assert cli("mix", ckpt, "--rows", "1,2", "--cols", "3,4,5", "--styles", "0-" + str(load_generator(ckpt).G.num_ws - 1), "--out", out).code == 0
    grid = png(out)
    assert grid.shape == (3 * 16, 4 * 16, 3)
    assert (grid[:16, :16] == 255).all()  # blank corner
    # taking every layer from the column reproduces the column image
    assert np.array_equal(grid[16:32, 16:32], grid[:16, 16:32])
    assert cli("sample", ckpt, "--seeds", "2", "--outdir", tmp_path).code == 0
    assert np.array_equal(grid[32:48, :16], png(tmp_path / "seed0002.png"))  # row header = row seed image
    assert cli("mix", ckpt, "--rows", "1", "--cols", "3", "--styles", "middle", "--out", tmp_path / "mid.png").code == 0
    # a 16x16 generator has no 64x64+ layers: 'fine' is refused with a reason
    assert_user_error(cli("mix", ckpt, "--rows", "1", "--cols", "3", "--styles", "fine"), "--styles fine", "64x64")


def test_truncate_grid(cli, ckpt, tmp_path):
    out = tmp_path / "t.png"
    assert cli("truncate", ckpt, "--seeds", "0-2", "--psi", "0,1", "--out", out).code == 0
    grid = png(out)
    assert grid.shape == (48, 32, 3)
    assert np.array_equal(grid[:16, :16], grid[16:32, :16])  # psi 0: every seed becomes the average
    assert cli("sample", ckpt, "--seeds", "1", "--outdir", tmp_path).code == 0
    assert np.array_equal(grid[16:32, 16:32], png(tmp_path / "seed0001.png"))  # psi 1 = no truncation


def test_interpolate_gif_and_frames(cli, ckpt, tmp_path):
    out = tmp_path / "walk.gif"
    result = cli("interpolate", ckpt, "--seeds", "1,5,9", "--frames", "4", "--loop", "--kind", "slerp",
                 "--space", "z", "--out", out, "--frames-dir", tmp_path / "frames")
    assert result.code == 0, result
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 12 and len(list((tmp_path / "frames").iterdir())) == 12
    assert cli("sample", ckpt, "--seeds", "5", "--outdir", tmp_path).code == 0
    assert np.array_equal(png(tmp_path / "frames" / "frame00004.png"), png(tmp_path / "seed0005.png"))
    assert cli("interpolate", ckpt, "--seeds", "1,5", "--frames", "3", "--grid", "2x2", "--out", tmp_path / "g.gif").code == 0
    assert iio.imread(tmp_path / "g.gif", index=None).shape[1:3] == (32, 32)


def test_class_conditional_checks(cli, cond_ckpt, ckpt, tmp_path):
    assert_user_error(cli("sample", cond_ckpt, "--seeds", "1", "--outdir", tmp_path), "class-conditional", "--class 0..2")
    assert_user_error(cli("sample", cond_ckpt, "--seeds", "1", "--class", "3", "--outdir", tmp_path), "--class 3", "0..2")
    assert cli("sample", cond_ckpt, "--seeds", "1", "--class", "2", "--outdir", tmp_path).code == 0
    assert_user_error(cli("sample", ckpt, "--seeds", "1", "--class", "1", "--outdir", tmp_path / "u"), "unconditional")


@pytest.mark.parametrize("args, fragments", [
    (["sample", "{ckpt}", "--seeds", "x"], ["--seeds", "'x'"]),
    (["sample", "{ckpt}", "--noise-mode", "loud"], ["--noise-mode loud"]),
    (["sample", "{ckpt}", "--trunc-cutoff", "99"], ["--trunc-cutoff 99"]),
    (["sample", "{ckpt}", "--grid", "1x1", "--seeds", "0-3"], ["--grid 1x1", "cannot hold"]),
    (["mix", "{ckpt}", "--rows", "1", "--cols", "2", "--styles", "40"], ["--styles 40", "does not exist"]),
    (["truncate", "{ckpt}", "--psi", "1:2"], ["--psi 1:2"]),
    (["interpolate", "{ckpt}", "--seeds", "1", "--out", "{tmp}/w.gif"], ["at least two seeds"]),
    (["interpolate", "{ckpt}", "--seeds", "1,2", "--out", "{tmp}/w.avi"], ["w.avi", ".gif or .mp4"]),
    (["interpolate", "{ckpt}", "--seeds", "1,2", "--kind", "bezier", "--out", "{tmp}/w.gif"], ["--kind bezier"]),
    (["sample", "{tmp}/missing.safetensors"], ["missing.safetensors"]),
    (["sample", "{tmp}"], ["no complete checkpoint"]),
])
def test_latent_command_errors(cli, ckpt, tmp_path, args, fragments):
    args = [a.format(ckpt=ckpt, tmp=tmp_path) for a in args]
    assert_user_error(cli(*args), *fragments)


def test_mp4_without_plugin_says_what_to_install(cli, ckpt, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ffmpeg(name, *a, **k):
        if name == "imageio_ffmpeg":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)

    def no_rendering(*args, **kwargs):
        raise AssertionError("the missing plugin must be reported before the checkpoint is loaded and rendered")

    monkeypatch.setattr("gancli.models.load_generator", no_rendering)
    assert_user_error(cli("interpolate", ckpt, "--seeds", "1,2", "--frames", "2", "--out", tmp_path / "w.mp4"),
                      "pip install imageio-ffmpeg")


@pytest.mark.skipif(__import__("importlib").util.find_spec("imageio_ffmpeg") is None,
                    reason="imageio-ffmpeg (a dependency) is not installed here: run make install")
def test_interpolate_writes_mp4_out_of_the_box(cli, ckpt, tmp_path):
    out = tmp_path / "walk.mp4"
    result = cli("interpolate", ckpt, "--seeds", "1,2", "--frames", "3", "--out", out)
    assert result.code == 0, result
    import imageio_ffmpeg

    assert out.read_bytes()[4:8] == b"ftyp"  # an ISO media (MP4) file
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 4  # 3 frames from seed 1 to 2, then seed 2


def test_info(cli, ckpt):
    result = cli("info", ckpt)
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "quickstart" in text and "G_ema" in text and "stylegan2" in text
    assert f"({ckpt.stat().st_size / 1024:.1f} KiB)" in text  # binary units, named as such


def test_evaluate_needs_input(cli, ckpt):
    assert_user_error(cli("evaluate"), "give a checkpoint")
    assert_user_error(cli("evaluate", ckpt, "--metrics", "fidd"), "unknown metric 'fidd'")


def test_noise_figure(cli, ckpt, tmp_path):
    out = tmp_path / "noise.png"
    result = cli("noise", ckpt, "--seeds", "4,6", "--draws", "3", "--out", out)
    assert result.code == 0, result
    assert "std dev" in result.out and "coarse noise (4-8)" in result.out and "fine noise (16-16)" in result.out
    grid = png(out)
    assert grid.shape == (2 * 16, 8 * 16, 3)  # const, 3 draws, std, none, coarse, fine
    assert cli("sample", ckpt, "--seeds", "4", "--outdir", tmp_path / "c").code == 0
    assert cli("sample", ckpt, "--seeds", "4", "--noise-mode", "none", "--outdir", tmp_path / "n").code == 0
    cell = lambda r, c: grid[16 * r: 16 * r + 16, 16 * c: 16 * c + 16]  # noqa: E731
    assert np.array_equal(cell(0, 0), png(tmp_path / "c" / "seed0004.png"))  # constant noise = sample
    assert np.array_equal(cell(0, 5), png(tmp_path / "n" / "seed0004.png"))  # no noise = sample --noise-mode none
    assert not np.array_equal(cell(0, 1), cell(0, 2))  # fresh draws differ
    assert not np.array_equal(cell(0, 6), cell(0, 7))  # coarse-only and fine-only noise differ
    assert cell(0, 4).min() < 128  # the std map shows where the noise acts
    again = tmp_path / "again.png"
    assert cli("noise", ckpt, "--seeds", "4,6", "--draws", "3", "--out", again).code == 0
    assert out.read_bytes() == again.read_bytes()  # every draw is seeded


def test_outputs_are_never_overwritten_without_force(cli, ckpt, tmp_path):
    target = tmp_path / "seed0001.png"
    target.write_bytes(b"mine")
    assert_user_error(cli("sample", ckpt, "--seeds", "0-2", "--outdir", tmp_path), "seed0001.png", "--force")
    assert target.read_bytes() == b"mine" and not (tmp_path / "seed0000.png").exists()
    assert cli("sample", ckpt, "--seeds", "0-2", "--outdir", tmp_path, "--force").code == 0
    assert target.read_bytes() != b"mine"
    for command, extra in (("mix", ["--rows", "1", "--cols", "2"]), ("truncate", ["--seeds", "1"]),
                           ("interpolate", ["--seeds", "1,2"]), ("noise", ["--seeds", "1"])):
        out = tmp_path / f"{command}.{'gif' if command == 'interpolate' else 'png'}"
        out.write_bytes(b"mine")
        assert_user_error(cli(command, ckpt, *extra, "--out", out), out.name, "--force")
        assert out.read_bytes() == b"mine"


def test_gif_timing(cli, ckpt, tmp_path):
    from PIL import Image as PILImage

    out = tmp_path / "w.gif"
    assert cli("interpolate", ckpt, "--seeds", "1,2", "--frames", "5", "--fps", "10", "--out", out).code == 0
    with PILImage.open(out) as gif:
        assert gif.n_frames == 6
        assert gif.info["duration"] == 100 and gif.info.get("loop") == 0


class ZOnlyGenerator(torch.nn.Module):
    """A generator without a mapping network (the BigGAN kind of API): images from z directly."""

    z_dim, c_dim, img_resolution, img_channels = 8, 0, 4, 3

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones([]))

    def forward(self, z, c):
        return torch.tanh(z[:, :3, None, None].expand(-1, 3, 4, 4) * self.scale / 3)


def test_resampling_truncation_for_generators_without_mapping(tmp_path):
    from gancli import explore
    from gancli.latent import z_from_seeds
    from gancli.models import LoadedGenerator

    z = z_from_seeds(list(range(50)), 64, threshold=0.5)
    assert z.abs().max() <= 0.5
    assert torch.equal(z_from_seeds([3], 64)[0], torch.from_numpy(np.random.RandomState(3).randn(64)).float())
    from gancli.families import get_family

    loaded = LoadedGenerator(G=ZOnlyGenerator().eval(), recipe=None, meta={}, path=tmp_path / "z.safetensors",
                             family=get_family("biggan"))
    assert not loaded.has("w") and loaded.has("trunc_resample")
    grid = explore.truncation_grid(loaded, [0, 1], [2.0, 0.04])
    assert grid.shape == (8, 8, 3)
    tight = grid[:, 4:].astype(int) - 128  # threshold 0.04: every z entry is tiny, so pixels sit near grey
    assert np.abs(tight).max() <= 2
    free = explore.sample(loaded, [5])  # no --trunc: exactly the seed's z
    assert torch.allclose(free, ZOnlyGenerator()(z_from_seeds([5], 8), torch.zeros(1, 0)))
    with pytest.raises(Exception, match="has no per-layer styles"):
        explore.style_mix_grid(loaded, [1], [2], [0])
    with pytest.raises(Exception, match="must be > 0"):
        explore.truncation_grid(loaded, [0], [0.0])


def test_evaluate_ppl_appends_protocol(cli, ckpt):
    import json

    result = cli("evaluate", ckpt, "--metrics", "ppl", "--num", "4")
    assert result.code == 0, result
    assert "ppl_stlpips" in result.out
    record = json.loads((ckpt.parent / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["results"]["ppl_stlpips"] >= 0 and record["protocol"]["ppl"]["epsilon"] == 1e-4


def test_evaluate_two_image_sets(cli, tmp_path):
    for name, offset in (("a", 0), ("b", 100)):
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.RandomState(offset)
        for i in range(4):
            Image.fromarray(rng.randint(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = cli("evaluate", "--data", tmp_path / "a", "--against", tmp_path / "b", "--metrics", "kid")
    assert result.code == 0, result
    assert "kid" in result.out and "4 real, 4 fake" in " ".join(result.out.split())
    same = cli("evaluate", "--data", tmp_path / "a", "--against", tmp_path / "a", "--metrics", "kid")
    value = lambda r: float(next(line.split()[1] for line in r.out.splitlines() if line.startswith("kid ")))  # noqa: E731
    assert value(same) < value(result)


def test_sample_batch_renders_the_same_seeds_up_to_float_rounding(cli, ckpt, tmp_path):
    from gancli import explore

    loaded = load_generator(ckpt)
    seeds = list(range(10))
    single = explore.sample(loaded, seeds, psi=0.7)
    batched = explore.sample_batched(loaded, seeds, 4, psi=0.7)  # chunks of 4, 4, 2
    assert batched.shape == single.shape
    assert float((batched - single).abs().max()) < 1e-4
    assert float((batched - explore.sample_batched(loaded, seeds[::-1], 4, psi=0.7).flip(0)).abs().max()) < 1e-4
    assert cli("sample", ckpt, "--seeds", "0-9", "--batch", "4", "--trunc", "0.7", "--outdir", tmp_path).code == 0
    from gancli.render import to_uint8

    expected = to_uint8(single).astype(int)
    for i, s in enumerate(seeds):
        assert np.abs(png(tmp_path / f"seed{s:04d}.png").astype(int) - expected[i]).max() <= 1, s


@pytest.mark.parametrize("args, fragments", [
    (["--batch", "0"], ["--batch 0", "at least 1"]),
    (["--batch", "8", "--noise-mode", "random"], ["--batch 8 with --noise-mode random", "--batch 1"]),
])
def test_sample_batch_errors(cli, ckpt, tmp_path, args, fragments):
    assert_user_error(cli("sample", ckpt, "--outdir", tmp_path, *args), *fragments)


def test_mix_outdir_writes_each_cell_as_its_own_png(cli, ckpt, tmp_path):
    from gancli import explore

    result = cli("mix", ckpt, "--rows", "1,2", "--cols", "3,4,5", "--out", tmp_path / "mix.png", "--outdir", tmp_path / "cells")
    assert result.code == 0, result
    names = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert names == sorted(["1-1.png", "2-2.png", "3-3.png", "4-4.png", "5-5.png", "1-3.png", "1-4.png", "1-5.png",
                            "2-3.png", "2-4.png", "2-5.png"])
    grid = png(tmp_path / "mix.png")
    h = grid.shape[0] // 3
    assert np.array_equal(png(tmp_path / "cells" / "2-4.png"), grid[2 * h: 3 * h, 2 * h: 3 * h])
    loaded = load_generator(ckpt)
    from gancli.render import to_uint8

    assert np.array_equal(png(tmp_path / "cells" / "3-3.png"), to_uint8(explore.sample(loaded, [3]))[0])
    assert not np.array_equal(png(tmp_path / "cells" / "1-3.png"), png(tmp_path / "cells" / "1-1.png"))
    assert_user_error(cli("mix", ckpt, "--rows", "1", "--cols", "3", "--out", tmp_path / "new.png",
                          "--outdir", tmp_path / "cells"), "cells/3-3.png", "exists")


@pytest.mark.parametrize("filter_name", ["nearest", "lanczos"])
def test_interpolate_upscale(cli, ckpt, tmp_path, filter_name):
    small, big = tmp_path / "small.gif", tmp_path / "big.gif"
    assert cli("interpolate", ckpt, "--seeds", "1,2", "--frames", "2", "--out", small, "--frames-dir", tmp_path / "a").code == 0
    result = cli("interpolate", ckpt, "--seeds", "1,2", "--frames", "2", "--out", big, "--upscale", "3",
                 "--upscale-filter", filter_name, "--frames-dir", tmp_path / "b")
    assert result.code == 0, result
    a, b = png(tmp_path / "a" / "frame00001.png"), png(tmp_path / "b" / "frame00001.png")
    assert b.shape == (a.shape[0] * 3, a.shape[1] * 3, a.shape[2])
    assert iio.imread(big, index=0).shape[:2] == b.shape[:2]
    if filter_name == "nearest":
        assert np.array_equal(b[::3, ::3], a) and np.array_equal(b[2::3, 2::3], a)
    else:
        assert not np.array_equal(b[::3, ::3], a) and np.abs(b[1::3, 1::3].astype(int) - a).mean() < 20


@pytest.mark.parametrize("args, fragment", [(["--upscale", "0"], "--upscale 0"), (["--upscale-filter", "cubic"], "--upscale-filter cubic")])
def test_upscale_errors(cli, ckpt, tmp_path, args, fragment):
    assert_user_error(cli("interpolate", ckpt, "--seeds", "1,2", "--out", tmp_path / "w.gif", *args), fragment, "must be")
