"""Image-to-image translation (pix2pix, CycleGAN, CUT): the networks against their definitions (shapes,
U-Net skips, the PatchGAN's 70 px receptive field by gradient), PatchNCE against a float64 formula, the
image pool against its definition, the lr schedule, the data splits and streams, exact resume in the
middle of the lr decay (lr, epoch and pool restored), and `gancli translate` through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error

from gancli.families.cyclegan.nets import ImagePool
from gancli.families.translation import lr_factor
from gancli.losses import patch_nce_loss
from gancli.nets.image2image import PatchGAN, ResnetGenerator, UNetBlock, UNetGenerator
from gancli.train.checkpoint import latest_checkpoint, load_checkpoint

# --------------------------------------------------------------------------------------------------
# Networks


def test_network_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    assert UNetGenerator(3, 3, num_downs=5, ngf=4)(x).shape == (2, 3, 32, 32)
    for antialias in (False, True):
        G = ResnetGenerator(3, 3, ngf=4, n_blocks=5, antialias=antialias)
        y = G(x)
        assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1
    G = ResnetGenerator(3, 3, ngf=4, n_blocks=5, antialias=True)
    layers = [0, 4, 8, 12, 16]
    feats = G(x, layers)
    # the reference's layer indices: padded input, the two downsampling convs, res blocks 1 and 5
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 38, 38), (8, 32, 32), (16, 16, 16), (16, 8, 8), (16, 8, 8)]
    assert G.feature_channels(layers) == [f.shape[1] for f in feats]
    D = PatchGAN(6, ndf=4, n_layers=3)
    assert D(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # the 30x30 patch map of pix2pix at 256 px


def test_unet_has_a_skip_at_every_level():
    """Every inner level returns cat([its input, its decoded output]): a dropped skip fails here."""
    G = UNetGenerator(3, 3, num_downs=6, ngf=2).eval()
    seen = []

    def check(module, inputs, output):
        (x,) = inputs
        seen.append(torch.equal(output[:, : x.shape[1]], x) and output.shape[1] > x.shape[1])

    hooks = [m.register_forward_hook(check) for m in G.modules() if isinstance(m, UNetBlock) and not m.outermost]
    G(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert seen == [True] * 5  # num_downs - 1 levels below the outermost


def _probe_receptive_field(D: torch.nn.Module, size: int) -> int:
    """Width of the input region that changes the centre output (gradient > 0), with positive weights
    so nothing cancels."""
    with torch.no_grad():
        for p in D.parameters():
            p.copy_(p.abs() + 0.01)
    x = torch.rand(1, D.model[0].in_channels, size, size, requires_grad=True)
    out = D(x)
    h, w = out.shape[2:]
    out[0, 0, h // 2, w // 2].backward()
    cols = torch.nonzero(x.grad.abs().sum((0, 1, 2)) > 0).flatten()
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)) > 0).flatten()
    assert int(rows[-1] - rows[0] + 1) == int(cols[-1] - cols[0] + 1)
    return int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize("n_layers, expected", [(3, 70), (2, 34), (1, 16)])
def test_patchgan_receptive_field_analytic_and_by_gradient(n_layers, expected):
    D = PatchGAN(3, ndf=2, n_layers=n_layers, norm="none")  # norm would couple all pixels
    assert D.receptive_field == expected
    assert _probe_receptive_field(D, 160) == expected


# --------------------------------------------------------------------------------------------------
# Losses and the pool


def _nce_oracle(q: np.ndarray, k: np.ndarray, batch: int, tau: float) -> np.ndarray:
    """float64: -log(exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_{j != i, same image} exp(q_i.k_j/tau)
    + exp(-10/tau))), the last term being the reference code's masked diagonal."""
    n = q.shape[0]
    p = n // batch
    out = np.zeros(n)
    for i in range(n):
        img = i // p
        pos = math.exp(q[i] @ k[i] / tau)
        neg = sum(math.exp(q[i] @ k[j] / tau) for j in range(img * p, (img + 1) * p) if j != i)
        out[i] = -math.log(pos / (pos + neg + math.exp(-10 / tau)))
    return out


