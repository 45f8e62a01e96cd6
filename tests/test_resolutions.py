"""Resolutions that are not powers of two: each family's rule (Family.check_resolution), the 48 px
SNGAN STL-10 model and a 48 px DCGAN, the sngan-stl10 recipe, and translators at other sizes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image

from gancli.families.base import doubling_base, doubling_sizes
from gancli.models import build_networks, load_generator
from gancli.recipe import load_recipe, parse_override
from gancli.train.checkpoint import latest_checkpoint, load_snapshot


def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def data48(tmp_path_factory) -> Path:
    """A 48 px training zip written by `gancli dataset` from 8 non-square 60x50 images (centre-cropped)."""
    from gancli.data import convert_dataset

    root = tmp_path_factory.mktemp("data48")
    rng = np.random.RandomState(0)
    (root / "src").mkdir()
    for i in range(8):
        image = np.full((50, 60, 3), 255, np.uint8)
        y, x = rng.randint(0, 30, 2)
        image[y: y + 16, x: x + 16] = rng.randint(0, 255, 3)
        Image.fromarray(image).save(root / "src" / f"{i}.png")
    convert_dataset(str(root / "src"), str(root / "d48.zip"), resolution=48, progress=False)
    return root / "d48.zip"


# --------------------------------------------------------------------------------------------------
# The rules


def test_doubling_sizes_are_b_times_powers_of_two():
    assert [doubling_base(r) for r in (8, 32, 40, 48, 56, 64, 96, 128)] == [4, 4, 5, 6, 7, 4, 6, 4]
    assert [doubling_base(r) for r in (4, 6, 7, 50, 36 * 3, 100)] == [None] * 6  # 100 = 25 * 4
    assert doubling_sizes(64) == [8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64]


@pytest.mark.parametrize("name", ["stylegan2-cifar", "stylegan-quick", "pggan-quick"])
def test_power_of_two_families_refuse_48_in_one_line(cli, name):
    assert_user_error(cli("train", name, "--dry-run", "--resolution", "48"), "data.resolution", "power of two",
                      "4, 8, 16, 32, 64", "got 48")


@pytest.mark.parametrize("name, kind", [("sngan-cifar10", "ResNet"), ("dcgan-cifar10", "DCGAN")])
def test_doubling_families_refuse_50_naming_the_nearest_sizes(cli, name, kind):
    assert_user_error(cli("train", name, "--dry-run", "--resolution", "50"), "data.resolution", kind, "b x 2^k",
                      "got 50", "nearest allowed: 48, 56")
    # and take 48, 40 and 96 (6, 5 and 6 times a power of two)
    for res in (48, 40, 96):
        assert cli("train", name, "--dry-run", "--resolution", str(res)).code == 0, res


def test_an_explicit_bottom_width_must_double_up_to_the_resolution(cli):
    assert_user_error(cli("train", "sngan-cifar10", "--dry-run", "--resolution", "48", "--set", "model.bottom_width=4"),
                      "model.bottom_width", "bottom_width * 2^k")
    assert cli("train", "sngan-cifar10", "--dry-run", "--resolution", "48", "--set", "model.bottom_width=3").code == 0


def test_translators_take_multiples_of_their_downsampling(cli):
    assert_user_error(cli("train", "cyclegan-horse2zebra", "--dry-run", "--resolution", "250"), "data.resolution",
                      "multiple of 4", "nearest allowed: 248, 252")
    assert cli("train", "cyclegan-horse2zebra", "--dry-run", "--resolution", "252").code == 0
    assert_user_error(cli("train", "pix2pix-facades", "--dry-run", "--resolution", "200"), "model.num_downs",
                      "takes 256 px", "got 200")
    assert cli("train", "pix2pix-emoji-edges", "--dry-run", "--resolution", "96", "--set", "train.load_size=100").code == 0


# --------------------------------------------------------------------------------------------------
# 48 px networks


def test_sngan_48_has_the_stl10_layout_and_shapes():
    recipe = load_recipe("sngan-stl10")
    assert recipe.data.resolution == 48 and recipe.model.bottom_width is None
    G, D = build_networks(recipe, c_dim=0)
    assert G.bottom_width == 6 and len(G.blocks) == 3  # 6 -> 12 -> 24 -> 48
    assert G.linear.out_features == 512 * 6 * 6
    assert [b.conv1.out_channels for b in G.blocks] == [256, 128, 64]
    assert [b.conv1.out_channels for b in D.blocks] == [64, 128, 256, 512, 1024]
    assert [b.downsample for b in D.blocks] == [True, True, True, True, False]  # 48 -> 3, then 3x3
    tiny = load_recipe("sngan-stl10", [parse_override(s) for s in ("model.g_ch=2", "model.d_ch=2")])
    G, D = build_networks(tiny, c_dim=0)
    with torch.no_grad():
        img = G(torch.randn(3, 128))
        assert img.shape == (3, 3, 48, 48) and D(img).shape == (3, 1)


def test_dcgan_48_grows_from_6x6():
    recipe = load_recipe("dcgan-cifar10", [parse_override(s) for s in ("data.resolution=48", "model.g_ch=4", "model.d_ch=4")])
    G, D = build_networks(recipe, c_dim=0)
    first = G.net[0]
    assert first.kernel_size == (6, 6) and D.out.kernel_size == (6, 6)
    with torch.no_grad():
        assert G.net[:3](torch.randn(2, recipe.model.z_dim, 1, 1)).shape[-2:] == (6, 6)
        img = G(torch.randn(2, recipe.model.z_dim))
        assert img.shape == (2, 3, 48, 48) and D(img).shape == (2, 1)
        assert D.features(img).shape[-2:] == (6, 6)


@pytest.mark.parametrize("name, extra", [
    ("sngan-stl10", ("model.g_ch=2", "model.d_ch=2", "train.d_steps=2")),
    ("dcgan-cifar10", ("model.g_ch=4", "model.d_ch=4", "data.resolution=48")),
])
def test_48_px_trains_two_steps_on_a_48_px_zip(cli, tmp_path, data48, name, extra):
    common = ("train.batch=2", "train.snapshot_kimg=1000", "train.image_kimg=1000", "train.grid_seeds=4",
              "train.device=cpu", "train.threads=1")
    result = cli("train", name, "--data", data48, "--outdir", tmp_path, "--kimg",
                 2 * 2 * load_recipe(name, [parse_override(s) for s in extra]).train.d_steps / 1000, *_sets(*common, *extra))
    assert result.code == 0, result
    (run,) = tmp_path.iterdir()
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    assert snap.meta["step"] == 2 and snap.meta["resolution"] == 48
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss/D"]) for r in records if "loss/D" in r)
    assert Image.open(run / "fakes-000000.png").size == (2 * 48, 2 * 48)


def test_sngan_stl10_dry_run_on_a_48_px_zip_shows_the_paper_architecture(cli, data48):
    result = cli("train", "sngan-stl10", "--data", data48, "--dry-run")
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "3 up-blocks from 6x6, channels 512-256-128-64" in text
    assert "D 5 blocks, channels 64-128-256-512-1024" in text
    assert "100000 G steps (5 D minibatches each) of batch 64" in text
    assert "betas [0.0, 0.9]" in text and "linear lr decay" in text


def test_a_32_px_zip_is_refused_by_the_48_px_recipe_in_one_line(cli, tmp_path, tiny_data):
    from gancli.data import convert_dataset

    convert_dataset(str(tiny_data), str(tmp_path / "d32.zip"), resolution=32, progress=False)
    result = cli("train", "sngan-stl10", "--data", tmp_path / "d32.zip", "--outdir", tmp_path / "runs", "--kimg", "0.001")
    assert_user_error(result, "32x32", "resolution 48")


# --------------------------------------------------------------------------------------------------
# Translators at sizes that are not powers of two


def _two_steps(cli, tmp_path, recipe):
    """Train `recipe` for 2 images (2 steps of batch 1); the run directory."""
    result = cli("train", recipe, "--kimg", 0.002, "--outdir", tmp_path / "runs")
    assert result.code == 0, result
    (run,) = (tmp_path / "runs").iterdir()
    assert load_snapshot(latest_checkpoint(run).snapshot).meta["step"] == 2
    return run



def test_cyclegan_trains_at_36_px(cli, tmp_path):
    recipe = tmp_path / "cyclegan36.yaml"
    recipe.write_text("base: cyclegan-emoji-skintone\nname: cyclegan36\n"
                      "data: {resolution: 36, max_size: 2}\nmodel: {ngf: 2, ndf: 2, n_blocks: 1}\n"
                      "loss: {pool_size: 2}\n"
                      "train: {load_size: 40, threads: 1, batch: 1, epochs: 1, epochs_decay: 1, snapshot_kimg: 1000, "
                      "image_kimg: 1000, grid_seeds: 2}\n")
    run = _two_steps(cli, tmp_path, recipe)
    assert Image.open(run / "fakes-000000.png").size == (6 * 36, 2 * 36)


# --------------------------------------------------------------------------------------------------
# gancli dataset on non-square images


def _zip_image(path: Path) -> np.ndarray:
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".png")]
        return np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))


def test_dataset_centre_crops_a_wide_image_to_48_px(cli, tmp_path):
    rng = np.random.RandomState(3)
    wide = rng.randint(0, 255, (48, 80, 3)).astype(np.uint8)  # 80x48: the centred 48 columns are 16..63
    (tmp_path / "src").mkdir()
    Image.fromarray(wide).save(tmp_path / "src" / "wide.png")
    result = cli("dataset", tmp_path / "src", tmp_path / "out.zip", "--resolution", "48")
    assert result.code == 0 and "48x48" in result.out, result
    np.testing.assert_array_equal(_zip_image(tmp_path / "out.zip"), wide[:, 16:64])
    # a tall one, shrunk: the centred square, then the resize filter (the oracle: the same slice resized)
    tall = rng.randint(0, 255, (100, 60, 3)).astype(np.uint8)
    (tmp_path / "tall").mkdir()
    Image.fromarray(tall).save(tmp_path / "tall" / "tall.png")
    assert cli("dataset", tmp_path / "tall", tmp_path / "tall.zip", "--resolution", "48", "--filter", "box").code == 0
    expected = np.asarray(Image.fromarray(tall[20:80]).resize((48, 48), Image.Resampling.BOX))
    np.testing.assert_array_equal(_zip_image(tmp_path / "tall.zip"), expected)


def test_dataset_center_crop_wide_letterboxes_a_wide_band(cli, tmp_path):
    rng = np.random.RandomState(4)
    wide = rng.randint(1, 255, (12, 40, 3)).astype(np.uint8)  # 40x12, band 32:12 -> the centred 32 columns
    (tmp_path / "src").mkdir()
    Image.fromarray(wide).save(tmp_path / "src" / "car.png")
    result = cli("dataset", tmp_path / "src", tmp_path / "out.zip", "--resolution", "32", "--transform",
                 "center-crop-wide", "--band", "12")
    assert result.code == 0, result
    out = _zip_image(tmp_path / "out.zip")
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out[10:22], wide[:, 4:36])  # the band in the middle rows
    assert (out[:10] == 0).all() and (out[22:] == 0).all()  # black above and below
    meta = json.loads(zipfile.ZipFile(tmp_path / "out.zip").read("dataset.json"))
    assert meta["gancli"]["transform"] == "center-crop-wide" and meta["gancli"]["band"] == 12
    # --band without center-crop-wide, or larger than the square, is refused in one line
    assert_user_error(cli("dataset", tmp_path / "src", tmp_path / "o2.zip", "--resolution", "32", "--band", "12"),
                      "--band", "center-crop-wide")
    assert_user_error(cli("dataset", tmp_path / "src", tmp_path / "o3.zip", "--resolution", "32", "--transform",
                          "center-crop-wide", "--band", "40"), "--band 40", "1 to --resolution (32)")


# --------------------------------------------------------------------------------------------------
# Non-square training (translators only: data.width)


def test_square_families_refuse_data_width_in_one_line(cli):
    for name in ("sngan-stl10", "dcgan-cifar10", "stylegan2-cifar"):
        assert_user_error(cli("train", name, "--dry-run", "--set", "data.width=64"), "data.width", "square images only",
                          "pix2pix, cyclegan, cut")
    assert_user_error(cli("train", "cyclegan-horse2zebra", "--dry-run", "--set", "data.width=510"), "data.width",
                      "multiple of 4", "nearest allowed: 508, 512")
    assert_user_error(cli("train", "pix2pix-emoji-edges", "--dry-run", "--set", "data.width=64"), "data.width",
                      "built-in emoji-edges images are square")


def test_pix2pix_trains_and_translates_32x64_crops(cli, tmp_path):
    rng = np.random.RandomState(5)
    folder = tmp_path / "pairs" / "train"
    folder.mkdir(parents=True)
    for i in range(3):  # A | B side by side, each half 64 wide and 32 high: 128x32
        Image.fromarray(rng.randint(0, 255, (32, 128, 3)).astype(np.uint8)).save(folder / f"{i}.png")
    recipe = tmp_path / "wide.yaml"
    recipe.write_text(f"base: pix2pix-emoji-edges\nname: wide\ndata: {{source: {tmp_path / 'pairs'}, resolution: 32, "
                      "width: 64}\nmodel: {num_downs: 5, ngf: 2, ndf: 2}\n"
                      "train: {load_size: 36, threads: 1, batch: 1, epochs: 1, epochs_decay: 1, snapshot_kimg: 1000, "
                      "image_kimg: 1000, grid_seeds: 2}\n")
    dry = cli("train", recipe, "--dry-run")
    assert dry.code == 0 and "load 36x72, random crop 32x64" in " ".join(dry.out.split()), dry
    run = _two_steps(cli, tmp_path, recipe)
    assert Image.open(run / "fakes-000000.png").size == (3 * 64, 2 * 32)  # input | output | target, 2 rows
    # gancli translate takes 64x32 inputs (and says so for others)
    (tmp_path / "in").mkdir()
    Image.fromarray(rng.randint(0, 255, (32, 64, 3)).astype(np.uint8)).save(tmp_path / "in" / "x.png")
    out = cli("translate", run, tmp_path / "in" / "x.png", "--outdir", tmp_path / "out")
    assert out.code == 0, out
    assert Image.open(tmp_path / "out" / "x.png").size == (64, 32)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "in" / "sq.png")
    assert_user_error(cli("translate", run, tmp_path / "in" / "sq.png", "--outdir", tmp_path / "out2"),
                      "32x32", "the model takes 64x32")
    # a pair whose halves are not 2:1 (64:32) is refused naming the image
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(folder / "square-halves.png")
    assert_user_error(cli("train", recipe, "--kimg", 0.001, "--outdir", tmp_path / "runs2"), "square-halves.png",
                      "each half 2:1")


def test_cut_trains_on_unpaired_32x48_crops(cli, tmp_path):
    rng = np.random.RandomState(6)
    for d, count in (("trainA", 2), ("trainB", 3)):
        (tmp_path / "h2z" / d).mkdir(parents=True)
        for i in range(count):  # any size: resized to the load shape (36 x 54), then cropped 32 x 48
            Image.fromarray(rng.randint(0, 255, (40, 60, 3)).astype(np.uint8)).save(tmp_path / "h2z" / d / f"{i}.png")
    recipe = tmp_path / "cut.yaml"
    recipe.write_text(f"base: cut-emoji-skintone\nname: cutwide\ndata: {{source: {tmp_path / 'h2z'}, resolution: 32, "
                      "width: 48}\nmodel: {ngf: 2, ndf: 2, n_blocks: 1, nce_layers: [0, 4], mlp_dim: 4}\n"
                      "loss: {nce_patches: 8}\n"
                      "train: {load_size: 36, threads: 1, batch: 1, epochs: 1, epochs_decay: 1, snapshot_kimg: 1000, "
                      "image_kimg: 1000, grid_seeds: 2}\n")
    run = _two_steps(cli, tmp_path, recipe)
    G = load_generator(run).G
    with torch.no_grad():
        assert G(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 32, 48)
