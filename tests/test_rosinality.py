"""Import of rosinality/stylegan2-pytorch checkpoints: conformance with its own Generator, and safety.

Fixtures (tests/fixtures/rosinality-sg2-32*): a small rosinality Generator (size 32, style_dim 64,
n_mlp 2, channels {4: 32, 8: 32, 16: 16, 32: 8}) with randomized weights, saved as rosinality's
train.py would (`g_ema`, `latent_avg`, `args` as argparse.Namespace), and the images its own
Generator made on CPU for seeds 0-3 (`randomize_noise=False`, truncation 1 and 0.7 towards
latent_avg). rosinality-sg2-32.json records how they were made.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.convert import convert_to_snapshot, detect_format, open_network
from gancli.convert.rosinality import open_rosinality
from gancli.errors import UserError
from gancli.models import build_generator, load_generator

FIX = Path(__file__).resolve().parent / "fixtures"
CKPT = FIX / "rosinality-sg2-32.pt"
TOL = dict(rtol=1e-4, atol=1e-4)
PSIS = {"psi100": 1.0, "psi070": 0.7}


@pytest.fixture(scope="module")
def expected():
    from safetensors.torch import load_file

    return load_file(str(FIX / "rosinality-sg2-32-expected.safetensors"))


@pytest.fixture(scope="module")
def converted():
    modules, recipe, meta = open_network(CKPT)
    G = build_generator(recipe, c_dim=0, img_channels=3)
    G.load_state_dict(modules["G_ema"], strict=True)
    return G.eval().requires_grad_(False), recipe, meta


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def test_fixture_recipe_and_seeds(expected):
    rec = json.loads((FIX / "rosinality-sg2-32.json").read_text())
    assert rec["seeds"] == [0, 1, 2, 3] and rec["truncation"] == [1.0, 0.7]
    z = np.stack([np.random.RandomState(s).randn(64) for s in rec["seeds"]]).astype(np.float32)
    assert torch.equal(expected["z"], torch.from_numpy(z))
    size = sum(p.stat().st_size for p in FIX.glob("rosinality-*"))
    assert size < 1_000_000


def test_detects_and_infers_architecture(converted):
    G, recipe, meta = converted
    assert detect_format(CKPT) == "torch-zip"
    m = recipe.model
    assert (recipe.data.resolution, m.z_dim, m.w_dim, m.mapping_layers) == (32, 64, 64, 2)
    assert (m.channel_base, m.channel_max, m.mapping_lr_multiplier) == (256, 32, 0.01)
    assert meta["source_format"] == "rosinality-stylegan2" and meta["c_dim"] == 0 and meta["resolution"] == 32
    assert meta["converted_from"] == CKPT.name and meta["w_avg_from"] == "latent_avg"
    assert meta["source_kwargs"]["args"]["n_mlp"] == 2  # argparse.Namespace read as a plain record


@pytest.mark.parametrize("tag", list(PSIS))
def test_images_match_rosinality_generator(converted, expected, tag):
    G, _, _ = converted
    with torch.no_grad():
        ws = G.mapping(expected["z"], None, truncation_psi=PSIS[tag])
        img = G.synthesis(ws, noise_mode="const")
        img2 = G(expected["z"], None, truncation_psi=PSIS[tag], noise_mode="const")
    torch.testing.assert_close(ws[:, 0], expected[f"w_{tag}"], **TOL)
    torch.testing.assert_close(img, expected[f"img_{tag}"], **TOL)
    torch.testing.assert_close(img2, img, rtol=0, atol=1e-6)
    diff = (_uint8(img).int() - _uint8(expected[f"img_{tag}"]).int()).abs().max().item()
    assert diff <= 1
    assert expected[f"img_{tag}"].abs().mean() > 0.1  # a real image, not all clamped or blank


def test_w_avg_is_latent_avg(converted, expected):
    G, _, _ = converted
    torch.testing.assert_close(G.mapping.w_avg, expected["latent_avg"], rtol=0, atol=0)


def test_plain_file_without_args_or_latent_avg(tmp_path, expected):
    obj = torch.load(str(CKPT), weights_only=False)  # our own fixture, trusted
    plain = tmp_path / "plain.pt"
    torch.save({"g_ema": obj["g_ema"], "latent_avg": obj["latent_avg"]}, plain)
    modules, _, meta = open_network(plain)
    torch.testing.assert_close(modules["G_ema"]["mapping.w_avg"], expected["latent_avg"])
    trained = tmp_path / "trained.pt"
    torch.save({"g_ema": obj["g_ema"], "g": obj["g_ema"], "d": {"x": torch.zeros(1)}, "ada_aug_p": 0.0}, trained)
    modules, _, meta = open_network(trained)
    assert list(modules) == ["G_ema"] and meta["not_converted"] == ["g", "d"]
    assert meta["w_avg_from"].startswith("mean of the mapping output")
    # rosinality's mean_latent(4096) over a different draw: close to latent_avg, not equal
    assert (modules["G_ema"]["mapping.w_avg"] - expected["latent_avg"]).abs().max() < 0.1


def test_sample_cli_and_convert(cli, tmp_path, expected, converted):
    r = cli("sample", CKPT, "--seeds", "0-1", "--outdir", tmp_path / "out")
    assert r.code == 0, r
    from PIL import Image

    ref = _uint8(expected["img_psi100"]).numpy()
    for s in (0, 1):
        got = np.asarray(Image.open(tmp_path / "out" / f"seed{s:04d}.png").convert("RGB")).astype(int)
        assert np.abs(got - ref[s].astype(int)).max() <= 1
    snap = convert_to_snapshot(CKPT, tmp_path / "conv.safetensors")
    loaded = load_generator(snap)
    assert loaded.meta["source_format"] == "rosinality-stylegan2"
    with torch.no_grad():
        img = loaded.G(expected["z"], None, truncation_psi=0.7, noise_mode="const")
    torch.testing.assert_close(img, expected["img_psi070"], **TOL)
    with pytest.raises(UserError, match="already exists"):
        convert_to_snapshot(CKPT, snap)


class _Touch:
    """Pickles as a call of Path(path).touch (via the global builtins.getattr)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


