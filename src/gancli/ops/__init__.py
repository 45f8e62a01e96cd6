"""Low-level ops used by the networks: FIR resampling, fused bias + activation, resampling convolution.

Every op exists twice: a reference in plain, differentiable PyTorch (runs on any device, supports
gradients of any order, and is the test oracle and the CPU path) and a CUDA kernel (`ops/cuda/`),
compiled with ninja the first time a CUDA tensor reaches an op (never at import; see `gancli.ops.build`
for the cache and the lock). The choice between them is made here, once per process:

    from gancli import ops
    ops.set_impl("ref")      # 'auto' (default), 'cuda' or 'ref'
    ops.get_impl()           # -> 'ref'

- 'ref':  always the PyTorch reference; nothing is ever compiled.
- 'auto': CUDA tensors use the CUDA kernels when they build; if the build fails, one loud warning
          (`OpsBuildWarning`, with the compiler's message and the build directory) and the reference
          from then on.
- 'cuda': CUDA tensors use the CUDA kernels; a failed build is a `UserError` with the same facts.
CPU tensors always use the reference. Each op also takes `impl=None|'auto'|'cuda'|'ref'` per call;
`None` means the process-wide choice. `resolve_impl()` is the single dispatch point the ops consult.
"""

from gancli.ops.bias_act import ACTIVATIONS, bias_act
from gancli.ops.conv2d_resample import conv2d_resample
from gancli.ops.dispatch import (  # noqa: F401  (the public dispatch API)
    CUDA_SOURCE_DIR,
    IMPLS,
    OpsBuildWarning,
    cuda_extension,
    get_impl,
    kernels,
    reset_build_state,
    resolve_impl,
    set_impl,
)
from gancli.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "IMPLS",
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "OpsBuildWarning",
    "get_impl",
    "kernels",
    "resolve_impl",
    "set_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
