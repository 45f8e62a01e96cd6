"""Fused bias + activation + gain + clamp (`bias_act`).

`y = clamp(act(x + b, alpha) * gain, -clamp, clamp)`, the epilogue of every StyleGAN layer. Each
activation has a default gain chosen to keep the signal magnitude (He et al.): sqrt(2) for the
ReLU family (ReLU, leaky ReLU, swish), 1 for the others. The clamp comes after the gain; it bounds
activations so that float16 layers cannot overflow, and is applied on every device so that float32 runs
give the same numbers as mixed-precision ones.

The reference implementation is plain PyTorch, so gradients of any order work. The CUDA twin
(`ops/cuda/bias_act.cu`) is one elementwise kernel that computes the value or the first or second
derivative of the whole expression; its autograd wiring below gives first and second gradients (what
R1 and path-length regularization need). A third derivative through the CUDA path is refused with a
clear error (the reference supports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gancli.ops.dispatch import cuda_extension, resolve_impl


@dataclass(frozen=True)
class Activation:
    """An activation function with its default shape parameter and gain.

    Attributes:
        func:        `func(x, alpha) -> y`.
        alpha:       Default shape parameter (the negative slope of leaky ReLU; unused by the others).
        gain:        Default output gain.
        homogeneous: `func(g * x) == g * func(x)` for every g > 0 (linear, relu, lrelu). Layers use it
                     to fold an output gain into their (much smaller) weights and bias.
    """

    func: Callable[[torch.Tensor, float], torch.Tensor]
    alpha: float = 0.0
    gain: float = 1.0
    homogeneous: bool = False


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, homogeneous=True),
    "relu": Activation(lambda x, alpha: F.relu(x), gain=math.sqrt(2), homogeneous=True),
    "lrelu": Activation(
        lambda x, alpha: F.leaky_relu(x, alpha), alpha=0.2, gain=math.sqrt(2), homogeneous=True
    ),
    "tanh": Activation(lambda x, alpha: torch.tanh(x)),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x)),
    "elu": Activation(lambda x, alpha: F.elu(x)),
    "selu": Activation(lambda x, alpha: F.selu(x)),
    "softplus": Activation(lambda x, alpha: F.softplus(x)),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, gain=math.sqrt(2)),
}


# The CUDA kernel's activation codes (enum ActivationCode in ops/cuda/ops.h).
ACTIVATION_CODES = {name: code for code, name in enumerate(
    ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])}


def activation_spec(act: str) -> Activation:
    """The `Activation` named `act`; a clear error for an unknown name."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}") from None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add a bias, apply an activation, scale by a gain and clamp, in that order.

    Args:
        x:     Activations of any shape.
        b:     Bias, a 1-D tensor with `x.shape[dim]` elements, or None.
        dim:   The axis of `x` that `b` runs along (ignored without `b`).
        act:   Activation name: 'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu',
               'softplus' or 'swish' (see `ACTIVATIONS`).
        alpha: Shape parameter (leaky ReLU slope), None = the activation's default (0.2 for lrelu).
        gain:  Output scale, None = the activation's default (sqrt(2) for relu/lrelu/swish, else 1).
        clamp: Clamp the result to `[-clamp, clamp]` after the gain; None = no clamping.
        impl:  'auto', 'cuda', 'ref', or None for the process-wide choice (`gancli.ops.set_impl`).

    Returns:
        A tensor shaped and typed like `x`; `x` itself is never modified (it is returned as is when
        there is nothing to do: no bias, 'linear', gain 1, no clamp).
    """
    spec = activation_spec(act)
    alpha = spec.alpha if alpha is None else float(alpha)
    gain = spec.gain if gain is None else float(gain)
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {list(b.shape)} does not match axis {dim} of {list(x.shape)}")
    use = resolve_impl(impl, x)
    if b is None and act == "linear" and gain == 1 and clamp is None:
        return x
    if use == "cuda" and x.dtype in (torch.float16, torch.float32, torch.float64):
        return _bias_act_cuda(x, b, dim % x.ndim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, spec: Activation, alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    """Plain-PyTorch `bias_act` (the reference implementation)."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# --------------------------------------------------------------------------------------------------
# CUDA path


def _dense(t: torch.Tensor) -> torch.Tensor:
    """`t` itself if its memory is one dense block (contiguous or channels-last), else a contiguous copy."""
    if t.is_contiguous():
        return t
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t
    if t.ndim == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return t
    return t.contiguous()


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`t` with exactly the strides of the dense tensor `x` (the kernel indexes both alike)."""
    if t.stride() == x.stride() and t.dtype == x.dtype:
        return t
    return torch.empty_like(x).copy_(t)


def _bias_act_cuda(x, b, dim: int, act: str, alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    x = _dense(x)
    if b is not None:
        b = b.to(x.dtype).contiguous()
    params = (dim, ACTIVATION_CODES[act], float(alpha), float(gain), -1.0 if clamp is None else float(clamp))
    return _BiasActCuda.apply(x, b, params)


def _reduce_to_bias(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every axis but `dim` (the bias gradient)."""
    return t.sum([d for d in range(t.ndim) if d != dim])


class _BiasActCuda(torch.autograd.Function):
    """y = clamp(act(x + b) * gain); backward through `_BiasActDerivative` (order 1)."""

    @staticmethod
    def forward(ctx, x, b, params):
        dim, code, alpha, gain, clamp = params
        y = cuda_extension().load().bias_act(x, b, None, code, alpha, gain, clamp, 0, dim)
        ctx.save_for_backward(x, b)
        ctx.params = params
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dx = _BiasActDerivative.apply(_like(dy, x), x, b, 1, ctx.params)
            if b is not None and ctx.needs_input_grad[1]:
                db = _reduce_to_bias(dx, ctx.params[0])
        return dx, db, None


class _BiasActDerivative(torch.autograd.Function):
    """out = grad * d^order/dz [clamp(act(z) * gain)] at z = x + b (order 1 or 2), itself differentiable
    once more: d/dgrad is the same derivative, d/dx and d/db use the next order."""

    @staticmethod
    def forward(ctx, grad, x, b, order, params):
        dim, code, alpha, gain, clamp = params
        out = cuda_extension().load().bias_act(x, b, grad, code, alpha, gain, clamp, order, dim)
        ctx.save_for_backward(grad, x, b)
        ctx.order, ctx.params = order, params
        return out

    @staticmethod
    def backward(ctx, g):
        grad, x, b = ctx.saved_tensors
        g = _like(g, x)
        d_grad = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_grad = _BiasActDerivative.apply(g, x, b, ctx.order, ctx.params)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            if ctx.order >= 2:
                raise RuntimeError(
                    "bias_act: third-order gradients are not implemented by the CUDA kernel; use ops: ref "
                    "(impl='ref') for them")
            d_x = _BiasActDerivative.apply(g * grad, x, b, ctx.order + 1, ctx.params)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = _reduce_to_bias(d_x, ctx.params[0])
        return d_grad, d_x, d_b, None, None
