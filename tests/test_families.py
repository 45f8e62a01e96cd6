"""The family registry: a family defined only in the tests trains, resumes exactly, samples, and is
refused by commands that need what it lacks; no `kind ==` branches outside the registry; the
regularizer formulas against float64 finite differences."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from helpers import assert_user_error
from toy_family import FAMILY as TOY

from gancli import families
from gancli.losses import path_lengths, r1_penalty
from gancli.train.checkpoint import latest_checkpoint, load_snapshot

SRC = Path(__file__).resolve().parents[1] / "src" / "gancli"


@pytest.fixture
def toy(tmp_path):
    families.register(TOY)  # the toy family's registry line
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("name: toy\nmodel: {kind: toy}\ndata: {resolution: 16}\n"
                      "train: {batch: 4, ema_kimg: 0.01, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 4}\n")
    yield recipe
    families.unregister(TOY.name)


def _train(cli, recipe, data, kimg, outdir=None, resume=None):
    args = ["train", recipe, "--data", data, "--kimg", kimg]
    args += ["--resume", resume] if resume else ["--outdir", outdir]
    result = cli(*args)
    assert result.code == 0, result
    return result


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    return {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}


def test_a_family_from_the_tests_trains_resumes_samples_and_is_refused_by_mix(cli, toy, tiny_data, tmp_path):
    _train(cli, toy, tiny_data, 0.048, outdir=tmp_path / "straight")
    _train(cli, toy, tiny_data, 0.024, outdir=tmp_path / "split")
    (straight,), (split,) = (list((tmp_path / d).iterdir()) for d in ("straight", "split"))
    _train(cli, toy, tiny_data, 0.048, resume=split)
    a, b = _tensors(straight), _tensors(split)
    assert set(a) == {"G_ema.fc.weight", "G_ema.fc.bias", "G.fc.weight", "G.fc.bias", "D.1.weight", "D.1.bias"}
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not torch.equal(a["G.fc.weight"], a["G_ema.fc.weight"])  # it trained, and the EMA lags

    result = cli("sample", straight, "--seeds", "0-2", "--outdir", tmp_path / "out")
    assert result.code == 0, result
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert_user_error(cli("mix", straight, "--rows", "1", "--cols", "2", "--out", tmp_path / "m.png"),
                      "mix: a toy generator has no per-layer styles")
    assert_user_error(cli("noise", straight, "--seeds", "1", "--out", tmp_path / "n.png"),
                      "noise: a toy generator has no noise inputs")
    dry = cli("train", toy, "--dry-run")
    assert dry.code == 0 and "toy: linear G and D, z 8" in dry.out
    info = cli("info", straight)
    assert info.code == 0 and "kind" in info.out and "toy" in info.out


def test_keys_of_another_family_name_it(cli, toy):
    assert_user_error(cli("train", toy, "--dry-run", "--set", "model.w_dim=8"),
                      "model.w_dim", "belongs to the StyleGAN2 family")
    assert_user_error(cli("train", "quickstart", "--dry-run", "--set", "model.kind=nonesuch"),
                      "model.kind", "unknown model kind 'nonesuch'", "stylegan2", "biggan")


def test_no_kind_branches_outside_the_registry():
    """Families are chosen by the registry; nothing else compares a kind."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "families" or "families" in path.relative_to(SRC).parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"kind ==|is_style_based", line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_every_family_declares_known_capabilities_and_modules():
    for family in families.all_families():
        assert family.capabilities <= set(families.CAPABILITIES), family.name
        assert family.inference_module in family.modules
        assert family.kinds and all(families.get_family(k) is family for k in family.kinds)


# --------------------------------------------------------------------------------------------------
# Formula checks of the regularizers against a float64 finite-difference oracle.


def _central_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(x)
    flat, g = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        g[i] = (up - down) / (2 * h)
    return grad


def test_r1_penalty_is_the_squared_gradient_norm_of_d():
    torch.manual_seed(0)
    w = torch.randn(2 * 3 * 4 * 4, dtype=torch.float64)

    def D(x):  # a nonlinear per-sample score
        return torch.tanh(x.flatten(1) @ w[: x[0].numel()] * 0.3) + (x**3).flatten(1).sum(1) * 0.1

    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    penalty = r1_penalty(D(x), x)
    for i in range(2):
        oracle = _central_grad(lambda xi: float(D(xi[None])[0]), x[i].detach().clone())
        assert math.isclose(float(penalty[i]), float(oracle.square().sum()), rel_tol=1e-7)


def test_path_length_is_the_norm_of_the_jacobian_transpose_times_image_noise():
    torch.manual_seed(1)
    A = torch.randn(5, 3 * 4 * 4, dtype=torch.float64)

    def synthesis(ws):  # [N, num_ws=2, w_dim=5] -> images [N, 3, 4, 4]
        return torch.tanh((ws[:, 0] + 0.5 * ws[:, 1] ** 2) @ A).reshape(-1, 3, 4, 4)

    ws = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    lengths = path_lengths(synthesis(ws), ws)
    torch.manual_seed(7)
    y = torch.randn(2, 3, 4, 4, dtype=torch.float64) / math.sqrt(4 * 4)  # the same image-space noise
    for i in range(2):
        grad = _central_grad(lambda w, yi=y[i]: float((synthesis(w[None])[0] * yi).sum()), ws[i].detach().clone())
        oracle = math.sqrt(grad.square().sum(dim=1).mean())  # |J^T y| over w dims, mean over layers
        assert math.isclose(float(lengths[i]), oracle, rel_tol=1e-7)