def test_patch_nce_matches_a_float64_formula():
    rng = np.random.RandomState(0)
    q, k = rng.randn(2 * 5, 8), rng.randn(2 * 5, 8)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    got = patch_nce_loss(torch.tensor(q), torch.tensor(k), batch=2, tau=0.07)
    np.testing.assert_allclose(got.numpy(), _nce_oracle(q, k, 2, 0.07), rtol=1e-10)
    # known positives and negatives: keys equal to the queries, mutually orthogonal
    eye = torch.eye(4, dtype=torch.float64)
    got = patch_nce_loss(eye, eye, batch=1, tau=0.5)
    expected = -math.log(math.exp(2) / (math.exp(2) + 3 * math.exp(0) + math.exp(-20)))
    np.testing.assert_allclose(got.numpy(), [expected] * 4, rtol=1e-12)
    # the float32 path (as in training) agrees too, and the keys get no gradient
    qt = torch.tensor(q, dtype=torch.float32, requires_grad=True)
    kt = torch.tensor(k, dtype=torch.float32, requires_grad=True)
    patch_nce_loss(qt, kt, batch=2).sum().backward()
    assert kt.grad is None and qt.grad is not None


def _pool_reference(size: int, queries: list[float], seed: int) -> list[float]:
    """The pool's definition over scalars, drawing the same (u, slot) per image from the same generator."""
    gen = torch.Generator().manual_seed(seed)
    pool, out = [], []
    for image in queries:
        u = float(torch.rand((), generator=gen))
        slot = int(torch.randint(size, (), generator=gen))
        if len(pool) < size:
            pool.append(image)
            out.append(image)
        elif u > 0.5:
            out.append(pool[slot])
            pool[slot] = image
        else:
            out.append(image)
    return out


def test_image_pool_against_its_definition():
    pool = ImagePool(3)
    gen = torch.Generator().manual_seed(5)
    values = [float(v) for v in range(1, 41)]
    got = []
    for i in range(0, 40, 2):  # batches of two
        batch = torch.tensor(values[i:i + 2]).view(2, 1, 1, 1)
        got += pool.query(batch, gen).flatten().tolist()
    assert got[:3] == [1.0, 2.0, 3.0]  # filling: stored and returned
    assert got == _pool_reference(3, values, 5)
    assert sorted(float(im) for im in pool.images) != [1.0, 2.0, 3.0]  # it did swap
    # pool_size 0 is no pool; the state round-trips
    x = torch.randn(2, 3, 4, 4)
    assert ImagePool(0).query(x, gen) is x
    again = ImagePool(3)
    again.load_state_dict(pool.state_dict(), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(again.images, pool.images))


def test_image_pool_swaps_with_probability_one_half():
    pool = ImagePool(50)
    gen = torch.Generator().manual_seed(1)
    pool.query(torch.full((50, 1), -1.0), gen)  # full
    n = 4000
    out = pool.query(torch.arange(n, dtype=torch.float32).view(n, 1), gen).flatten()
    swapped = int((out != torch.arange(n, dtype=torch.float32)).sum())
    assert abs(swapped - n / 2) < 4 * math.sqrt(n / 4)  # binomial(4000, 1/2) within 4 sigma


def test_lr_schedule_constant_then_linear():
    assert [lr_factor(e, 2, 3) for e in range(7)] == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert lr_factor(99, 100, 100) == 1.0 and lr_factor(100, 100, 100) == pytest.approx(1 - 1 / 101)
    assert lr_factor(199, 100, 100) == pytest.approx(1 / 101)


# --------------------------------------------------------------------------------------------------
# Data


