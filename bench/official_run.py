"""Run a script of the official StyleGAN2-ADA checkout (carried in .official/, never committed) on this Python.

    python bench/official_run.py --repo .official/stylegan2-ada-pytorch generate.py --network N.pkl --seeds 0-9 --outdir O
    python bench/official_run.py --repo .official/stylegan2-ada-pytorch train.py --help

The official code targets Python 3.7-3.9 and PyTorch 1.7-1.9. Two things stop it on a new Python
before it runs at all, and only those are bridged here (nothing in its own files is changed):
- `dnnlib/util.py` imports `strtobool` from `distutils`, which Python 3.12 removed; when no
  `distutils` is importable (setuptools' shim usually provides one), a stand-in module with that one
  function is registered first.
- its folders must be importable: the checkout goes first on sys.path, and the script runs as
  `__main__` from it, as `python generate.py` would.

`official_import(repo)` does the same for the other bench drivers (official_train.py, official_metrics.py).
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from pathlib import Path


def _strtobool(value: str) -> int:
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return 1
    if value in ("n", "no", "f", "false", "off", "0"):
        return 0
    raise ValueError(f"invalid truth value {value!r}")


def official_import(repo: str | os.PathLike[str]) -> Path:
    """Make the checkout importable (`import dnnlib`, `from training import training_loop`); returns its path."""
    root = Path(repo).resolve()
    if not (root / "dnnlib" / "util.py").is_file():
        raise SystemExit(f"{root}: not a stylegan2-ada-pytorch checkout (no dnnlib/util.py); run bench/gpu_prepare.sh")
    try:
        import distutils.util  # noqa: F401  (setuptools' shim on Python >= 3.12)
    except ImportError:
        package = types.ModuleType("distutils")
        package.__path__ = []  # a package, so that `distutils.util` resolves to the module below
        util = types.ModuleType("distutils.util")
        util.strtobool = _strtobool
        package.util = util
        sys.modules["distutils"] = package
        sys.modules["distutils.util"] = util
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--repo":
        raise SystemExit(__doc__)
    root = official_import(args[1])
    script = root / args[2]
    if not script.is_file():
        raise SystemExit(f"{script}: no such script in the checkout")
    sys.argv = [str(script)] + args[3:]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
