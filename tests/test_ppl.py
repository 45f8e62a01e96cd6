"""ST-LPIPS (our network on stlpips-pytorch's weights) and perceptual path length.

The stlpips-pytorch package cannot be imported here (its code needs torchvision), so the oracle is a
float64 re-implementation written with functional ops straight from the weight file's tensors.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gancli.errors import UserError
from gancli.metrics import evaluate as ev
from gancli.metrics import ppl as ppl_mod
from gancli.metrics import stlpips as st
from gancli.metrics.stlpips import STLPIPS, load_stlpips, stlpips_file

pytestmark = pytest.mark.skipif(stlpips_file("vgg") is None, reason="stlpips-pytorch weights not installed")


@pytest.fixture(scope="module")
def vgg():
    return load_stlpips("vgg")


@pytest.fixture(scope="module")
def alex():
    return load_stlpips("alex")


# --------------------------------------------------------------------------------------------------
# Independent float64 oracle


def _blur(x, sd, key):
    a = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k = (a[:, None] * a[None, :]) / 16
    assert torch.allclose(sd[key].double()[0, 0], k)  # the file's blur filter is the binomial one
    k = k.expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, stride=2, groups=x.shape[1])


def _oracle(net: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sd = {k: v.double() for k, v in torch.load(stlpips_file(net), map_location="cpu", weights_only=True).items()}
    shift, scale = sd["scaling_layer.shift"], sd["scaling_layer.scale"]  # float32 in the file
    torch.testing.assert_close(shift.view(3), torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64))
    torch.testing.assert_close(scale.view(3), torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64))

    def conv(h, name, pad, stride=1):
        return F.conv2d(h, sd[name + ".weight"], sd[name + ".bias"], stride=stride, padding=pad)

    def feats(img):
        h = (torch.from_numpy(img) - shift) / scale
        out = []
        if net == "vgg":
            plan = [["net.slice1.0", "net.slice1.2"], ["net.slice2.6", "net.slice2.8"],
                    ["net.slice3.12", "net.slice3.14", "net.slice3.16"], ["net.slice4.20", "net.slice4.22", "net.slice4.24"],
                    ["net.slice5.28", "net.slice5.30", "net.slice5.32"]]
            blurs = [None, "net.slice2.5.filt", "net.slice3.11.filt", "net.slice4.19.filt", "net.slice5.27.filt"]
            for convs, blur in zip(plan, blurs):
                if blur:
                    h = _blur(F.max_pool2d(h, 2, stride=1), sd, blur)
                for name in convs:
                    h = F.relu(conv(h, name, 1))
                out.append(h)
        else:
            h = F.relu(_blur(conv(h, "net.slice1.0", 2), sd, "net.slice1.1.filt"))
            out.append(h)
            h = F.relu(conv(_blur(F.max_pool2d(h, 3, stride=1), sd, "net.slice2.4.filt"), "net.slice2.5", 2))
            out.append(h)
            h = F.relu(conv(_blur(F.max_pool2d(h, 3, stride=1), sd, "net.slice3.8.filt"), "net.slice3.9", 1))
            out.append(h)
            h = F.relu(conv(h, "net.slice4.11", 1))
            out.append(h)
            h = F.relu(conv(h, "net.slice5.13", 1))
            out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(feats(x), feats(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = sd[f"lin{k}.model.1.weight"].view(-1)
        total = total + torch.einsum("nchw,c->n", (a - b) ** 2, w) / (a.shape[2] * a.shape[3])
    return total.numpy()


def _pair(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 3, size, size))
    y = np.clip(x + rng.normal(0, 0.3, size=x.shape), -1, 1)
    return x, y


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_stlpips_matches_float64_oracle(net, vgg, alex):
    model = vgg if net == "vgg" else alex
    x, y = _pair(size=36 if net == "vgg" else 33)
    want = _oracle(net, x, y)
    got32 = model(torch.from_numpy(x).float(), torch.from_numpy(y).float()).numpy()
    got64 = STLPIPS.from_file(stlpips_file(net)).double()(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert want.min() > 1e-3
    np.testing.assert_allclose(got64, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got32, want, rtol=0, atol=1e-5)


def test_identity_symmetry_shape(vgg):
    x, y = (torch.from_numpy(a).float() for a in _pair(n=3, size=32, seed=1))
    assert torch.equal(vgg(x, x), torch.zeros(3))
    d_xy, d_yx = vgg(x, y), vgg(y, x)
    assert d_xy.shape == (3,) and (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="at least 32"):
        vgg(x[:, :, :16, :16], y[:, :, :16, :16])


def test_weights_are_full_and_load_strictly(vgg, alex):
    for model, net in ((vgg, "vgg"), (alex, "alex")):
        sd = torch.load(stlpips_file(net), map_location="cpu", weights_only=True)
        assert set(sd) == set(model.state_dict())  # backbone + blur filters + scaling + heads
        assert any(k.startswith("net.slice5.") and k.endswith(".weight") for k in sd)
        for k, v in model.state_dict().items():
            assert torch.equal(v, sd[k]), k
        assert len(model.sha1) == 40


def test_shift_tolerance(vgg):
    # Smooth image; a 1-pixel shift vs. noise of the same MSE.
    g = torch.Generator().manual_seed(3)
    img = F.interpolate(torch.rand(1, 3, 10, 10, generator=g) * 2 - 1, size=66, mode="bicubic", align_corners=False).clamp(-1, 1)
    x, shifted = img[:, :, 1:65, 1:65], img[:, :, 1:65, 2:66]
    mse = (x - shifted).square().mean()
    noise = torch.randn(x.shape, generator=g)
    noisy = x + noise * (mse / noise.square().mean()).sqrt()
    d_shift, d_noise = vgg(x, shifted).item(), vgg(x, noisy).item()
    assert d_shift < 0.25 * d_noise, (d_shift, d_noise)


def test_user_files_and_errors(tmp_path, monkeypatch, vgg):
    # Missing package weights -> how to install them.
    monkeypatch.setattr(st, "stlpips_file", lambda variant="vgg": None)
    with pytest.raises(UserError, match="pip install --no-deps stlpips-pytorch"):
        load_stlpips("vgg")
    monkeypatch.undo()
    with pytest.raises(UserError, match="unknown ST-LPIPS variant"):
        load_stlpips("squeeze")
    with pytest.raises(UserError, match="not found"):
        load_stlpips(path=tmp_path / "nope.pth")
    heads = tmp_path / "vgg.pth"  # the original LPIPS release: linear heads only
    torch.save({k: v for k, v in vgg.state_dict().items() if k.startswith("lin")}, heads)
    with pytest.raises(UserError, match="only the LPIPS linear heads"):
        load_stlpips(path=heads)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a file")
    with pytest.raises(UserError, match="not a readable"):
        load_stlpips(path=bad)
    # A full vanilla VGG16 LPIPS state_dict (lpips.LPIPS(net='vgg') key names) is accepted.
    vanilla = STLPIPS("vgg-lpips")
    torch.manual_seed(0)
    for p in vanilla.parameters():
        p.data.normal_(0, 0.05)
        p.data.abs_() if p.dim() == 4 and p.shape[0] == 1 else None
    full = tmp_path / "lpips_vgg_full.pth"
    torch.save(vanilla.state_dict(), full)
    loaded = load_stlpips(path=full)
    assert loaded.net_name == "vgg-lpips" and loaded.info()["name"] == "LPIPS"
    x, y = (torch.from_numpy(a).float() for a in _pair(n=1, size=32))
    torch.testing.assert_close(loaded(x, y), vanilla(x, y))


# --------------------------------------------------------------------------------------------------
# PPL on toy style-based generators


class _ToyG(torch.nn.Module):
    """mapping: w = A z (broadcast to num_ws); synthesis: img = slope * tanh-free linear map of w."""

    def __init__(self, slope=1.0, ignore_w=False, res=32, z_dim=4, num_ws=2):
        super().__init__()
        torch.manual_seed(0)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.img_resolution, self.img_channels = z_dim, 0, z_dim, num_ws, res, 3
        self.A = torch.nn.Parameter(torch.randn(z_dim, z_dim), requires_grad=False)
        self.B = torch.nn.Parameter(torch.randn(3 * res * res, z_dim) * 0.05, requires_grad=False)
        self.base = torch.nn.Parameter(torch.rand(1, 3, res, res) * 0.5 - 0.25, requires_grad=False)
        self.slope, self.ignore_w = slope, ignore_w

    def mapping(self, z, c=None, truncation_psi=1):
        return (z @ self.A.T)[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="const"):
        assert noise_mode == "const"
        n, r = ws.shape[0], self.img_resolution
        if self.ignore_w:
            return self.base.expand(n, -1, -1, -1)
        return self.base + self.slope * (ws[:, 0] @ self.B.T).view(n, 3, r, r)


def _mse(x, y):
    return (x.double() - y.double()).square().mean(dim=(1, 2, 3))


def test_ppl_deterministic_and_zero_for_constant_generator(vgg):
    G = _ToyG()
    a = ppl_mod.ppl(SimpleNamespace(G=G), num=6, batch=4, seed=3, lpips=vgg)
    b = ppl_mod.ppl(SimpleNamespace(G=G), num=6, batch=6, seed=3, lpips=vgg)
    c = ppl_mod.ppl(SimpleNamespace(G=G), num=6, batch=4, seed=4, lpips=vgg)
    assert a > 0 and np.isfinite(a)
    assert abs(a - b) <= 1e-3 * a  # batching only reorders float32 work
    assert a != c
    assert ppl_mod.ppl(SimpleNamespace(G=_ToyG(ignore_w=True)), num=4, lpips=vgg) == 0.0


def test_ppl_exact_properties_with_a_quadratic_distance():
    # With d = MSE and a linear generator, d(wa, wb)/eps^2 = mean((slope * B (w1 - w0))^2): independent of
    # t and eps, and x4 when the slope doubles.
    base = ppl_mod.path_distances(_ToyG(), num=20, epsilon=1e-2, seed=1, lpips=_mse)
    double = ppl_mod.path_distances(_ToyG(slope=2.0), num=20, epsilon=1e-2, seed=1, lpips=_mse)
    np.testing.assert_allclose(double, 4 * base, rtol=1e-4)
    full = ppl_mod.path_distances(_ToyG(), num=20, epsilon=1e-2, sampling="full", seed=1, lpips=_mse)
    np.testing.assert_allclose(full, base, rtol=1e-3)
    # The same paths by hand in float64.
    G = _ToyG()
    z = torch.from_numpy(np.random.RandomState(1).randn(20, 2, 4))
    dw = (z[:, 1] - z[:, 0]) @ G.A.double().T
    want = ((dw @ G.B.double().T) ** 2).mean(1).numpy()
    np.testing.assert_allclose(base, want, rtol=1e-3)
    # Percentile filter: 1st (lower) .. 99th (higher) percentile, then the mean.
    d = np.arange(200.0)
    assert ppl_mod.filtered_mean(d) == pytest.approx(np.arange(1.0, 199.0).mean())


def test_ppl_end_sampling_starts_at_w0_and_prepare_images():
    G = _ToyG()
    seen = []
    ppl_mod.path_distances(G, num=2, epsilon=1e-3, seed=5, lpips=lambda x, y: seen.append((x, y)) or _mse(x, y))
    z = torch.from_numpy(np.random.RandomState(5).randn(2, 2, 4)).float()
    w0 = G.mapping(z[:, 0])
    torch.testing.assert_close(seen[0][0], G.synthesis(w0))
    img = torch.arange(2 * 1 * 512 * 512, dtype=torch.float32).view(2, 1, 512, 512)
    out = ppl_mod.prepare_images(img)
    assert out.shape == (2, 3, 256, 256)
    torch.testing.assert_close(out[:, 0, 0, 0], img[:, 0, :2, :2].mean(dim=(1, 2)))
    crop = ppl_mod.prepare_images(torch.zeros(1, 3, 1024, 1024), crop=True)
    assert crop.shape == (1, 3, 128, 128)  # official: crop 512x512, then downsample by 1024 // 256
    assert ppl_mod.prepare_images(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 32, 32)
    with pytest.raises(UserError, match="--sampling"):
        ppl_mod.ppl(G, num=2, sampling="mid", lpips=_mse)
    with pytest.raises(UserError, match="--epsilon"):
        ppl_mod.ppl(G, num=2, epsilon=0, lpips=_mse)


def test_evaluate_generator_ppl(vgg, tmp_path):
    from gancli.models import LoadedGenerator, build_generator
    from gancli.recipe import Recipe

    assert "ppl" in ev.METRICS and ev.parse_metrics("ppl") == ["ppl"]
    recipe = Recipe.from_dict({
        "name": "tiny", "data": {"source": str(tmp_path / "none"), "resolution": 16},
        "model": {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 16, "num_fp16_res": 0},
    })
    torch.manual_seed(0)
    G = build_generator(recipe, c_dim=0).eval().requires_grad_(False)
    loaded = LoadedGenerator(G=G, recipe=recipe, meta={}, path=tmp_path / "snapshot.safetensors")
    out = ev.evaluate_generator(loaded, "ppl", num=4, batch=4, seed=2)
    again = ev.evaluate_generator(loaded, ["ppl"], num=4, batch=4, seed=2)
    value = out["results"]["ppl_stlpips"]
    assert value > 0 and value == again["results"]["ppl_stlpips"]
    proto = out["protocol"]["ppl"]
    assert proto["epsilon"] == 1e-4 and proto["sampling"] == "end" and proto["num"] == 4
    assert proto["lpips"] == "vgg" and proto["lpips_sha1"] == vgg.sha1
    assert "lpips" not in {k.lower() for k in out["results"]}
    with pytest.raises(UserError, match="needs a generator"):
        ev.evaluate_folders("emoji", "emoji", "ppl")