def test_emoji_tasks_hold_out_whole_base_emoji():
    from gancli.data.emoji import emoji_files
    from gancli.data.translation import DARK, LIGHT, base_name, heldout_bases, skintone_pairs, skintone_split

    pairs = skintone_pairs()
    assert len(pairs) == 336  # single-tone emoji in both tones (the rest of the 488 are mixed-tone couples)
    test_a, test_b = skintone_split("test")
    train_a, train_b = skintone_split("train")
    assert [n.replace(LIGHT, DARK) for n in test_a] == test_b  # counterparts, row by row
    bases = lambda names: {base_name(n) for n in names}  # noqa: E731
    assert not bases(train_a) & bases(train_b)  # the two training domains share no base emoji
    assert not (bases(train_a) | bases(train_b)) & bases(test_a)
    assert len(test_a) + len(train_a) + len(train_b) == len(pairs) and 25 <= len(test_a) <= 45
    names = emoji_files()
    held = heldout_bases([base_name(n) for n in names])
    assert base_name("1f3c3-1f3fb-200d-2640-fe0f.png") == base_name("1f3c3-1f3ff-200d-2640-fe0f.png")
    assert 0.05 < sum(base_name(n) in held for n in names) / len(names) < 0.15


def test_edge_map_is_sobel_thresholded():
    from gancli.data.translation import edge_map

    img = np.full((3, 8, 8), 255, np.uint8)
    img[:, :, 4:] = 0  # a vertical step from white to black
    edges = edge_map(img)
    assert edges.shape == (3, 8, 8) and set(np.unique(edges)) == {0, 255}
    assert (edges[:, :, 3:5] == 0).all() and (edges[:, :, :3] == 255).all() and (edges[:, :, 5:] == 255).all()


def _synthetic(paired: bool, n: int = 5, size: int = 12):
    from gancli.data.translation import TranslationData

    rng = np.random.RandomState(0)
    A = rng.randint(0, 255, (n, 3, size, size)).astype(np.uint8)
    B = A.copy() if paired else rng.randint(0, 255, (n + 2, 3, size, size)).astype(np.uint8)
    names = [f"{i}.png" for i in range(len(B))]
    return TranslationData(A, B, paired=paired, name="s", source="s", names_A=names[:n], names_B=names)


@pytest.mark.parametrize("paired", [True, False])
def test_translation_stream_is_a_function_of_seed_and_position(paired):
    from gancli.data.translation import TranslationStream

    data = _synthetic(paired)
    whole = TranslationStream(data, 8, True, seed=3).take(6)
    parts = TranslationStream(data, 8, True, seed=3)
    first, second = parts.take(2), parts.take(4)
    resumed = TranslationStream(data, 8, True, seed=3, start_index=2).take(4)
    for k in range(2):
        assert torch.equal(whole[k], torch.cat([first[k], second[k]]))
        assert torch.equal(second[k], resumed[k])
    assert whole[0].shape == (6, 3, 8, 8) and whole[0].min() >= -1 and whole[0].max() <= 1
    if paired:  # A and B of a pair get the same crop and flip
        assert torch.equal(whole[0], whole[1])
    other = TranslationStream(data, 8, True, seed=4).take(6)
    assert not torch.equal(other[0], whole[0])


def test_folders_of_aligned_and_unpaired_images(tmp_path):
    from PIL import Image

    from gancli.data.translation import open_translation_data
    from gancli.errors import UserError

    aligned = tmp_path / "facades" / "train"
    aligned.mkdir(parents=True)
    for i in range(2):
        img = np.zeros((16, 32, 3), np.uint8)
        img[:, :16] = 40 * i
        img[:, 16:] = 200
        Image.fromarray(img).save(aligned / f"{i}.png")
    data = open_translation_data(tmp_path / "facades", 20, paired=True)
    assert data.A.shape == (2, 3, 20, 20) and (data.A[1] == 40).all() and (data.B == 200).all()
    swapped = open_translation_data(tmp_path / "facades", 20, paired=True, direction="BtoA")
    assert (swapped.A == 200).all()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(aligned / "square.png")
    with pytest.raises(UserError, match="square.png' is 16x16: an aligned pair is A and B side by side"):
        open_translation_data(tmp_path / "facades", 20, paired=True)

    root = tmp_path / "h2z"
    for d, count in (("trainA", 2), ("trainB", 3)):
        (root / d).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((24, 24, 3), 10 * i, np.uint8)).save(root / d / f"{i}.png")
    data = open_translation_data(root, 16, paired=False)
    assert (len(data.A), len(data.B), data.num_images) == (2, 3, 3)
    with pytest.raises(UserError, match="has no testA/ folder"):
        open_translation_data(root, 16, paired=False, split="test")