class _Mkdir:
    """Pickles as a call of the global os.makedirs(path)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import os

        return (os.makedirs, (self.path,))


@pytest.mark.parametrize("payload,name", [(_Mkdir, "os.makedirs"), (_Touch, "getattr")])
def test_malicious_global_is_refused_and_never_runs(tmp_path, payload, name):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    obj = torch.load(str(CKPT), weights_only=False)
    obj["args"] = payload(str(sentinel))
    torch.save(obj, evil)
    assert detect_format(evil) == "torch-zip"
    for fn in (open_network, open_rosinality, lambda p: convert_to_snapshot(p, tmp_path / "x.safetensors")):
        with pytest.raises(UserError) as info:
            fn(evil)
        msg = str(info.value)
        assert "\n" not in msg and f"the global {name}," in msg, msg
    assert not sentinel.exists(), "a payload from the file ran"
    assert not (tmp_path / "x.safetensors").exists()


def test_malicious_namespace_attribute_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil-args.pt"
    obj = torch.load(str(CKPT), weights_only=False)
    obj["args"] = argparse.Namespace(size=32, hook=_Mkdir(str(sentinel)))
    torch.save(obj, evil)
    with pytest.raises(UserError, match="os.makedirs"):
        open_network(evil)
    assert not sentinel.exists()


def test_unknown_torch_zip_gets_one_line(tmp_path, cli):
    other = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(UserError) as info:
        open_network(other)
    msg = str(info.value)
    assert "\n" not in msg and "torch.save zip" in msg and "not a rosinality" in msg
    r = cli("sample", other, "--outdir", tmp_path / "out")
    assert r.code == 2 and "not a rosinality" in r.err and "Traceback" not in r.err


def test_mismatched_args_and_odd_weights_are_refused(tmp_path):
    obj = torch.load(str(CKPT), weights_only=False)
    bad = tmp_path / "bad.pt"
    torch.save({**obj, "args": argparse.Namespace(size=64, latent=64, n_mlp=2)}, bad)
    with pytest.raises(UserError, match="args.size=64"):
        open_network(bad)
    sd = dict(obj["g_ema"])
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd}, bad)
    with pytest.raises(UserError, match="extra.weight"):
        open_network(bad)


def test_init_from_a_rosinality_checkpoint_says_it_holds_only_a_generator(cli, tmp_path):
    from helpers import assert_user_error

    result = cli("train", "quickstart", "--init", CKPT, "--outdir", tmp_path / "runs", "--kimg", "0.004")
    assert_user_error(result, f"--init {CKPT}", "has no G, D weights", "needs G_ema, G, D")
    assert not (tmp_path / "runs").exists()
