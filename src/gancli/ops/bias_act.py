"""Fused bias + activation + gain + clamp (`bias_act`).

`y = clamp(act(x + b, alpha) * gain, -clamp, clamp)`, the epilogue of every StyleGAN layer. Each
activation has a default gain chosen to keep the signal magnitude (He et al.): sqrt(2) for the
ReLU family (ReLU, leaky ReLU, swish), 1 for the others. The clamp comes after the gain; it bounds
activations so that float16 layers cannot overflow, and is applied on every device so that float32 runs
give the same numbers as mixed-precision ones.

The reference implementation is plain PyTorch, so gradients of any order work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gancli.ops import resolve_impl


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
    resolve_impl(impl)
    alpha = spec.alpha if alpha is None else float(alpha)
    gain = spec.gain if gain is None else float(gain)
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")

    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {list(b.shape)} does not match axis {dim} of {list(x.shape)}")
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