# --------------------------------------------------------------------------------------------------
# Training, exact resume, translate


def _recipe(tmp_path: Path, base: str, extra: str) -> Path:
    path = tmp_path / f"{base}-tiny.yaml"
    path.write_text(f"base: {base}\nname: {base}-tiny\n{extra}")
    return path


def _train(cli, recipe, kimg, outdir=None, resume=None):
    args = ["train", recipe, "--kimg", kimg]
    args += ["--resume", resume] if resume else ["--outdir", outdir]
    result = cli(*args)
    assert result.code == 0, result
    return result


def _straight_and_resumed(cli, tmp_path, recipe, total, half):
    _train(cli, recipe, total, outdir=tmp_path / "straight")
    _train(cli, recipe, half, outdir=tmp_path / "split")
    (straight,), (split,) = (list((tmp_path / d).iterdir()) for d in ("straight", "split"))
    _train(cli, recipe, total, resume=split)
    return [load_checkpoint(latest_checkpoint(run)) for run in (straight, split)], straight


def _assert_equal_runs(a, b):
    (snap_a, state_a), (snap_b, state_b) = a, b
    assert set(snap_a.modules) == set(snap_b.modules)
    for name in snap_a.modules:
        for key, value in snap_a.modules[name].items():
            assert torch.equal(value, snap_b.modules[name][key]), f"{name}.{key}"
    assert state_a["step"] == state_b["step"] and state_a["data_position"] == state_b["data_position"]
    for opt in state_a["optimizers"]:
        assert state_a["optimizers"][opt]["param_groups"][0]["lr"] == state_b["optimizers"][opt]["param_groups"][0]["lr"]


SMALL = "data: {max_size: 3}\ntrain: {threads: 1, batch: 1, epochs: 1, epochs_decay: 2, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 2}\n"


