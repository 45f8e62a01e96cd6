"""Low-level ops used by the networks: FIR resampling, fused bias + activation, resampling convolution.

Every op has a reference implementation in plain, differentiable PyTorch (runs on any device, supports
gradients of any order, and is the test oracle). A later release adds CUDA twins; the choice between
them is made here, once per process:

    from gancli import ops
    ops.set_impl("ref")      # 'auto' (default), 'cuda' or 'ref'
    ops.get_impl()           # -> 'ref'

Each op also takes `impl=None|'auto'|'cuda'|'ref'` per call; `None` means "the process-wide choice".
`resolve_impl()` is the single dispatch point the ops consult. Nothing is compiled at import time.
"""

from __future__ import annotations

from gancli.errors import UserError

IMPLS = ("auto", "cuda", "ref")

_impl = "auto"


def _check_name(name: str) -> str:
    if name not in IMPLS:
        allowed = ", ".join(repr(n) for n in IMPLS)
        raise UserError(f"ops implementation {name!r} is not known; allowed: {allowed}")
    if name == "cuda":
        raise UserError(
            "ops implementation 'cuda': CUDA kernels are not built in this version of gancli; "
            "use 'auto' or 'ref' (the PyTorch reference ops run on every device)"
        )
    return name


def set_impl(name: str) -> None:
    """Choose the implementation all ops use by default in this process.

    Args:
        name: 'auto' (fastest available; today the PyTorch reference), 'ref' (PyTorch reference,
              always available) or 'cuda' (custom CUDA kernels; not built in this version, so it
              raises `UserError`).
    """
    global _impl
    _impl = _check_name(name)


def get_impl() -> str:
    """The process-wide implementation choice set by `set_impl` ('auto' unless changed)."""
    return _impl


def resolve_impl(impl: str | None = None) -> str:
    """Which implementation an op call actually runs.

    Args:
        impl: the per-call choice, or None for the process-wide one.

    Returns:
        'ref' today. When CUDA twins exist, 'auto' will resolve to 'cuda' for CUDA tensors whose
        kernels built, and this is the one place that decides it.
    """
    name = _impl if impl is None else impl
    _check_name(name)
    return "ref"


# The ops themselves (imported after the dispatch functions they use).
from gancli.ops.bias_act import ACTIVATIONS, bias_act  # noqa: E402
from gancli.ops.conv2d_resample import conv2d_resample  # noqa: E402
from gancli.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d  # noqa: E402

__all__ = [
    "IMPLS",
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "get_impl",
    "resolve_impl",
    "set_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
