"""Import of rosinality/style-based-gan-pytorch (StyleGAN v1) checkpoints: conformance with his own
Generator, the trained resolution, the legacy torch format, the commands, and safety.

Fixtures (tests/fixtures/rosinality-sgv1-32*): a small StyledGenerator built from his own classes
(model.py of rosinality/style-based-gan-pytorch at the commit in the .json: code_dim 16, n_mlp 2,
channels {4: 16, 8: 16, 16: 8, 32: 4, 64: 2}, fused upsampling from 16 px, the 64 px block left at his
initialisation as in a checkpoint trained to 32 px), random weights, saved as his train.py does
(`generator`, `g_running`), and the images his own forward made on CPU for seeds 0-3 with fixed noise
maps: step 3 (32 px) at truncation 1 and 0.7 toward his mean_style, and step 2 (16 px).
rosinality-sgv1-32.json records how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.convert import convert_to_snapshot, detect_format, open_network
from gancli.convert.rosinality_v1 import open_rosinality_v1
from gancli.errors import UserError
from gancli.models import build_generator, load_generator

FIX = Path(__file__).resolve().parent / "fixtures"
CKPT = FIX / "rosinality-sgv1-32.model"
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def expected():
    from safetensors.torch import load_file

    return load_file(str(FIX / "rosinality-sgv1-32-expected.safetensors"))


def _generator(modules, recipe, expected):
    G = build_generator(recipe, c_dim=0, img_channels=3)
    G.load_state_dict(modules["G_ema"], strict=True)
    G.eval().requires_grad_(False)
    syn = G.synthesis
    for i, r in enumerate(4 * 2**k for k in range(recipe.data.resolution.bit_length() - 2)):
        layers = [syn.l4["epi0"], syn.l4["epi1"]] if r == 4 else [getattr(syn, f"b{r}")["epi0"], getattr(syn, f"b{r}")["epi1"]]
        for layer in layers:  # his noise: one map per block, shared by its two layers
            layer.noise.noise_const.copy_(expected[f"noise{i}"])
    return G


def test_fixture_recipe_and_seeds(expected):
    rec = json.loads((FIX / "rosinality-sgv1-32.json").read_text())
    assert rec["seeds"] == [0, 1, 2, 3] and rec["trained_res"] == 32 and len(rec["commit"]) == 40
    z = np.stack([np.random.RandomState(s).randn(16) for s in rec["seeds"]]).astype(np.float32)
    assert torch.equal(expected["z"], torch.from_numpy(z))
    assert sum(p.stat().st_size for p in FIX.glob("rosinality-sgv1-*")) < 400_000


def test_images_match_his_generator(expected):
    modules, recipe, meta = open_network(CKPT)
    assert detect_format(CKPT) == "torch-zip"
    assert recipe.model.kind == "stylegan" and recipe.data.resolution == 32  # the 64 px block was never trained
    assert (recipe.model.channel_base, recipe.model.channel_max, recipe.model.mapping_layers) == (128, 16, 2)
    assert meta["source_format"] == "rosinality-style-based-gan" and meta["source_kwargs"]["G_ema"]["fused"] == [16, 32]
    G = _generator(modules, recipe, expected)
    with torch.no_grad():
        torch.testing.assert_close(G(expected["z"]), expected["img_psi100"], **TOL)
        torch.testing.assert_close(G.w_avg, expected["mean_style"], **TOL)  # the same 10240 z as his mean_style
        torch.testing.assert_close(G(expected["z"], truncation_psi=0.7), expected["img_psi070"], **TOL)
    assert recipe.model.sample_trunc == 0.7 and recipe.model.sample_trunc_cutoff is None  # his generate.py


def test_a_lower_resolution_on_request(expected):
    modules, recipe, _ = open_rosinality_v1(CKPT, resolution=16)
    assert recipe.data.resolution == 16
    G = _generator(modules, recipe, expected)
    with torch.no_grad():
        torch.testing.assert_close(G(expected["z"]), expected["img_step2"], **TOL)
    with pytest.raises(UserError, match="resolution 128 is not one of"):
        open_rosinality_v1(CKPT, resolution=128)


def test_legacy_torch_format_and_the_commands(cli, tmp_path, expected):
    legacy = tmp_path / "stylegan-32px.model"
    obj = torch.load(str(CKPT), weights_only=False)  # our own fixture, trusted
    torch.save(obj, legacy, _use_new_zipfile_serialization=False)
    assert detect_format(legacy) == "torch-legacy"
    a, b = open_network(CKPT)[0]["G_ema"], open_network(legacy)[0]["G_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    r = cli("sample", legacy, "--seeds", "0-1", "--trunc", "1", "--outdir", tmp_path / "out")
    assert r.code == 0, r
    from PIL import Image

    assert Image.open(tmp_path / "out" / "seed0000.png").size == (32, 32)
    r = cli("mix", legacy, "--rows", "0,1", "--cols", "2", "--out", tmp_path / "mix.png")
    assert r.code == 0, r
    snap = convert_to_snapshot(legacy, tmp_path / "conv.safetensors")
    loaded = load_generator(snap)
    assert loaded.meta["source_format"] == "rosinality-style-based-gan"
    G = _generator({"G_ema": loaded.G.state_dict()}, loaded.recipe, expected)
    with torch.no_grad():
        torch.testing.assert_close(G(expected["z"], truncation_psi=0.7), expected["img_psi070"], **TOL)


class _Mkdir:
    """Pickles as a call of the global os.makedirs(path)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import os

        return (os.makedirs, (self.path,))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_global_is_refused_and_never_runs(tmp_path, legacy):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.model"
    obj = torch.load(str(CKPT), weights_only=False)
    obj["g_optimizer"] = _Mkdir(str(sentinel))
    torch.save(obj, evil, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UserError) as info:
        open_network(evil)
    msg = str(info.value)
    assert "\n" not in msg and "os.makedirs" in msg, msg
    assert not sentinel.exists(), "a payload from the file ran"


def test_unknown_weights_and_odd_blur_are_refused(tmp_path):
    obj = torch.load(str(CKPT), weights_only=False)
    bad = tmp_path / "bad.model"
    sd = dict(obj["g_running"])
    sd["generator.extra.weight"] = torch.zeros(1)
    torch.save({"g_running": sd}, bad)
    with pytest.raises(UserError, match="generator.extra.weight"):
        open_network(bad)
    sd = dict(obj["g_running"])
    sd["generator.progression.1.conv1.2.weight"] = torch.ones(16, 1, 3, 3)
    torch.save({"g_running": sd}, bad)
    with pytest.raises(UserError, match=r"\[1, 2, 1\] blur"):
        open_network(bad)
