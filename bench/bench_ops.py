"""The low-level ops: CUDA kernels vs the reference vs the best pure-PyTorch formulation; prints JSON.

    python bench/bench_ops.py [--device cuda|cpu] [--seconds 2] [--configs A] [--threads 2]

Measured (each entry says `skipped` with the reason where it cannot run):
- `build`: first build of the CUDA kernels into an empty cache, and the cached start-up of a new
  process (both in fresh subprocesses, so nothing is shared with this one). GPU only.
- `ops`: per op and typical StyleGAN2 shape, milliseconds for forward and forward+backward with the
  CUDA kernel, the reference (`impl='ref'`), and every pure-PyTorch formulation we know of; `best_pytorch`
  names the fastest of those. On the CPU only the PyTorch formulations run.
- `generator`: bench_nets' G forward and G+D forward+backward img/s with `ops: cuda` and `ops: ref`.
- `training`: full training steps (bench/run.py's `train_throughput`) with each. GPU only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

from gancli import ops  # noqa: E402
from gancli.ops.bias_act import _bias_act_ref, activation_spec  # noqa: E402
from gancli.ops.upfirdn2d import _upfirdn2d_torch, setup_filter  # noqa: E402


def cuda_skip_reason() -> str | None:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build: the CUDA kernels cannot be built or run"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


# --------------------------------------------------------------------------------------------------
# Pure-PyTorch alternatives (the reference is one of them)


def upfirdn2d_zero_stuffing(x, f, up, down, padding, gain):
    """The textbook formulation: zero-insert by reshaping, pad, one depthwise convolution, slice."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(padding))
    k = (f * gain).flip([0, 1]).to(x.dtype)
    x = F.conv2d(x, k.reshape(1, 1, *k.shape).expand(c, 1, *k.shape), groups=c)
    return x[:, :, ::down, ::down]


def upfirdn2d_separable(x, f1, up, down, padding, gain):
    """Two 1-D depthwise passes (the filter [1,3,3,1] is separable), each with the reference op."""
    px0, px1, py0, py1 = padding
    x = _upfirdn2d_torch(x, f1.reshape(1, -1), (up, 1), (down, 1), (px0, px1, 0, 0), False, 1.0)
    return _upfirdn2d_torch(x, f1.reshape(-1, 1), (1, up), (1, down), (0, 0, py0, py1), False, gain)


def _compiled(fn):
    try:
        return torch.compile(fn, dynamic=False)
    except Exception:  # noqa: BLE001 - no compiler backend here
        return None


# --------------------------------------------------------------------------------------------------
# Timing


