"""Perceptual path length in Z (StyleGAN Sec. 4.2): slerp against scipy's geometric_slerp, the Z paths
against a second computation, and `gancli evaluate --ppl-space z` on a StyleGAN (v1) generator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from scipy.spatial import geometric_slerp

from gancli.families.stylegan.nets import StyleGenerator
from gancli.metrics import ppl as ppl_mod


def _mse(x, y):
    return (x.double() - y.double()).square().mean(dim=(1, 2, 3))


def test_slerp_matches_scipy_on_the_unit_sphere():
    rng = np.random.RandomState(0)
    a, b = rng.randn(5, 7), rng.randn(5, 7)
    t = rng.uniform(size=5)
    ours = ppl_mod.slerp(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(t)[:, None]).numpy()
    for i in range(5):
        start, end = a[i] / np.linalg.norm(a[i]), b[i] / np.linalg.norm(b[i])
        np.testing.assert_allclose(ours[i], geometric_slerp(start, end, t[i]), atol=1e-12)


def test_ppl_in_z_follows_the_slerp_path():
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=6, w_dim=6, img_resolution=8, mapping_layers=2, channel_base=32, channel_max=8,
                       start_res=4).eval()
    eps = 1e-2
    got = ppl_mod.path_distances(SimpleNamespace(G=G), num=3, epsilon=eps, sampling="full", seed=4, lpips=_mse,
                                 space="z", batch=2)
    rng = np.random.RandomState(4)
    z = rng.randn(3, 2, 6)
    t = rng.uniform(size=3)
    want = []
    with torch.no_grad():
        for i in range(3):
            a, b = (z[i, k] / np.linalg.norm(z[i, k]) for k in (0, 1))
            pts = torch.from_numpy(np.stack([geometric_slerp(a, b, t[i]), geometric_slerp(a, b, t[i] + eps)])).float()
            img = G.synthesis(G.mapping(pts, None), noise_mode="const")
            want.append(float(_mse(img[:1], img[1:])) / eps**2)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    in_w = ppl_mod.path_distances(SimpleNamespace(G=G), num=3, epsilon=eps, sampling="full", seed=4, lpips=_mse)
    assert not np.allclose(in_w, got, rtol=1e-2)  # a different path
    with pytest.raises(ppl_mod.UserError, match="--ppl-space"):
        ppl_mod.path_distances(SimpleNamespace(G=G), num=1, space="x", lpips=_mse)


def test_evaluate_refuses_an_unknown_ppl_space(cli, tiny_data, tmp_path):
    recipe = tmp_path / "s.yaml"
    recipe.write_text("name: s\nmodel: {kind: stylegan, z_dim: 8, w_dim: 8, mapping_layers: 1, channel_base: 32, "
                      "channel_max: 8}\ndata: {resolution: 8}\ntrain: {batch: 4, start_res: 8, snapshot_kimg: 1000, "
                      "image_kimg: 1000, grid_seeds: 4}\n")
    assert cli("train", recipe, "--data", tiny_data, "--kimg", 0.004, "--outdir", tmp_path / "run",
               "--set", "data.allow_resize=true").code == 0
    (run,) = list((tmp_path / "run").iterdir())
    assert_user_error(cli("evaluate", run, "--metrics", "ppl", "--ppl-space", "q", "--num", "2"), "--ppl-space q")



def test_evaluate_names_the_space_and_sampling(tmp_path):
    from gancli.metrics import evaluate as ev
    from gancli.metrics.stlpips import load_stlpips

    torch.manual_seed(0)
    G = StyleGenerator(z_dim=6, w_dim=6, img_resolution=8, mapping_layers=2, channel_base=32, channel_max=8,
                       start_res=4).eval()
    loaded = SimpleNamespace(G=G, path=tmp_path / "x", require=lambda *a: None)
    seen = {}
    for space, sampling in (("w", "end"), ("z", "full"), ("z", "end")):
        results, proto = ev._ppl_part(loaded, ["ppl"], 3, 0, 3, 1e-2, sampling, False, "vgg", space)
        seen.update(results)
        assert proto["ppl"]["space"] == space and proto["ppl"]["sampling"] == sampling
    assert set(seen) == {"ppl_stlpips", "ppl_zfull_stlpips", "ppl_zend_stlpips"}
    direct = ppl_mod.ppl(SimpleNamespace(G=G), num=3, epsilon=1e-2, batch=3, lpips=load_stlpips("vgg"), space="z")
    assert seen["ppl_zend_stlpips"] == pytest.approx(direct, rel=1e-6)
    assert seen["ppl_zend_stlpips"] != pytest.approx(seen["ppl_stlpips"], rel=1e-3)
