"""The CUDA kernels against the reference ops: forward, backward and double backward over random shapes,
float32 and float16, contiguous and channels-last. Needs a CUDA device (and nvcc + ninja to build the
kernels on first use); skipped without one. Run with `pytest -m cuda`.

The oracle is the reference op evaluated in float64 on the same (rounded) inputs, so the tolerances
only have to cover the kernels' own rounding: float32 ~1e-5 relative, float16 ~2e-3 relative (one
rounding of a float32 accumulator to float16, plus the float16 gradient products).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from gancli import ops
from gancli.ops import bias_act, setup_filter, upfirdn2d
from gancli.ops.bias_act import ACTIVATIONS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float32, torch.float16]
LAYOUTS = ["contiguous", "channels_last"]
CASES = 10  # random cases per (dtype, layout)


@pytest.fixture(scope="module", autouse=True)
def built_kernels():
    """Build (or load) the kernels once; a failed build fails these tests with the compiler's message."""
    ops.reset_build_state()
    module = ops.kernels(required=True)
    assert module is not None
    yield module
    ops.set_impl("auto")


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        assert x.is_contiguous(memory_format=torch.channels_last)
    return x


def _close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str, scale_rtol: float = 1.0):
    """|got - expected| <= atol + rtol * |expected|, with atol relative to the largest expected value.

    float32: the kernels accumulate in float32 (rtol 1e-4, atol 1e-5 of the scale). float16: one
    rounding to float16 per stored value, 4.9e-4 relative, which cancellation in sums (the filter taps,
    the bias gradient) turns into an absolute error of a few times that of the scale.
    """
    rtol, atol = (1e-4, 1e-5) if dtype == torch.float32 else (5e-3, 2e-3)
    got, expected = got.detach(), expected.detach().double()
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-3)
    torch.testing.assert_close(got.double(), expected, rtol=rtol * scale_rtol, atol=atol * scale_rtol * scale,
                               msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------------
# upfirdn2d


def _random_upfirdn_case(rng: np.random.RandomState):
    up = (int(rng.randint(1, 4)), int(rng.randint(1, 4)))
    down = (int(rng.randint(1, 4)), int(rng.randint(1, 4)))
    kind = rng.randint(3)
    if kind == 0:  # 2-D filter
        taps = rng.rand(int(rng.randint(1, 6)), int(rng.randint(1, 6))) + 0.1
    elif kind == 1:  # short 1-D (made 2-D by setup_filter)
        taps = rng.rand(int(rng.randint(1, 6))) + 0.1
    else:  # long 1-D: separable
        taps = rng.rand(int(rng.randint(8, 12))) + 0.1
    f = setup_filter(taps, device="cuda")
    fw = f.shape[-1]
    fh = f.shape[0]
    shape = (int(rng.randint(1, 4)), int(rng.randint(1, 6)), int(rng.randint(fh, fh + 9)), int(rng.randint(fw, fw + 9)))
    padding = [int(v) for v in rng.randint(-2, 5, size=4)]
    # Keep the padded image at least as large as the filter.
    padding[1] = max(padding[1], fw - shape[3] * up[0] - padding[0])
    padding[3] = max(padding[3], fh - shape[2] * up[1] - padding[2])
    return shape, f, up, down, padding, bool(rng.randint(2)), float(rng.uniform(0.5, 2.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_upfirdn2d_forward_backward_double_backward(dtype, layout):
    rng = np.random.RandomState(1 + DTYPES.index(dtype) + 2 * LAYOUTS.index(layout))
    for case in range(CASES):
        shape, f, up, down, padding, flip, gain = _random_upfirdn_case(rng)
        what = f"case {case}: x {shape} f {list(f.shape)} up {up} down {down} pad {padding} flip {flip}"
        x = _layout(torch.randn(shape, device="cuda").to(dtype), layout).requires_grad_(True)
        x64 = x.detach().double().requires_grad_(True)
        kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        y = upfirdn2d(x, f, impl="cuda", **kwargs)
        y64 = upfirdn2d(x64, f.double(), impl="ref", **kwargs)
        assert y.dtype == dtype and y.shape == y64.shape, what
        if layout == "channels_last" and not x.is_contiguous():  # (tiny shapes can be both)
            assert y.is_contiguous(memory_format=torch.channels_last), what
        _close(y, y64, dtype, what + " forward")

        dy = torch.randn(y.shape, device="cuda").to(dtype).requires_grad_(True)
        dy64 = dy.detach().double().requires_grad_(True)
        (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
        (dx64,) = torch.autograd.grad(y64, x64, dy64, create_graph=True)
        _close(dx, dx64, dtype, what + " backward", scale_rtol=2)

        # Double backward: the gradient is linear in dy (and x); differentiate it with respect to dy.
        w = torch.randn(dx.shape, device="cuda").to(dtype)
        (ddy,) = torch.autograd.grad(dx, dy, w)
        (ddy64,) = torch.autograd.grad(dx64, dy64, w.double())
        _close(ddy, ddy64, dtype, what + " double backward", scale_rtol=2)


def test_upfirdn2d_gradcheck_float64_on_cuda():
    f = setup_filter([1, 3, 3, 1], device="cuda")
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    for up, down, pad in [(2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]), ((3, 1), (1, 2), [0, 2, -1, 3])]:
        fn = lambda t: upfirdn2d(t, f, up=up, down=down, padding=pad, impl="cuda")  # noqa: E731,B023
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


# ---------------------------------------------------------------------------------------------------
# bias_act


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bias_act_forward_backward_double_backward(act, dtype, layout):
    rng = np.random.RandomState(zlib.crc32(f"{act} {dtype} {layout}".encode()))
    for case in range(CASES // 2):
        shape = (int(rng.randint(1, 5)), int(rng.randint(1, 9)), int(rng.randint(1, 7)), int(rng.randint(1, 7)))
        dim = 1 if layout == "channels_last" else int(rng.randint(0, 4))
        use_bias = case % 3 != 2
        clamp = None if case % 2 else float(rng.uniform(0.3, 2.0))
        gain = None if case % 4 == 0 else float(rng.uniform(0.5, 2.0))
        alpha = None if case % 3 else float(rng.uniform(0.05, 0.5))
        what = f"{act} case {case}: x {shape} dim {dim} bias {use_bias} clamp {clamp} gain {gain} alpha {alpha}"
        x = _layout((torch.randn(shape, device="cuda") * 2).to(dtype), layout).requires_grad_(True)
        b = (torch.randn(shape[dim], device="cuda") if use_bias else torch.zeros(0)).to(dtype)
        b = b.requires_grad_(True) if use_bias else None
        x64 = x.detach().double().requires_grad_(True)
        b64 = b.detach().double().requires_grad_(True) if use_bias else None
        kwargs = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        y = bias_act(x, b, impl="cuda", **kwargs)
        y64 = bias_act(x64, b64, impl="ref", **kwargs)
        assert y.dtype == dtype and y.stride() == x.stride(), what
        _close(y, y64, dtype, what + " forward")

        inputs, inputs64 = ([x, b], [x64, b64]) if use_bias else ([x], [x64])
        dy = torch.randn(shape, device="cuda").to(dtype).requires_grad_(True)
        dy64 = dy.detach().double().requires_grad_(True)
        grads = torch.autograd.grad(y, inputs, dy, create_graph=True)
        grads64 = torch.autograd.grad(y64, inputs64, dy64, create_graph=True)
        for name, g, g64 in zip(["dx", "db"], grads, grads64):
            _close(g, g64, dtype, f"{what} backward {name}", scale_rtol=8 if name == "db" else 2)

        # Double backward (what R1 and path-length regularization do): differentiate <dx, w> with
        # respect to x, b and dy.
        w = torch.randn(shape, device="cuda").to(dtype)
        second = torch.autograd.grad((grads[0] * w).sum(), inputs + [dy], allow_unused=True)
        second64 = torch.autograd.grad((grads64[0] * w.double()).sum(), inputs64 + [dy64], allow_unused=True)
        names = (["x", "b"] if use_bias else ["x"]) + ["dy"]
        for name, g, g64 in zip(names, second, second64):
            if g64 is None:
                assert g is None or float(g.abs().max()) == 0, f"{what}: d/d{name} should vanish"
                continue
            g = torch.zeros_like(g64) if g is None else g
            _close(g, g64, dtype, f"{what} double backward d/d{name}", scale_rtol=8)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_gradcheck_float64_on_cuda(act):
    x = torch.randn(3, 4, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda t, bb: bias_act(t, bb, dim=1, act=act, gain=1.3, clamp=2.5, impl="cuda")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_non_dense_inputs_are_handled():
    x = torch.randn(2, 6, 8, 8, device="cuda")[:, ::2, :, 1:]  # strided view
    b = torch.randn(3, device="cuda")
    torch.testing.assert_close(bias_act(x, b, act="lrelu", impl="cuda"), bias_act(x, b, act="lrelu", impl="ref"))
    f = setup_filter([1, 3, 3, 1], device="cuda")
    torch.testing.assert_close(upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl="cuda"),
                               upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl="ref"), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Dispatch and whole networks


def test_auto_dispatches_cuda_tensors_to_the_kernels():
    assert ops.resolve_impl("auto", torch.zeros(1, device="cuda")) == "cuda"
    assert ops.resolve_impl("auto", torch.zeros(1)) == "ref"
    assert ops.resolve_impl("ref", torch.zeros(1, device="cuda")) == "ref"


def _tiny_networks(num_fp16_res: int):
    from gancli.families.stylegan2.nets import Discriminator, Generator

    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=num_fp16_res, conv_clamp=256))
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=1024, channel_max=64,
                      num_fp16_res=num_fp16_res, conv_clamp=256)
    return G.cuda(), D.cuda()


@pytest.mark.parametrize("num_fp16_res, tol", [(0, 1e-3), (2, 5e-2)])
def test_generator_and_r1_match_between_cuda_and_reference(num_fp16_res, tol):
    """The same networks with ops 'cuda' and 'ref': images, logits, the R1 penalty (double backward
    through every op) and its parameter gradients agree (float32 tightly; mixed precision loosely, as
    float16 rounds differently along the two paths)."""
    G, D = _tiny_networks(num_fp16_res)
    z = torch.randn(4, 32, device="cuda")
    results = {}
    for impl in ("cuda", "ref"):
        ops.set_impl(impl)
        img = G(z, None, noise_mode="const")
        real = img.detach().requires_grad_(True)
        logits = D(real, None)
        (r1_grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = r1_grad.square().sum()
        D.zero_grad(set_to_none=True)
        penalty.backward()
        results[impl] = (img.detach(), logits.detach(), penalty.detach(),
                         torch.cat([p.grad.flatten() for p in D.parameters() if p.grad is not None]))
    ops.set_impl("auto")
    for name, got, expected in zip(["image", "logits", "R1", "R1 grads"], results["cuda"], results["ref"]):
        scale = float(expected.abs().max())
        torch.testing.assert_close(got.float(), expected.float(), rtol=tol, atol=tol * max(scale, 1e-3),
                                   msg=lambda m, n=name: f"{n}: {m}")