def _time(fn, x, seconds: float, backward: bool) -> float:
    """Median milliseconds of fn(x) (+ backward of sum) over repeated runs after warm-up."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def once():
        if backward:
            x.grad = None
            y = fn(x)
            y.backward(torch.ones_like(y))
        else:
            with torch.no_grad():
                fn(x)

    for _ in range(2):
        once()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 200):
        t0 = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 4)


def op_cases(device: str):
    """(name, shape, candidates) with candidates {impl: fn(x)}; 'cuda' only where it can run."""
    big = device == "cuda"
    f = setup_filter([1, 3, 3, 1], device=device)  # 4x4, as the networks store it
    f1 = setup_filter([1, 3, 3, 1], device=device, separable=True)
    lrelu = activation_spec("lrelu")
    n, ch, res = (8, 256, 64) if big else (2, 32, 32)
    cases = [
        ("upsample2d_2x_4tap", (n, ch, res, res), {
            "cuda": lambda x: ops.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4, impl="cuda"),
            "reference": lambda x: _upfirdn2d_torch(x, f, 2, 1, (2, 1, 2, 1), False, 4.0),
            "zero_stuffing": lambda x: upfirdn2d_zero_stuffing(x, f, 2, 1, (2, 1, 2, 1), 4.0),
            "separable": lambda x: upfirdn2d_separable(x, f1, 2, 1, (2, 1, 2, 1), 4.0),
        }),
        ("downsample2d_2x_4tap", (n, ch, 2 * res, 2 * res), {
            "cuda": lambda x: ops.upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1], impl="cuda"),
            "reference": lambda x: _upfirdn2d_torch(x, f, 1, 2, (1, 1, 1, 1), False, 1.0),
            "zero_stuffing": lambda x: upfirdn2d_zero_stuffing(x, f, 1, 2, (1, 1, 1, 1), 1.0),
            "separable": lambda x: upfirdn2d_separable(x, f1, 1, 2, (1, 1, 1, 1), 1.0),
        }),
        ("bias_act_lrelu_clamp", (n, ch, 2 * res, 2 * res), {
            "cuda": lambda x: ops.bias_act(x, bias, act="lrelu", clamp=256, impl="cuda"),
            "reference": lambda x: _bias_act_ref(x, bias, 1, lrelu, 0.2, lrelu.gain, 256.0),
        }),
    ]
    bias = torch.randn(ch, device=device)
    if big:  # torch.compile of the reference: the best pure-PyTorch formulation on a GPU, when it works
        compiled = _compiled(lambda x: _bias_act_ref(x, bias, 1, lrelu, 0.2, lrelu.gain, 256.0))
        if compiled is not None:
            cases[2][2]["torch_compile"] = compiled
    return cases


def bench_ops(device: str, seconds: float) -> dict:
    skip = cuda_skip_reason() if device == "cuda" else "CPU run: the CUDA kernels need a GPU"
    results = {}
    torch.manual_seed(0)
    for name, shape, candidates in op_cases(device):
        entry: dict = {"shape": list(shape), "dtype": "float32", "ms": {}}
        x = torch.randn(shape, device=device).requires_grad_(True)
        with torch.no_grad():
            expected = candidates["reference"](x)
        for impl, fn in candidates.items():
            if impl == "cuda" and skip:
                entry["ms"]["cuda"] = {"skipped": skip}
                continue
            try:
                with torch.no_grad():
                    error = float((fn(x) - expected).abs().max())
                entry["ms"][impl] = {"forward": _time(fn, x, seconds, False),
                                     "forward_backward": _time(fn, x, seconds, True),
                                     "max_abs_diff_vs_reference": error}
            except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a working backend
                entry["ms"][impl] = {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        timed = {k: v for k, v in entry["ms"].items() if k != "cuda" and "forward_backward" in v}
        if timed:
            best = min(timed, key=lambda k: timed[k]["forward_backward"])
            entry["best_pytorch"] = best
            cuda = entry["ms"].get("cuda", {})
            if "forward_backward" in cuda:
                entry["speedup_cuda_vs_reference"] = round(
                    timed["reference"]["forward_backward"] / cuda["forward_backward"], 2)
                entry["speedup_cuda_vs_best_pytorch"] = round(
                    timed[best]["forward_backward"] / cuda["forward_backward"], 2)
        results[name] = entry
    return results


# --------------------------------------------------------------------------------------------------
# Build time, whole networks, training


BUILD_PROBE = (
    "import sys, time; sys.path.insert(0, {src!r}); from gancli import ops; t = time.perf_counter(); "
    "ops.kernels(required=True); print(time.perf_counter() - t)"
)


def bench_build() -> dict:
    skip = cuda_skip_reason()
    if skip:
        return {"skipped": skip}
    with tempfile.TemporaryDirectory(prefix="gancli-ops-bench-") as cache:
        env = {**os.environ, "GANCLI_OPS_CACHE": cache}
        times = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", BUILD_PROBE.format(src=str(SRC))], env=env,
                                 capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                return {"skipped": f"the build failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}"}
            times.append(float(out.stdout.strip().splitlines()[-1]))
    return {"first_build_s": round(times[0], 2), "cached_startup_s": round(times[1], 3),
            "note": "seconds inside ops.kernels() of a fresh process (imports not included)"}


def _cuda_vs_ref(device: str, configs: list[str], measure) -> dict:
    """`measure(name)` (a dict of figures) with ops 'cuda' then 'ref' per config, and cuda/ref of each img/s figure."""
    skip = cuda_skip_reason() if device == "cuda" else "CPU run: the CUDA kernels need a GPU"
    if skip:
        return {"skipped": skip}
    out: dict = {}
    for name in configs:
        for impl in ("cuda", "ref"):
            ops.set_impl(impl)
            out[f"{name}/{impl}"] = measure(name)
        cuda, ref = out[f"{name}/cuda"], out[f"{name}/ref"]
        out[f"{name}/speedup"] = {k: round(cuda[k] / ref[k], 2) for k in cuda if k.endswith("img_s")}
    ops.set_impl("auto")
    return out


def bench_networks(device: str, configs: list[str], seconds: float) -> dict:
    def measure(name: str) -> dict:
        import bench_nets

        res = bench_nets.bench_config(name, ["gancli"], None, seconds, torch.device(device))["gancli"]
        return {k: v for k, v in res.items() if k.endswith("img_s")}

    return _cuda_vs_ref(device, configs, measure)


def bench_training(device: str, configs: list[str]) -> dict:
    def measure(name: str) -> dict:
        import run

        return run.train_throughput(name, 16, device)

    return _cuda_vs_ref(device, configs, measure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per measurement")
    parser.add_argument("--configs", default="A,B", help="bench_nets configs for the network and training runs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = args.configs.split(",")
    result = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "build": bench_build(),
        "ops": bench_ops(args.device, args.seconds),
        "generator": bench_networks(args.device, configs, args.seconds),
        "training": bench_training(args.device, configs),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
