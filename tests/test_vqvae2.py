"""VQ-VAE-2: the quantizer against float64 formulas, the priors' causality, sampling, and both stages
through the commands (exact resume, --init from stage 1, cached codes, sample/truncate/mix/project)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image

from gancli.families import get_family
from gancli.families.vqvae2 import nets, steps
from gancli.recipe import Recipe
from gancli.train.checkpoint import latest_checkpoint, load_snapshot

FAMILY = get_family("vqvae2")
TINY_MODEL = {"kind": "vqvae2", "channels": 16, "res_blocks": 1, "res_channels": 8, "embed_dim": 8, "n_embed": 16,
              "prior_channels": 16, "prior_layers": 3, "prior_attention": 1, "prior_heads": 2, "prior_kernel": 3,
              "cond_res_blocks": 1}


def _recipe(stage=2, resolution=16, **model):
    return Recipe.from_dict({"name": "t", "model": {**TINY_MODEL, "stage": stage, **model},
                             "data": {"resolution": resolution}})


# --------------------------------------------------------------------------------------------------
# The quantizer


def test_nearest_code_is_the_float64_brute_force_argmin():
    torch.manual_seed(0)
    q = nets.Quantizer(dim=5, n_embed=40).eval()
    x = torch.randn(3, 5, 4, 4)
    _, _, codes, _ = q(x)
    flat = x.permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    e = q.embed.double().numpy()
    dist = ((flat[:, None, :] - e[None]) ** 2).sum(-1)  # every pair, in float64
    assert np.array_equal(codes.flatten().numpy(), dist.argmin(1))


def test_ema_codebook_update_follows_the_formula():
    torch.manual_seed(1)
    decay, eps, k, d = 0.99, 1e-5, 6, 3
    q = nets.Quantizer(dim=d, n_embed=k, decay=decay, eps=eps).train()
    q.cluster_size.copy_(torch.rand(k))
    size0, avg0 = q.cluster_size.double().numpy().copy(), q.embed_avg.double().numpy().copy()
    x = torch.randn(2, d, 3, 3)
    _, _, codes, _ = q(x)
    flat = x.permute(0, 2, 3, 1).reshape(-1, d).double().numpy()
    onehot = np.eye(k)[codes.flatten().numpy()]
    size = decay * size0 + (1 - decay) * onehot.sum(0)
    avg = decay * avg0 + (1 - decay) * onehot.T @ flat
    n = size.sum()
    embed = avg / ((size + eps) / (n + k * eps) * n)[:, None]
    np.testing.assert_allclose(q.cluster_size.numpy(), size, rtol=1e-5)
    np.testing.assert_allclose(q.embed_avg.numpy(), avg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.embed.numpy(), embed, rtol=1e-4, atol=1e-6)
    q.eval()  # no update outside training
    before = q.embed.clone()
    q(x)
    assert torch.equal(before, q.embed)


def test_straight_through_gradient_is_the_identity_and_commitment_is_the_squared_distance():
    torch.manual_seed(2)
    q = nets.Quantizer(dim=4, n_embed=8).eval()
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    w = torch.randn(2, 4, 3, 3)
    out, commitment, codes, _ = q(x)
    assert torch.allclose(out.detach(), q.lookup(codes), atol=1e-6, rtol=0)  # the forward value is the code vector (x + (q - x))
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)  # d out / d x = identity
    expected = ((x.detach().double() - q.lookup(codes).double()) ** 2).mean()
    assert math.isclose(float(commitment.detach()), float(expected), rel_tol=1e-6)


def test_dead_codes_restart_at_encoder_outputs_and_only_when_asked():
    torch.manual_seed(3)
    q = nets.Quantizer(dim=2, n_embed=4).train()
    q.embed.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))  # 1..3 never nearest
    q.embed_avg.copy_(q.embed)
    x = torch.randn(1, 2, 4, 4) * 0.1
    assert q(x)[3] == 0 and (q.cluster_size[1:] < 1).all()  # off: the dead codes stay where they are
    gen = torch.Generator().manual_seed(0)
    _, _, _, restarted = q(x, restart_below=0.1, gen=gen)
    assert restarted == 3
    flat = x.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in (1, 2, 3):  # each restarted code is one of this batch's encoder outputs
        assert (flat == q.embed[k]).all(1).any()


def test_perplexity_is_exp_entropy():
    codes = torch.tensor([0, 0, 1, 2])
    p = np.array([0.5, 0.25, 0.25])
    assert math.isclose(float(nets.perplexity(codes, 8)), math.exp(-(p * np.log(p)).sum()), rel_tol=1e-12)


# --------------------------------------------------------------------------------------------------
# Networks and priors


def test_levels_have_the_papers_shapes():
    G = FAMILY.build_generator(_recipe(resolution=32), 0).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, _, top, bottom, _ = G.vqvae(x)
    assert top.shape == (2, 4, 4) and bottom.shape == (2, 8, 8)  # 1/8 and 1/4
    assert recon.shape == x.shape
    assert G.z_dim == 16 + 64
    assert G.vqvae.decode_codes(top, bottom).shape == x.shape
    stage1 = FAMILY.build_generator(_recipe(stage=1), 0)
    assert stage1.top_prior is None and not any(k.startswith("top_prior") for k in stage1.state_dict())


@pytest.mark.parametrize("level", ["top", "bottom"])
def test_prior_logits_never_see_the_current_or_later_positions(level):
    """d logit(i) / d input(j) is exactly 0 for every j >= i (raster order), at every i; and the
    receptive field has no blind spot: every j < i does reach i."""
    torch.manual_seed(4)
    hh, ww = 4, 4
    prior = nets.Prior(16, (hh, ww), ch=8, layers=4, kernel=3, attention=2 if level == "top" else 0, heads=2,
                       dropout=0.0, cond_res_blocks=None if level == "top" else 1).double().eval()
    with torch.no_grad():
        prior.pos.normal_()
    cond = torch.randint(0, 16, (1, hh // 2, ww // 2)) if level == "bottom" else None
    for i in range(hh * ww):
        x = torch.randn(1, 8, hh, ww, dtype=torch.float64, requires_grad=True)
        logits = prior.forward_features(x, cond)
        logits[0, :, i // ww, i % ww].sum().backward()
        g = x.grad.abs().sum(1).flatten()
        assert (g[i:] == 0).all(), (i, g)
        assert (g[:i] > 0).all(), (i, g)


def test_temperature_zero_is_the_argmax_path_and_draws_follow_the_inverse_cdf():
    torch.manual_seed(5)
    prior = nets.Prior(6, (2, 3), ch=8, layers=2, kernel=3, attention=1, heads=2, dropout=0.0).double().eval()
    u = torch.rand(3, 6, dtype=torch.float64)
    greedy = prior.sample(u, 0.0)
    logits = prior(greedy)  # causal: position p's logits depend only on the codes before p
    assert torch.equal(logits.argmax(1), greedy)
    for t in (0.7, 1.3):
        codes = prior.sample(u, t)
        logits = prior(codes).detach().numpy()  # [N, K, H, W]
        for n in range(3):
            for p in range(6):
                lg = logits[n, :, p // 3, p % 3] / t
                cdf = np.cumsum(np.exp(lg - lg.max()) / np.exp(lg - lg.max()).sum())
                assert codes[n, p // 3, p % 3] == min(int(np.searchsorted(cdf, float(u[n, p]), side="right")), 5)


def test_a_seed_gives_the_same_codes_and_image_whatever_the_batch_and_the_other_seeds():
    torch.manual_seed(6)
    G = FAMILY.build_generator(_recipe(), 0).eval()
    alone = FAMILY.generate(G, [5])
    among = FAMILY.generate(G, [3, 5, 7])
    batched = FAMILY.generate(G, [3, 5, 7], batch=3)
    assert torch.equal(alone[0], among[1])
    z = FAMILY.latents([3, 5, 7], G.z_dim, "cpu")
    one = [G.sample_codes(z[i: i + 1], 1.0) for i in range(3)]
    top, bottom = G.sample_codes(z, 1.0)
    assert all(torch.equal(one[i][0][0], top[i]) and torch.equal(one[i][1][0], bottom[i]) for i in range(3))
    assert (batched - among).abs().max() < 1e-5
    assert not torch.equal(among[0], among[1])  # different seeds, different samples


def test_code_cache_is_keyed_by_the_weights_and_the_images(tmp_path):
    from gancli.data.dataset import ImageDataset

    torch.manual_seed(7)
    G = FAMILY.build_generator(_recipe(stage=1), 0).eval()
    data = ImageDataset(np.random.RandomState(0).randint(0, 255, (5, 3, 16, 16)).astype(np.uint8), xflip=True)
    cache = steps.CodeCache(tmp_path / "codes.npz")
    top, bottom = cache.load_or_extract(G.vqvae, data, "cpu")
    assert top.shape == (10, 2, 2) and bottom.shape == (10, 4, 4)  # mirrors included
    x = torch.from_numpy(data.get_batch(np.arange(10))[0]).float() / 127.5 - 1
    assert np.array_equal(G.vqvae.encode(x)[3].numpy(), top)
    mtime = (tmp_path / "codes.npz").stat().st_mtime_ns
    cache.load_or_extract(G.vqvae, data, "cpu")
    assert (tmp_path / "codes.npz").stat().st_mtime_ns == mtime  # read, not written again
    with torch.no_grad():
        G.vqvae.quant_top.embed.add_(1.0)  # other weights: extracted again
    cache.load_or_extract(G.vqvae, data, "cpu")
    assert (tmp_path / "codes.npz").stat().st_mtime_ns != mtime


# --------------------------------------------------------------------------------------------------
# Both stages through the commands


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vqrecipes")
    model = ", ".join(f"{k}: {v}" for k, v in TINY_MODEL.items())
    common = "data: {resolution: 16}\ntrain: {batch: 4, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 4, lr: 0.001}\n"
    (folder / "s1.yaml").write_text(f"name: vq1\nmodel: {{{model}, stage: 1}}\n{common}")
    (folder / "s2.yaml").write_text(f"name: vq2\nmodel: {{{model}, stage: 2}}\n{common}")
    return folder


def _tensors(run):
    snap = load_snapshot(latest_checkpoint(run).snapshot)
    return {f"{m}.{k}": v for m, sd in snap.modules.items() for k, v in sd.items()}


def _only_run(folder):
    (run,) = list(folder.iterdir())
    return run


def _ok(result):
    assert result.code == 0, result
    return result


@pytest.fixture(scope="module")
def stage_runs(recipes, tiny_data, tmp_path_factory):
    """Stage 1 straight (8 steps) and split (4 + resume 4); stage 2 from the straight stage-1 run,
    straight and split, the resume with the code extraction disabled (the cache must serve it)."""
    from gancli.cli import main

    root = tmp_path_factory.mktemp("vqruns")
    runs = {}

    def train(*args):
        assert main([str(a) for a in ["train", *args]]) == 0

    train(recipes / "s1.yaml", "--data", tiny_data, "--kimg", 0.032, "--outdir", root / "s1-straight")
    train(recipes / "s1.yaml", "--data", tiny_data, "--kimg", 0.016, "--outdir", root / "s1-split")
    runs["s1"], runs["s1-split"] = _only_run(root / "s1-straight"), _only_run(root / "s1-split")
    train(recipes / "s1.yaml", "--data", tiny_data, "--kimg", 0.032, "--resume", runs["s1-split"])
    train(recipes / "s2.yaml", "--data", tiny_data, "--kimg", 0.032, "--init", runs["s1"], "--outdir", root / "s2-straight")
    train(recipes / "s2.yaml", "--data", tiny_data, "--kimg", 0.016, "--init", runs["s1"], "--outdir", root / "s2-split")
    runs["s2"], runs["s2-split"] = _only_run(root / "s2-straight"), _only_run(root / "s2-split")
    runs["cache_mtime"] = (runs["s2-split"] / "codes.npz").stat().st_mtime_ns
    real = steps.extract_codes
    steps.extract_codes = lambda *a, **k: pytest.fail("the cached codes were not reused")
    try:
        train(recipes / "s2.yaml", "--data", tiny_data, "--kimg", 0.032, "--resume", runs["s2-split"])
    finally:
        steps.extract_codes = real
    return runs


def test_stage_1_resumes_exactly_and_records_code_usage(stage_runs):
    a, b = _tensors(stage_runs["s1"]), _tensors(stage_runs["s1-split"])
    assert set(a) == set(b) and any(k.endswith("quant_top.cluster_size") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    import json

    records = [json.loads(line) for line in (stage_runs["s1"] / "stats.jsonl").read_text().splitlines()]
    logged = {k for r in records for k in r}
    assert {"vq/perplexity_top", "vq/perplexity_bottom", "vq/used_top", "vq/live_bottom", "loss/mse"} <= logged


def test_stage_2_starts_from_stage_1_keeps_it_frozen_and_resumes_exactly(stage_runs):
    s1, a, b = _tensors(stage_runs["s1"]), _tensors(stage_runs["s2"]), _tensors(stage_runs["s2-split"])
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    vq_keys = [k for k in a if k.startswith("vqvae2.vqvae.")]
    assert vq_keys and all(torch.equal(a[k], s1[k]) for k in vq_keys)  # frozen: codebooks included
    prior = [k for k in a if k.startswith("vqvae2.top_prior.")]
    assert prior and set(prior) | set(vq_keys) | {k for k in a if "bottom_prior" in k} == set(a)
    assert (stage_runs["s2-split"] / "codes.npz").stat().st_mtime_ns == stage_runs["cache_mtime"]


def test_sample_truncate_mix_project_on_a_trained_run(cli, stage_runs, tmp_path, tiny_data):
    run = stage_runs["s2"]
    _ok(cli("sample", run, "--seeds", "0-2", "--outdir", tmp_path / "s"))
    again = _ok(cli("sample", run, "--seeds", "2", "--outdir", tmp_path / "s2"))
    assert "1 images" in again.out
    a = np.asarray(Image.open(tmp_path / "s" / "seed0002.png"))
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "s2" / "seed0002.png")))
    _ok(cli("sample", run, "--seeds", "2", "--trunc", "0", "--outdir", tmp_path / "t0"))

    out = _ok(cli("truncate", run, "--seeds", "0,1", "--out", tmp_path / "trunc.png"))
    assert "x temperature 0, 0.5, 0.8, 1, 1.2" in out.out
    assert Image.open(tmp_path / "trunc.png").size == (5 * 16, 2 * 16)

    _ok(cli("mix", run, "--rows", "1,2", "--cols", "3,4,5", "--out", tmp_path / "mix.png"))
    grid = np.asarray(Image.open(tmp_path / "mix.png"))
    assert grid.shape[:2] == (3 * 16, 4 * 16)
    G = FAMILY.build_generator(Recipe.from_dict(load_snapshot(latest_checkpoint(run).snapshot).recipe), 0)
    G.load_state_dict(_tensors_of(run)["vqvae2"])
    G.eval()
    z = FAMILY.latents([2, 4], G.z_dim, "cpu")
    (top2, _), (_, bottom4) = G.sample_codes(z[:1], 1.0), G.sample_codes(z[1:], 1.0)
    from gancli.render import to_uint8

    cell = to_uint8(G.vqvae.decode_codes(top2, bottom4))[0]
    assert np.array_equal(grid[2 * 16: 3 * 16, 2 * 16: 3 * 16], cell)  # row seed 2, column seed 4

    # interpolate: the walk starts and passes through the keyframe samples, quantized at every frame
    _ok(cli("interpolate", run, "--seeds", "0,1", "--frames", "4", "--out", tmp_path / "walk.gif",
            "--frames-dir", tmp_path / "frames"))
    frames = sorted((tmp_path / "frames").iterdir())
    assert len(frames) == 5
    for frame, seed in ((frames[0], 0), (frames[4], 1)):
        assert np.array_equal(np.asarray(Image.open(frame)), np.asarray(Image.open(tmp_path / "s" / f"seed{seed:04d}.png")))
    assert_user_error(cli("interpolate", run, "--seeds", "0,1", "--space", "w", "--out", tmp_path / "w.gif"), "--space w")

    target = sorted(tiny_data.iterdir())[0]
    res = _ok(cli("project", run, target, "--outdir", tmp_path / "p"))
    folder = tmp_path / "p" / target.stem
    with np.load(folder / "codes.npz") as f:
        assert f["top"].shape == (1, 2, 2) and f["bottom"].shape == (1, 4, 4)
        recon = to_uint8(G.vqvae.decode_codes(torch.from_numpy(f["top"]), torch.from_numpy(f["bottom"])))[0]
    assert np.array_equal(np.asarray(Image.open(folder / "proj.png")), recon)
    from gancli.project import psnr

    expected = psnr(recon, np.asarray(Image.open(folder / "target.png")))
    assert f"PSNR {expected:.2f} dB" in res.out
    # projecting needs no priors: stage 1 encodes too
    _ok(cli("project", stage_runs["s1"], target, "--outdir", tmp_path / "p1"))


def _tensors_of(run):
    return load_snapshot(latest_checkpoint(run).snapshot).modules


def test_commands_that_do_not_apply_say_so_in_one_line(cli, stage_runs, tmp_path):
    s1, s2 = stage_runs["s1"], stage_runs["s2"]
    assert_user_error(cli("sample", s1, "--seeds", "1", "--outdir", tmp_path / "x"),
                      "stage-1 network has no priors", "--init")
    assert_user_error(cli("mix", s1, "--rows", "1", "--cols", "2", "--out", tmp_path / "m.png"), "no priors")
    assert_user_error(cli("noise", s2, "--seeds", "1", "--out", tmp_path / "n.png"),
                      "noise: a vqvae2 generator has no noise inputs")
    assert_user_error(cli("sample", s2, "--seeds", "1", "--trunc", "-1", "--outdir", tmp_path / "x"),
                      "sampling temperature")
    assert_user_error(cli("sample", s2, "--seeds", "1", "--trunc-cutoff", "2", "--outdir", tmp_path / "x"),
                      "--trunc-cutoff")
    assert_user_error(cli("evaluate", s2, "--metrics", "ppl", "--num", "2"), "ppl")
    assert_user_error(cli("train", "vqvae2-emoji-prior", "--outdir", tmp_path / "runs"), "stage 2", "--init STAGE1_RUN")
    assert not (tmp_path / "runs").exists()
    info = _ok(cli("info", s2))
    assert "vqvae2" in info.out and "stage" in info.out


def test_recipes_dry_run_and_bad_values(cli):
    for name in ("vqvae2-emoji", "vqvae2-emoji-prior", "vqvae2-ffhq256", "vqvae2-ffhq256-prior",
                 "vqvae2-imagenet256", "vqvae2-imagenet256-prior"):
        _ok(cli("train", name, "--dry-run"))
    dry = _ok(cli("train", "vqvae2-emoji-prior", "--dry-run"))
    assert "stage 2" in dry.out and "--init" in dry.out
    assert_user_error(cli("train", "vqvae2-emoji", "--dry-run", "--set", "data.resolution=8"), "at least 16")
    assert_user_error(cli("train", "vqvae2-emoji", "--dry-run", "--set", "model.prior_kernel=4"), "odd")
    assert_user_error(cli("train", "vqvae2-emoji", "--dry-run", "--set", "model.stage=3"), "model.stage")
    assert_user_error(cli("train", "vqvae2-emoji-prior", "--dry-run", "--set", "train.dead_code_threshold=1"),
                      "stage 1")
    assert_user_error(cli("train", "vqvae2-emoji", "--dry-run", "--set", "metrics.names=[fid]"), "stage-1", "recon,codes")


def test_evaluate_reconstruction_code_usage_and_prior_nll_against_numpy(cli, stage_runs, tiny_data):
    import json

    from gancli.data import open_dataset
    from gancli.families.vqvae2.explore import encode_images

    run = stage_runs["s2"]
    res = _ok(cli("evaluate", run, "--metrics", "recon,codes,nll", "--data", tiny_data, "--batch", "5"))
    got = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["results"]
    assert "recon_psnr" in res.out and got["n_images"] == 12
    G = FAMILY.build_generator(Recipe.from_dict(load_snapshot(latest_checkpoint(run).snapshot).recipe), 0)
    G.load_state_dict(_tensors_of(run)["vqvae2"])
    G.eval()
    images = open_dataset(str(tiny_data), 16).images  # [12, 3, 16, 16]
    enc = encode_images(G, images.transpose(0, 2, 3, 1))  # one image at a time
    assert math.isclose(got["recon_psnr"], float(np.mean(enc["psnr"])), rel_tol=1e-9)
    recon = np.stack([G.vqvae.decode_codes(torch.from_numpy(enc["top"][i: i + 1]), torch.from_numpy(enc["bottom"][i: i + 1]))[0].detach().double().numpy()
                      for i in range(12)])
    x = images.astype(np.float64) / 127.5 - 1
    assert math.isclose(got["recon_mse"], float(np.mean((recon - x) ** 2)), rel_tol=1e-4)
    for level in ("top", "bottom"):
        counts = np.bincount(enc[level].flatten(), minlength=16) / enc[level].size
        p = counts[counts > 0]
        assert math.isclose(got[f"perplexity_{level}"], math.exp(-(p * np.log(p)).sum()), rel_tol=1e-9)
        assert got[f"usage_{level}"] == len(p) / 16
    bits = {}
    for level in ("top", "bottom"):
        top, bottom = torch.from_numpy(enc["top"]), torch.from_numpy(enc["bottom"])
        with torch.no_grad():
            logits = (G.top_prior(top) if level == "top" else G.bottom_prior(bottom, top)).double().numpy()
        target = enc[level]
        logp = logits - logits.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        picked = np.take_along_axis(logp, target[:, None], 1)
        bits[level] = -picked.sum() / math.log(2)
        assert math.isclose(got[f"nll_{level}_bpd"], bits[level] / target.size, rel_tol=1e-6)
    assert math.isclose(got["nll_bpd"], (bits["top"] + bits["bottom"]) / (12 * (4 + 16)), rel_tol=1e-6)
    assert got["nll_uniform_bpd"] == 4.0  # log2 of the tiny codebook's 16 codes
    assert_user_error(cli("evaluate", stage_runs["s1"], "--metrics", "nll", "--data", tiny_data), "no priors")
    _ok(cli("evaluate", stage_runs["s1"], "--metrics", "recon,codes", "--data", tiny_data))


def test_emoji_split_keeps_every_base_emoji_on_one_side():
    from gancli.data import emoji

    names = emoji.emoji_files()
    train, heldout = emoji.split_indices(names, "emoji-train"), emoji.split_indices(names, "emoji-heldout")
    assert sorted(train + heldout) == list(range(len(names))) and not set(train) & set(heldout)
    bases_train = {emoji.base_emoji(names[i]) for i in train}
    bases_heldout = {emoji.base_emoji(names[i]) for i in heldout}
    assert not bases_train & bases_heldout
    assert 0.04 < len(heldout) / len(names) < 0.2
    toned = [n for n in names if "-1f3fd" in n]  # a skin-tone variant and its untoned base sit together
    assert toned and all(emoji.is_heldout(n) == emoji.is_heldout(n.replace("-1f3fd", "")) for n in toned)
    assert emoji.base_emoji("1f44d-1f3fd.png") == "1f44d" and emoji.split_indices(names, "emoji") is None
