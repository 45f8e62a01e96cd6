"""StyleGAN2 networks: conformance with the official StyleGAN2-ADA outputs, and behaviour on tiny nets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.families.stylegan2.nets import Discriminator, Generator, SynthesisLayer
from gancli.nets.layers import Conv2dLayer

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "stylegan2-ada"
TOL = dict(rtol=1e-4, atol=1e-4)

# ---------------------------------------------------------------------------------------------------
# Conformance with the official implementation (fixtures made by NVlabs stylegan2-ada-pytorch)


@pytest.fixture(scope="module")
def official():
    if not FIXTURES.is_dir():
        pytest.skip(
            f"conformance fixtures not found: {FIXTURES} (the shared test data sits next to the repo)"
        )
    from safetensors.torch import load_file

    kwargs = json.loads((FIXTURES / "sg2-uncond-32.json").read_text())
    params = load_file(str(FIXTURES / "sg2-uncond-32.safetensors"))
    expected = load_file(str(FIXTURES / "sg2-uncond-32-expected.safetensors"))
    G = Generator(**kwargs["G"]).eval()
    D = Discriminator(**kwargs["D"]).eval()
    g_state = {k.removeprefix("G_ema."): v for k, v in params.items() if k.startswith("G_ema.")}
    d_state = {k.removeprefix("D."): v for k, v in params.items() if k.startswith("D.")}
    assert set(G.state_dict()) == set(g_state)  # names, before the strict load checks shapes too
    assert set(D.state_dict()) == set(d_state)
    G.load_state_dict(g_state, strict=True)
    D.load_state_dict(d_state, strict=True)
    return G, D, expected


def test_seed_convention_gives_the_fixture_latents(official):
    _, _, e = official
    for seed, z in zip(e["seeds"].tolist(), e["z"], strict=True):
        np.testing.assert_array_equal(z.numpy(), np.random.RandomState(seed).randn(64).astype(np.float32))


@pytest.mark.parametrize("psi, key", [(1.0, "ws_psi10"), (0.7, "ws_psi07")])
def test_mapping_matches_official(official, psi, key):
    G, _, e = official
    with torch.no_grad():
        ws = G.mapping(e["z"], e["c"], truncation_psi=psi)
    assert ws.shape == (8, G.num_ws, 64) and G.num_ws == 8
    torch.testing.assert_close(ws, e[key], **TOL)


@pytest.mark.parametrize("fused_modconv", [None, True, False])
@pytest.mark.parametrize(
    "ws_key, noise_mode, img_key",
    [
        ("ws_psi10", "const", "img_psi10"),
        ("ws_psi07", "const", "img_psi07"),
        ("ws_psi10", "none", "img_psi10_noise_none"),
    ],
)
def test_synthesis_matches_official(official, fused_modconv, ws_key, noise_mode, img_key):
    G, _, e = official
    with torch.no_grad():
        img = G.synthesis(e[ws_key], noise_mode=noise_mode, fused_modconv=fused_modconv)
    assert img.dtype == torch.float32 and img.shape == (8, 3, 32, 32)
    torch.testing.assert_close(img, e[img_key], **TOL)


@pytest.mark.parametrize("psi, key", [(1.0, "img_psi10_uint8"), (0.7, "img_psi07_uint8")])
def test_generator_end_to_end_uint8_matches_official(official, psi, key):
    G, _, e = official
    with torch.no_grad():
        img = G(e["z"], e["c"], truncation_psi=psi, noise_mode="const")
    pixels = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    diff = (pixels.int() - e[key].int()).abs()
    assert diff.max() <= 1  # a value exactly on a rounding edge may land one level off
    assert (diff == 0).float().mean() > 0.999


def test_discriminator_matches_official(official):
    _, D, e = official
    with torch.no_grad():
        logits = D(e["img_psi10"], e["c"])
    assert logits.shape == (8, 1)
    torch.testing.assert_close(logits, e["d_logits"], **TOL)


# ---------------------------------------------------------------------------------------------------
# Tiny networks


def tiny_g(architecture="skip", c_dim=0, res=16, **synthesis_kwargs):
    torch.manual_seed(0)
    G = Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(
            channel_base=128, channel_max=32, architecture=architecture, **synthesis_kwargs
        ),
    )
    with torch.no_grad():  # make noise and w_avg matter (both start at zero)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G.eval()


def tiny_d(architecture="resnet", c_dim=0, res=16, **kwargs):
    torch.manual_seed(1)
    return Discriminator(
        c_dim=c_dim,
        img_resolution=res,
        img_channels=3,
        architecture=architecture,
        channel_base=128,
        channel_max=32,
        **kwargs,
    ).eval()


def seeds_to_z(seeds, z_dim=16):
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def test_constructor_defaults_follow_official():
    G = tiny_g()
    assert G.mapping.w_avg_beta == 0.995 and G.mapping.fc0.weight_gain == pytest.approx(0.01 / 4)
    assert G.synthesis.b16.architecture == "skip"
    assert tiny_d().b16.architecture == "resnet"
    assert G.w_avg is G.mapping.w_avg
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 0, 16, 16, 3)
    assert G.synthesis.b4.const.shape == (32, 4, 4) and G.synthesis.b16.conv1.noise_const.shape == (16, 16)
    assert G.synthesis.b8.resample_filter.shape == (4, 4)


@pytest.mark.parametrize("g_arch", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("d_arch", ["orig", "skip", "resnet"])
def test_architectures_build_and_run(g_arch, d_arch):
    G, D = tiny_g(g_arch), tiny_d(d_arch)
    z = seeds_to_z([0, 1, 2, 3])
    with torch.no_grad():
        ws = G.mapping(z, None)
        img = G.synthesis(ws)
        logits = D(img, None)
    assert G.num_ws == 6  # 16 px: 5 convolutions + the final toRGB
    assert ws.shape == (4, 6, 16) and img.shape == (4, 3, 16, 16) and logits.shape == (4, 1)
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    assert hasattr(G.synthesis.b8, "torgb") == (g_arch == "skip")
    assert hasattr(G.synthesis.b8, "skip") == (g_arch == "resnet")
    assert hasattr(D.b8, "fromrgb") == (d_arch == "skip") and hasattr(D.b8, "skip") == (d_arch == "resnet")


def test_num_ws_by_resolution():
    assert tiny_g(res=8).num_ws == 4
    assert tiny_g(res=32).num_ws == 8
    assert tiny_g("orig", res=32).num_ws == 8


def test_conditional_generator_and_projection_discriminator():
    G, D = tiny_g(c_dim=3), tiny_d(c_dim=3)
    assert "mapping.embed.weight" in G.state_dict() and "mapping.embed.weight" in D.state_dict()
    assert D.cmap_dim == 32 and D.b4.out.weight.shape == (32, 32)
    z = seeds_to_z([5, 5])
    c = torch.eye(3)[[0, 2]]
    with torch.no_grad():
        img = G(z, c)
        logits = D(img, c)
        logits_other = D(img, torch.eye(3)[[1, 1]])
    assert img.shape == (2, 3, 16, 16) and logits.shape == (2, 1)
    assert not torch.allclose(img[0], img[1])  # same z, different class
    assert not torch.allclose(logits, logits_other)
    with pytest.raises(ValueError, match="c must be"):
        G(z, None)


def test_truncation_psi_and_cutoff():
    G = tiny_g()
    z = seeds_to_z([0, 1])
    with torch.no_grad():
        ws = G.mapping(z, None)
        ws0 = G.mapping(z, None, truncation_psi=0)
        ws_half = G.mapping(z, None, truncation_psi=0.5)
        ws_cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(ws0, G.w_avg.expand_as(ws0))
    torch.testing.assert_close(ws_half, G.w_avg + 0.5 * (ws - G.w_avg))
    torch.testing.assert_close(ws_cut[:, :2], ws_half[:, :2])
    torch.testing.assert_close(ws_cut[:, 2:], ws[:, 2:])
    assert torch.equal(ws[:, 0], ws[:, -1])  # one w broadcast to every layer


def test_w_avg_updates_only_when_asked():
    G = tiny_g()
    z = seeds_to_z(range(8))
    before = G.w_avg.clone()
    G.train()
    G.mapping(z, None)
    assert torch.equal(G.w_avg, before)
    with torch.no_grad():
        w = G.mapping(z, None, update_emas=True)[:, 0]
    torch.testing.assert_close(G.w_avg, w.mean(0).lerp(before, 0.995))


def test_noise_modes():
    G = tiny_g()
    z = seeds_to_z([7, 8])
    with torch.no_grad():
        const1, const2 = G(z, None, noise_mode="const"), G(z, None, noise_mode="const")
        rand1, rand2 = G(z, None, noise_mode="random"), G(z, None, noise_mode="random")
        none = G(z, None, noise_mode="none")
    assert torch.equal(const1, const2)
    assert not torch.allclose(rand1, rand2)
    assert not torch.allclose(rand1, const1) and not torch.allclose(none, const1)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="fresh")


def test_seeds_are_deterministic_and_independent_of_the_batch():
    G = tiny_g()
    with torch.no_grad():
        batch = G(seeds_to_z([3, 14, 15]), None)
        again = G(seeds_to_z([3, 14, 15]), None)
        alone = torch.cat([G(seeds_to_z([s]), None) for s in (3, 14, 15)])
    assert torch.equal(batch, again)
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_fused_and_unfused_modulation_agree(architecture):
    G = tiny_g(architecture)
    ws = G.mapping(seeds_to_z([0, 1, 2]), None).detach()
    with torch.no_grad():
        fused = G.synthesis(ws, fused_modconv=True)
        unfused = G.synthesis(ws, fused_modconv=False)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)


def test_conv_clamp_bounds_layer_outputs():
    torch.manual_seed(0)
    layer = SynthesisLayer(8, 8, w_dim=4, resolution=8, conv_clamp=0.05)
    with torch.no_grad():
        y = layer(torch.randn(2, 8, 8, 8) * 10, torch.randn(2, 4))
    assert y.abs().max() <= 0.05 + 1e-7 and (y.abs() == 0.05).any()
    conv = Conv2dLayer(3, 4, 3, activation="lrelu", down=2, conv_clamp=0.05)
    y = conv(torch.randn(2, 3, 8, 8) * 10, gain=0.5)
    assert y.shape == (2, 4, 4, 4) and y.abs().max() <= 0.025 + 1e-7


def test_fp16_settings_run_in_float32_on_cpu():
    G = tiny_g(num_fp16_res=2, conv_clamp=256)
    G32 = tiny_g(num_fp16_res=0, conv_clamp=256)
    G32.load_state_dict(G.state_dict())
    D = tiny_d(num_fp16_res=2, conv_clamp=256)
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    z = seeds_to_z([0, 1])
    with torch.no_grad():
        img = G(z, None)
        logits = D(img, None)
        torch.testing.assert_close(img, G32(z, None))
    assert img.dtype == torch.float32 and logits.dtype == torch.float32


def test_freeze_layers_turns_parameters_into_buffers_with_the_same_names():
    D = tiny_d(block_kwargs=dict(freeze_layers=2))
    names = dict(D.named_parameters())
    assert "b16.fromrgb.weight" not in names and "b16.conv0.weight" not in names
    assert "b16.conv1.weight" in names
    assert set(D.state_dict()) == set(tiny_d().state_dict())


@pytest.mark.parametrize("fused_modconv", [False, True])
def test_generator_double_backward_path_length_style(fused_modconv):
    G = tiny_g().train()
    ws = G.mapping(seeds_to_z([0, 1]), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="random", fused_modconv=fused_modconv)
    y = torch.randn_like(img) / img.shape[2]
    (grad_ws,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    penalty = grad_ws.square().sum(2).mean(1).sqrt().mean()
    penalty.backward()
    grads = {n: p.grad for n, p in G.synthesis.named_parameters() if p.grad is not None}
    # Every weight shapes d(img)/d(ws); biases added after the last nonlinearity (toRGB) do not.
    assert {n for n in dict(G.synthesis.named_parameters()) if n.endswith(".weight")} <= set(grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["b16.conv0.weight"].abs().sum() > 0 and grads["b8.conv1.affine.weight"].abs().sum() > 0


def test_discriminator_double_backward_r1_style():
    G, D = tiny_g(), tiny_d().train()
    img = G(seeds_to_z([0, 1, 2, 3]), None).detach().requires_grad_(True)
    logits = D(img, None)
    (grad_img,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    r1 = grad_img.square().sum([1, 2, 3]).mean()
    r1.backward()
    grads = {n: p.grad for n, p in D.named_parameters() if p.grad is not None}
    assert {n for n in dict(D.named_parameters()) if n.endswith(".weight")} <= set(grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["b16.conv0.weight"].abs().sum() > 0 and grads["b4.fc.weight"].abs().sum() > 0


def test_second_order_gradients_are_exact_float64():
    """gradgradcheck (float64, random projections) through a very small synthesis network and discriminator."""
    G = tiny_g(res=8).double()
    D = tiny_d("skip", res=8).double()
    ws = G.mapping(seeds_to_z([0, 1]).double(), None).detach().requires_grad_(True)
    probe = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(
        lambda w: (G.synthesis(w, noise_mode="const") * probe).sum(), (ws,), fast_mode=True
    )
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: D(x, None), (img,), fast_mode=True)


def test_input_validation():
    G, D = tiny_g(), tiny_d()
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(1, 5, 16))
    with pytest.raises(ValueError, match="z must be"):
        G.mapping(torch.zeros(1, 15), None)
    with pytest.raises(ValueError, match="img must be"):
        D(torch.zeros(1, 3, 8, 8), None)
    with pytest.raises(ValueError, match="architecture"):
        tiny_g("unet")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mixed_precision_matches_cpu_float32():
    G = tiny_g(num_fp16_res=2, conv_clamp=256)
    D = tiny_d(num_fp16_res=2, conv_clamp=256)
    z = seeds_to_z([0, 1, 2, 3])
    with torch.no_grad():
        ref_img = G(z, None)
        ref_logits = D(ref_img, None)
        img = G.cuda()(z.cuda(), None)
        logits = D.cuda()(ref_img.cuda(), None)
        img32 = G(z.cuda(), None, force_fp32=True)
    assert img.dtype == torch.float32
    torch.testing.assert_close(img32.cpu(), ref_img, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(img.cpu(), ref_img, rtol=0.05, atol=0.05)
    torch.testing.assert_close(logits.cpu(), ref_logits, rtol=0.05, atol=0.05)