def test_cyclegan_resumes_exactly_mid_decay_with_its_pool(cli, tmp_path):
    recipe = _recipe(tmp_path, "cyclegan-emoji-skintone",
                     SMALL + "model: {ngf: 2, ndf: 2, n_blocks: 1}\nloss: {pool_size: 2}\n")
    (a, b), straight = _straight_and_resumed(cli, tmp_path, recipe, 0.008, 0.005)
    _assert_equal_runs(a, b)
    state = a[1]
    assert state["pool_A"]["images"].shape == (2, 3, 32, 32)
    assert all(torch.equal(state[p]["images"], b[1][p]["images"]) for p in ("pool_A", "pool_B"))
    # 8 images of an epoch of 3: epoch 2, the second epoch of the decay (factor 1 - 2/3)
    assert a[1]["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * (1 - 2 / 3))
    assert {"G_AB", "G_BA", "D_A", "D_B"} == set(a[0].modules)
    grid = (straight / "fakes-000000.png")
    from PIL import Image

    assert Image.open(grid).size == (6 * 32, 2 * 32)  # A | G_AB(A) | rec, B | G_BA(B) | rec; 2 rows


def test_fastcut_resumes_exactly_mid_decay(cli, tmp_path):
    recipe = _recipe(tmp_path, "fastcut-horse2zebra",
                     SMALL + "model: {ngf: 2, ndf: 2, n_blocks: 5, mlp_dim: 8}\nloss: {nce_patches: 16}\n"
                     "data: {source: emoji-skintone, resolution: 32, max_size: 3}\n"
                     "train: {threads: 1, load_size: 36, batch: 1, epochs: 1, epochs_decay: 2, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 2}\n")
    (a, b), _ = _straight_and_resumed(cli, tmp_path, recipe, 0.006, 0.004)
    _assert_equal_runs(a, b)
    assert set(a[0].modules) == {"G", "D", "F"}


def test_pix2pix_resumes_exactly_with_dropout(cli, tmp_path):
    recipe = _recipe(tmp_path, "pix2pix-emoji-edges",
                     "data: {resolution: 64, max_size: 3}\nmodel: {num_downs: 6, ngf: 2, ndf: 2}\n"
                     "train: {threads: 1, load_size: 72, batch: 2, epochs: 1, epochs_decay: 2, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 2}\n")
    (a, b), _ = _straight_and_resumed(cli, tmp_path, recipe, 0.008, 0.004)
    _assert_equal_runs(a, b)


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    from gancli.cli import main

    tmp = tmp_path_factory.mktemp("p2p")
    recipe = _recipe(tmp, "pix2pix-emoji-edges", "data: {max_size: 4}\nmodel: {ngf: 4, ndf: 4}\n"
                     "train: {threads: 1, batch: 2, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 2}\n")
    assert main(["train", str(recipe), "--kimg", "0.008", "--outdir", str(tmp / "runs")]) == 0
    return next((tmp / "runs").iterdir())


def test_translate_through_the_cli_matches_the_generator(cli, tmp_path, pix2pix_run):
    from PIL import Image

    from gancli.data.translation import center_crop, open_translation_data
    from gancli.families import get_family
    from gancli.recipe import Recipe

    test = open_translation_data("emoji-edges", 36, paired=True, split="test", max_size=3)
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    crops = center_crop(test.A, 32)
    for i, img in enumerate(crops):
        Image.fromarray(img.transpose(1, 2, 0)).save(inputs / ("sub" if i == 2 else "") / f"edge{i}.png")
    out = tmp_path / "out"
    result = cli("translate", pix2pix_run, inputs, "--outdir", out, "--batch", "2")
    assert result.code == 0, result
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["edge0.png", "edge1.png", "sub/edge2.png"]

    snap, _ = load_checkpoint(latest_checkpoint(pix2pix_run))  # the oracle: the saved G in eval mode
    recipe = Recipe.from_dict(snap.recipe)
    G = get_family("pix2pix").build_generator(recipe)
    G.load_state_dict(snap.modules["G"])
    G.eval()
    x = torch.from_numpy(crops.copy()).float().div(127.5).sub(1)
    with torch.no_grad():
        expected = (G(x).permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    for i, rel in enumerate(["edge0.png", "edge1.png", "sub/edge2.png"]):
        assert np.array_equal(np.asarray(Image.open(out / rel)), expected[i])

    side = tmp_path / "side"
    assert cli("translate", pix2pix_run, inputs / "edge0.png", "--outdir", side, "--side-by-side").code == 0
    pair = np.asarray(Image.open(side / "edge0.png"))
    assert pair.shape == (32, 64, 3) and np.array_equal(pair[:, :32], crops[0].transpose(1, 2, 0))
    assert_user_error(cli("translate", pix2pix_run, inputs / "edge0.png", "--outdir", side),
                      "exists; pass --force")


def test_translate_and_the_latent_commands_refuse_in_one_line(cli, tmp_path, pix2pix_run):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "grey.png")
    out = tmp_path / "o"
    assert_user_error(cli("translate", pix2pix_run, tmp_path / "small.png", "--outdir", out),
                      "small.png: is 16x16, the model takes 32x32")
    assert cli("translate", pix2pix_run, tmp_path / "small.png", "--outdir", out, "--resize").code == 0
    assert_user_error(cli("translate", pix2pix_run, tmp_path / "grey.png", "--outdir", out), "grey.png: has 1 channel")
    assert_user_error(cli("translate", pix2pix_run, tmp_path / "small.png", "--outdir", out, "--direction", "BtoA"),
                      "translates one way only (it was trained AtoB)")
    assert_user_error(cli("translate", pix2pix_run, tmp_path / "nothing.png", "--outdir", out), "no such image")
    for args in (["sample", pix2pix_run], ["truncate", pix2pix_run], ["mix", pix2pix_run, "--rows", "1", "--cols", "2"],
                 ["project", pix2pix_run, tmp_path / "small.png"]):
        assert_user_error(cli(*args), f"{args[0]}: a pix2pix generator", "use gancli translate")
    info = cli("info", pix2pix_run)
    assert info.code == 0 and "num_downs" in info.out


def test_translation_recipes_plan_and_refuse_bad_settings(cli, tmp_path):
    for name in ("pix2pix-emoji-edges", "cyclegan-emoji-skintone", "cut-emoji-skintone", "pix2pix-facades",
                 "cyclegan-horse2zebra", "cut-horse2zebra", "fastcut-horse2zebra"):
        dry = cli("train", name, "--dry-run")
        assert dry.code == 0 and "constant for" in dry.out, (name, dry)
    assert_user_error(cli("train", "pix2pix-emoji-edges", "--dry-run", "--set", "model.num_downs=6"),
                      "model.num_downs", "takes 64 px")
    assert_user_error(cli("train", "cut-emoji-skintone", "--dry-run", "--set", "model.n_blocks=2"),
                      "model.nce_layers")
    assert_user_error(cli("train", "cyclegan-emoji-skintone", "--dry-run", "--set", "data.source=emoji-edges"),
                      "data.source", "trains on unpaired domains")
    assert_user_error(cli("train", "cyclegan-emoji-skintone", "--dry-run", "--set", "train.load_size=16"),
                      "train.load_size")
    assert_user_error(cli("train", "cyclegan-emoji-skintone", "--dry-run", "--set", "model.z_dim=8"), "model.z_dim")


def test_l1_and_psnr_against_their_formulas(pix2pix_run):
    from gancli.metrics.translation import heldout_scores, l1_psnr
    from gancli.models import load_generator

    rng = np.random.RandomState(0)
    a, b = rng.randint(0, 256, (3, 3, 4, 4)).astype(np.uint8), rng.randint(0, 256, (3, 3, 4, 4)).astype(np.uint8)
    l1, psnr = l1_psnr(a, b)
    d = a.astype(float) - b.astype(float)
    assert l1 == pytest.approx(np.mean(np.abs(d)) / 255)
    assert psnr == pytest.approx(np.mean([20 * math.log10(255) - 10 * math.log10(np.mean(d[i] ** 2)) for i in range(3)]))
    scores = heldout_scores(load_generator(pix2pix_run))
    assert scores["images"] > 300 and scores["direction"] == "AtoB"  # the held-out emoji (the test split is not cut by max_size)
    assert scores["identity_psnr"] < scores["mean_image_psnr"]  # edge maps are far from colour emoji


def test_evaluate_scores_a_translator_on_its_test_split(cli, tmp_path, pix2pix_run, monkeypatch):
    """KID of the translations against the targets equals evaluate --data/--against on folders written by
    `gancli translate` (a second path); L1/PSNR equal the held-out scores."""
    import json

    from PIL import Image
    from test_metrics import _FakeNVlabs, _save_script

    from gancli.data.translation import center_crop, open_translation_data
    from gancli.metrics.translation import heldout_scores
    from gancli.models import load_generator

    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    detector = _save_script(_FakeNVlabs(), tmp_path / "fake.pt")
    result = cli("evaluate", pix2pix_run, "--metrics", "kid", "--detector", detector)
    assert result.code == 0, result
    line = json.loads((pix2pix_run / "metrics.jsonl").read_text().splitlines()[-1])
    scores = heldout_scores(load_generator(pix2pix_run))
    assert line["results"]["l1"] == pytest.approx(scores["model_l1"], abs=1e-4)
    assert line["results"]["psnr"] == pytest.approx(scores["model_psnr"], abs=1e-2)

    test = open_translation_data("emoji-edges", 36, paired=True, split="test")
    for folder, images in (("in", center_crop(test.A, 32)), ("target", center_crop(test.B, 32))):
        (tmp_path / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image.transpose(1, 2, 0)).save(tmp_path / folder / f"{i:05d}.png")
    assert cli("translate", pix2pix_run, tmp_path / "in", "--outdir", tmp_path / "out").code == 0
    folders = cli("evaluate", "--data", tmp_path / "target", "--against", tmp_path / "out", "--metrics", "kid",
                  "--detector", detector)
    assert folders.code == 0, folders
    kid = float(next(ln.split()[1] for ln in folders.out.splitlines() if ln.startswith("kid ")))
    assert line["results"]["kid"] == pytest.approx(kid, abs=1e-4)
    assert_user_error(cli("evaluate", pix2pix_run, "--data", "emoji"), "--data: a translator is scored on its own")
