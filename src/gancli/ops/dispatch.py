"""Which implementation each op runs: the process-wide choice, the CUDA extension (built on first use)
and `resolve_impl`, the single dispatch point the ops consult (see `gancli.ops` for the rules)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

from gancli.errors import UserError

IMPLS = ("auto", "cuda", "ref")

_impl = "auto"
CUDA_SOURCE_DIR = Path(__file__).resolve().parent / "cuda"


class OpsBuildWarning(UserWarning):
    """The CUDA kernels did not build; the reference ops are used instead (ops: auto)."""


def _check_name(name: str) -> str:
    if name not in IMPLS:
        allowed = ", ".join(repr(n) for n in IMPLS)
        raise UserError(f"ops implementation {name!r} is not known; allowed: {allowed}")
    return name


def set_impl(name: str) -> None:
    """Choose the implementation all ops use by default in this process.

    Args:
        name: 'auto' (CUDA kernels for CUDA tensors when they build, else the reference), 'ref'
              (PyTorch reference, always available, never compiles) or 'cuda' (CUDA kernels for CUDA
              tensors; a failed build is an error). CPU tensors always run the reference.
    """
    global _impl
    _impl = _check_name(name)


def get_impl() -> str:
    """The process-wide implementation choice set by `set_impl` ('auto' unless changed)."""
    return _impl


# --------------------------------------------------------------------------------------------------
# The CUDA extension (built on first use)

_extension = None
_extension_lock = threading.Lock()
_warned = False
_failure: Exception | None = None


def cuda_extension():
    """The `Extension` describing the CUDA kernels (created on first call; nothing is built here)."""
    global _extension
    with _extension_lock:
        if _extension is None:
            from gancli.ops.build import Extension

            _extension = Extension(
                "gancli_cuda_ops",
                sources=[CUDA_SOURCE_DIR / "ops.cpp", CUDA_SOURCE_DIR / "bias_act.cu",
                         CUDA_SOURCE_DIR / "upfirdn2d.cu"],
                depends=[CUDA_SOURCE_DIR / name for name in
                         ("ops.h", "activation_codes.h", "kernel_math.cuh", "bias_act_kernel.cuh",
                                      "upfirdn2d_kernel.cuh")],
                cuda=True,
                extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3"],  # no fast math: the kernels must match the references
            )
        return _extension


def _failure_text(error) -> str:
    from gancli.ops.build import BuildError

    if isinstance(error, BuildError):
        return (f"the CUDA kernels did not build (build directory {error.build_dir}, compiler output in "
                f"{error.log_path}); compiler says: {' | '.join(error.summary(3).splitlines())}")
    return f"the CUDA kernels could not be loaded: {error}"


def kernels(required: bool):
    """The built CUDA module, or None when it cannot be had and `required` is False.

    The first attempt builds (or loads) the kernels. A failure is remembered for the rest of the
    process: under 'auto' it warns once (`OpsBuildWarning`) and every later call returns None at once;
    under 'cuda' it raises a `UserError` with the compiler's message and the build directory.
    """
    global _warned, _failure
    ext = _extension
    if ext is not None and ext.module is not None:  # the fast path of every op call
        return ext.module
    if _failure is None:
        import torch

        ext = cuda_extension()
        if torch.version.cuda is None:
            _failure = RuntimeError(f"this torch ({torch.__version__}) has no CUDA support")
        else:
            try:
                return ext.load()
            except Exception as e:  # BuildError, LockTimeout (names the lock), import error of the module
                _failure = e
    error = _failure
    if required:
        if isinstance(error, UserError):
            raise UserError(f"ops: cuda: {error}")
        raise UserError(f"ops: cuda: {_failure_text(error)}; fix the build (see `gancli doctor`) or use "
                        f"--ops auto (falls back to the reference ops) or --ops ref")
    if not _warned:
        _warned = True
        message = f"ops: auto: {_failure_text(error)}; falling back to the PyTorch reference ops (slower)"
        from gancli.ops.build import BuildError

        if isinstance(error, BuildError):
            message += f"\n--- compiler errors ---\n{error.summary()}\n--- full output: {error.log_path}"
        warnings.warn(message, OpsBuildWarning, stacklevel=3)
    return None


def resolve_impl(impl: str | None = None, x=None) -> str:
    """Which implementation an op call actually runs: 'cuda' or 'ref'.

    Args:
        impl: the per-call choice, or None for the process-wide one.
        x:    the op's input tensor. CPU tensors (and x=None) always get 'ref'; CUDA tensors get
              'cuda' under 'auto' when the kernels build (else 'ref' after one warning) and under
              'cuda' (else a `UserError`).

    This is the one place that decides; the first CUDA call here is what triggers the build.
    """
    name = _check_name(_impl if impl is None else impl)
    if name == "ref" or x is None or not getattr(x, "is_cuda", False):
        return "ref"
    return "cuda" if kernels(required=(name == "cuda")) is not None else "ref"


def reset_build_state() -> None:
    """Forget the extension and the warning (tests; also after changing $GANCLI_CACHE)."""
    global _extension, _warned, _failure
    with _extension_lock:
        _extension = None
        _warned = False
        _failure = None
