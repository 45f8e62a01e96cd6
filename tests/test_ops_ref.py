"""Reference ops (gancli.ops) against direct float64 formulas, plus first and second gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gancli import ops
from gancli.errors import UserError
from gancli.ops import bias_act, conv2d_resample, downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

# ---------------------------------------------------------------------------------------------------
# Direct formulas (numpy, float64)


def naive_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """upfirdn2d straight from its definition: zero insertion, pad/crop, 'valid' convolution, decimation."""
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    upx, upy = up
    downx, downy = down
    x0, x1, y0, y1 = pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * upy, w * upx))
    u[:, :, ::upy, ::upx] = x
    p = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    p = p[:, :, max(-y0, 0) : p.shape[2] - max(-y1, 0), max(-x0, 0) : p.shape[3] - max(-x1, 0)]
    fh, fw = f.shape
    oh, ow = p.shape[2] - fh + 1, p.shape[3] - fw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = p[:, :, i : i + fh, j : j + fw]
            kernel = f if flip_filter else f[::-1, ::-1]  # convolution = correlation with the flipped filter
            out[:, :, i, j] = (window * kernel).sum(axis=(2, 3)) * gain
    return out[:, :, ::downy, ::downx]


def naive_conv2d(x, w, pad=(0, 0, 0, 0), stride=1, groups=1, flip_weight=True):
    """Grouped 2-D correlation (or convolution) with explicit loops over output pixels."""
    x = np.pad(x, ((0, 0), (0, 0), (pad[2], pad[3]), (pad[0], pad[1])))
    n, c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    if not flip_weight:
        w = w[:, :, ::-1, ::-1]
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xs = x[:, g * ig : (g + 1) * ig]
        ws = w[g * og : (g + 1) * og]
        for i in range(oh):
            for j in range(ow):
                win = xs[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                out[:, g * og : (g + 1) * og, i, j] = np.einsum("nikl,oikl->no", win, ws)
    return out


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.fixture(autouse=True)
def _restore_impl():
    yield
    ops.set_impl("auto")


# ---------------------------------------------------------------------------------------------------
# setup_filter


def test_setup_filter_normalises_and_expands_short_filters():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.allclose(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    assert math.isclose(float(f.sum()), 1.0, rel_tol=1e-6)
    long = setup_filter(list(range(1, 9)))
    assert long.shape == (8,) and math.isclose(float(long.sum()), 1.0, rel_tol=1e-6)
    assert setup_filter([1, 2], separable=True).shape == (2,)
    assert torch.equal(setup_filter(None), torch.ones(1, 1))
    g = setup_filter([[1, 2], [3, 4]], normalize=False, flip_filter=True, gain=4)
    assert torch.equal(g, torch.tensor([[16.0, 12.0], [8.0, 4.0]]))
    assert torch.allclose(setup_filter([1, 2, 3, 4, 5, 6, 7, 8], gain=4).sum(), torch.tensor(2.0))


# ---------------------------------------------------------------------------------------------------
# upfirdn2d


UPFIRDN_CASES = [
    # (filter, up, down, padding, flip_filter, gain)
    ([1, 3, 3, 1], 1, 1, 0, False, 1),
    ([1, 3, 3, 1], 2, 1, [2, 1, 2, 1], False, 4),
    ([1, 3, 3, 1], 1, 2, [1, 1, 1, 1], False, 1),
    ([1, 3, 3, 1], 2, 2, [1, 2, 0, 3], False, 1),
    ([1, 3, 3, 1], 3, 2, [1, -1, 2, 0], True, 2.5),
    ([[1, 2, 0], [-1, 3, 5]], 1, 1, [-1, 2, 0, 3], False, 1),  # asymmetric 2-D filter, crop
    ([[1, 2, 0], [-1, 3, 5]], [2, 3], [1, 2], [3, 0, 1, 2], False, 1),
    ([[1, 2, 0], [-1, 3, 5]], [3, 1], [2, 1], [0, 2, -1, 1], True, 1),
    ([1, 2, 3, 4, 5, 6, 7, 8], 2, 1, [4, 3, 4, 3], False, 4),  # separable 1-D filter
    ([1, 2, 3, 4, 5, 6, 7, 8], 1, 3, [2, 5, 3, 4], True, 1),
    (None, 2, 1, [0, 1, 1, 0], False, 1),  # identity: pure zero insertion
    (None, 1, 2, [-1, 0, 0, -1], False, 3),
    # A crop larger than the image eats into the padding on the other side (pad, then crop).
    ([1, 3, 3, 1], 1, 1, [-7, 9, 0, 0], False, 1),
    ([1, 3, 3, 1], 2, 1, [-14, 15, 1, 1], False, 4),
    ([[1, 2, 0], [-1, 3, 5]], [1, 3], [2, 1], [1, 1, 12, -17], True, 1),
]


@pytest.mark.parametrize("taps, up, down, padding, flip_filter, gain", UPFIRDN_CASES)
def test_upfirdn2d_matches_definition(taps, up, down, padding, flip_filter, gain):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 5, 6)
    separable = taps is not None and np.asarray(taps).ndim == 1 and len(taps) >= 8
    f = setup_filter(taps, normalize=taps is not None and np.asarray(taps).ndim == 1, separable=separable)
    f = f.double() if taps is not None else None
    y = upfirdn2d(_t(x), f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    pad = padding if isinstance(padding, list) else [padding] * 4
    ref = naive_upfirdn2d(
        x,
        f.numpy() if f is not None else [[1.0]],
        pair(up),
        pair(down),
        pad,
        flip_filter=flip_filter,
        gain=gain,
    )
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_float32_and_channels_last_agree_with_float64():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 5, 7, 7)
    f = setup_filter([1, 3, 3, 1])
    ref = naive_upfirdn2d(x, f.double().numpy(), (2, 2), (1, 1), (2, 1, 2, 1), gain=4)
    xt = _t(x).float().contiguous(memory_format=torch.channels_last)
    y = upfirdn2d(xt, f, up=2, padding=[2, 1, 2, 1], gain=4)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_resampling_helpers_shapes_and_dc_gain():
    f = setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    fd = f.double()
    assert filter2d(x, fd).shape == (1, 2, 8, 8)
    up = upsample2d(x, fd)
    down = downsample2d(x, fd)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # Away from the zero-padded border, a constant image stays constant.
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones(1, dtype=torch.float64)) and torch.allclose(
        down[:, :, 1:-1, 1:-1], torch.ones(1, dtype=torch.float64)
    )
    assert torch.allclose(filter2d(x, fd)[:, :, 2:-2, 2:-2], torch.ones(1, dtype=torch.float64))
    assert upsample2d(x, fd, up=[2, 3]).shape == (1, 2, 24, 16)
    assert downsample2d(x, fd, down=4).shape == (1, 2, 2, 2)
    # Helpers equal upfirdn2d with the documented paddings.
    rng = np.random.RandomState(2)
    z = _t(rng.randn(1, 2, 6, 6))
    assert torch.allclose(upsample2d(z, fd), upfirdn2d(z, fd, up=2, padding=[2, 1, 2, 1], gain=4))
    assert torch.allclose(downsample2d(z, fd), upfirdn2d(z, fd, down=2, padding=1))
    assert torch.allclose(filter2d(z, fd), upfirdn2d(z, fd, padding=[2, 1, 2, 1]))


@pytest.mark.parametrize(
    "up, down, padding", [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, 1), (2, 2, [1, 2, 2, 1])]
)
def test_upfirdn2d_gradcheck_and_gradgradcheck(up, down, padding):
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    fn = lambda t: upfirdn2d(t, f, up=up, down=down, padding=padding, gain=2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ---------------------------------------------------------------------------------------------------
# bias_act

CLOSED_FORMS = {
    "linear": (lambda x, a: x, 1.0),
    "relu": (lambda x, a: np.maximum(x, 0), math.sqrt(2)),
    "lrelu": (lambda x, a: np.where(x >= 0, x, a * x), math.sqrt(2)),
    "tanh": (lambda x, a: np.tanh(x), 1.0),
    "sigmoid": (lambda x, a: 1 / (1 + np.exp(-x)), 1.0),
    "elu": (lambda x, a: np.where(x >= 0, x, np.expm1(x)), 1.0),
    "selu": (lambda x, a: 1.0507009873554805 * np.where(x >= 0, x, 1.6732632423543772 * np.expm1(x)), 1.0),
    "softplus": (lambda x, a: np.log1p(np.exp(x)), 1.0),
    "swish": (lambda x, a: x / (1 + np.exp(-x)), math.sqrt(2)),
}


def test_activation_table_is_complete():
    assert set(ops.ACTIVATIONS) == set(CLOSED_FORMS)
    assert ops.ACTIVATIONS["lrelu"].alpha == 0.2


@pytest.mark.parametrize("act", sorted(CLOSED_FORMS))
def test_bias_act_matches_closed_form_with_default_gain(act):
    func, default_gain = CLOSED_FORMS[act]
    rng = np.random.RandomState(3)
    x, b = rng.randn(3, 4, 5) * 2, rng.randn(4)
    xt = _t(x)
    y = bias_act(xt, _t(b), act=act)
    alpha = 0.2 if act == "lrelu" else 0.0
    np.testing.assert_allclose(
        y.numpy(), func(x + b[None, :, None], alpha) * default_gain, rtol=1e-12, atol=1e-12
    )
    assert torch.equal(xt, _t(x))  # input untouched


def test_bias_act_alpha_gain_clamp_dim():
    rng = np.random.RandomState(4)
    x, b = rng.randn(2, 3, 6) * 3, rng.randn(6)
    y = bias_act(_t(x), _t(b), dim=2, act="lrelu", alpha=0.1, gain=2.0, clamp=1.5)
    z = x + b[None, None, :]
    ref = np.clip(np.where(z >= 0, z, 0.1 * z) * 2.0, -1.5, 1.5)  # clamp after gain
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert np.abs(y.numpy()).max() == 1.5
    y0 = bias_act(_t(x), None, act="linear", clamp=0.5)
    np.testing.assert_allclose(y0.numpy(), np.clip(x, -0.5, 0.5))
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(_t(x), act="gelu-ish")
    with pytest.raises(ValueError, match="bias"):
        bias_act(_t(x), _t(b), dim=1)


@pytest.mark.parametrize("act", sorted(CLOSED_FORMS))
def test_bias_act_gradcheck_and_gradgradcheck(act):
    torch.manual_seed(0)
    # Keep inputs away from the kinks of relu/lrelu/elu/selu so finite differences are valid.
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.3 * x.sign()).requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fn = lambda t, bb: bias_act(t, bb, act=act, clamp=2.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ---------------------------------------------------------------------------------------------------
# conv2d_resample: the fast orderings against the definition (upsample, convolve, downsample)

CONV_CASES = [
    # (kernel, up, down, padding, groups, flip_weight)
    (3, 1, 1, 1, 1, True),
    (3, 1, 1, [0, 2, 1, 0], 1, False),
    (3, 2, 1, 1, 1, False),  # StyleGAN2 synthesis conv0
    (3, 2, 1, 1, 2, True),
    (3, 1, 2, 1, 1, True),  # StyleGAN2 discriminator conv1
    (3, 1, 2, 1, 2, False),
    (1, 1, 2, 0, 1, True),  # discriminator skip
    (1, 2, 1, 0, 1, False),  # generator resnet skip
    (3, 2, 2, 1, 1, True),
    (1, 2, 2, 0, 2, True),
]


def definition_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    pad = padding if isinstance(padding, list) else [padding] * 4
    fw = f.shape[-1]
    x0, x1, y0, y1 = pad
    if up > 1:
        x0, x1 = x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2
        y0, y1 = y0 + (fw + up - 1) // 2, y1 + (fw - up) // 2
    if down > 1:
        x0, x1 = x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2
        y0, y1 = y0 + (fw - down + 1) // 2, y1 + (fw - down) // 2
    if up > 1:
        z = naive_upfirdn2d(x, f, (up, up), (1, 1), (x0, x1, y0, y1), gain=up * up)
    else:
        z = naive_upfirdn2d(x, [[1.0]], (1, 1), (1, 1), (x0, x1, y0, y1))
    z = naive_conv2d(z, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        z = naive_upfirdn2d(z, f, (1, 1), (down, down))
    return z


@pytest.mark.parametrize("k, up, down, padding, groups, flip_weight", CONV_CASES)
def test_conv2d_resample_matches_definition(k, up, down, padding, groups, flip_weight):
    rng = np.random.RandomState(5)
    x = rng.randn(2, 4, 6, 6)
    w = rng.randn(6, 4 // groups, k, k)
    f = setup_filter([1, 3, 3, 1]).double()
    y = conv2d_resample(
        _t(x), _t(w), f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight
    )
    ref = definition_conv2d_resample(x, w, f.numpy(), up, down, padding, groups, flip_weight)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k, up, down", [(3, 2, 1), (3, 1, 2), (1, 1, 2), (3, 1, 1)])
def test_conv2d_resample_double_backward(k, up, down):
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, k, k, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: conv2d_resample(a, b, f, up=up, down=down, padding=k // 2, flip_weight=(up == 1))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


# ---------------------------------------------------------------------------------------------------
# Implementation choice


def test_impl_choice():
    assert ops.get_impl() == "auto"
    ops.set_impl("ref")
    assert ops.get_impl() == "ref"
    x = torch.randn(1, 1, 4, 4)
    assert upfirdn2d(x, setup_filter([1, 1])).shape == (1, 1, 3, 3)
    with pytest.raises(UserError, match="'auto'"):
        ops.set_impl("fast")
    assert ops.get_impl() == "ref"  # a refused choice changes nothing
    # CPU tensors always run the reference, whatever the choice: nothing is built, nothing fails.
    ops.set_impl("cuda")
    assert ops.resolve_impl(None, x) == "ref" and ops.resolve_impl("auto", x) == "ref"
    assert torch.equal(bias_act(x, act="lrelu", impl="cuda"), bias_act(x, act="lrelu", impl="ref"))
    assert torch.equal(upfirdn2d(x, setup_filter([1, 1]), impl="cuda"), upfirdn2d(x, setup_filter([1, 1]), impl="ref"))
    assert bias_act(x, act="relu", impl="ref").shape == x.shape
