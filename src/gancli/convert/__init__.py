"""Import of other projects' network files. Safe: nothing from a file is ever executed.

Entry points for the CLI:

- `open_network(path) -> (modules, recipe, meta)`: a gancli snapshot (safetensors) or an official
  NVlabs StyleGAN2-ADA network pickle, as `{'G_ema': state_dict, 'G': ..., 'D': ...}`, the gancli
  `Recipe` that rebuilds the networks, and meta (`c_dim`, `img_channels`, `resolution`, ...).
- `convert_to_snapshot(src, dest) -> Path`: write a network file as a gancli snapshot (never
  overwrites `dest`).

Supported formats: NVlabs stylegan2-ada-pytorch `.pkl` (read by the restricted unpickler in
`safe_pickle`, the embedded module source is ignored) and rosinality/stylegan2-pytorch torch.save
zip checkpoints (`rosinality`, read weights-only; G_ema only). Other torch.save zip files are
refused with a message saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gancli.errors import UserError

__all__ = ["open_network", "convert_to_snapshot", "detect_format"]


def detect_format(path: str | os.PathLike[str]) -> str:
    """'gancli-snapshot', 'nvlabs-pickle', 'torch-zip', or 'unknown' (from the file's first bytes)."""
    from gancli.convert.safe_pickle import sniff_format

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    fmt = sniff_format(path)
    return {"safetensors": "gancli-snapshot", "pickle": "nvlabs-pickle"}.get(fmt, fmt)


def _unsupported(path: Path, fmt: str) -> UserError:
    if fmt == "torch-zip":
        return UserError(
            f"{path}: is a torch.save zip checkpoint but not a rosinality/stylegan2-pytorch one (no g_ema "
            "generator); allowed: gancli snapshots (.safetensors), official StyleGAN2-ADA .pkl files and "
            "rosinality/stylegan2-pytorch .pt checkpoints"
        )
    return UserError(
        f"{path}: is not a network file gancli can read; allowed: gancli snapshots (.safetensors) and "
        "official StyleGAN2-ADA .pkl files and rosinality/stylegan2-pytorch .pt checkpoints"
    )


def _open_torch_zip(path: Path) -> tuple[dict[str, dict[str, Any]], Any, dict[str, Any]]:
    from gancli.convert.rosinality import is_rosinality, load_rosinality_file, open_rosinality

    obj = load_rosinality_file(path)  # weights-only: refuses any other global, running nothing
    if not is_rosinality(obj):
        raise _unsupported(path, "torch-zip")
    return open_rosinality(path, obj)


def open_network(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], Any, dict[str, Any]]:
    """(modules {name: state_dict}, recipe: gancli.recipe.Recipe, meta: dict) for a network file."""
    from gancli.recipe import Recipe
    from gancli.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(path).snapshot  # a run directory means its latest snapshot
    fmt = detect_format(path)
    if fmt == "gancli-snapshot":
        from gancli.train.checkpoint import load_snapshot

        snap = load_snapshot(path)
        recipe = Recipe.from_dict(snap.recipe, origin=f"{path} (embedded recipe)", strict=False)
        return snap.modules, recipe, dict(snap.meta)
    if fmt == "nvlabs-pickle":
        from gancli.convert.nvlabs import open_nvlabs

        return open_nvlabs(path)
    if fmt == "torch-zip":
        return _open_torch_zip(path)
    raise _unsupported(path, fmt)


def convert_to_snapshot(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Convert a foreign network file into a gancli snapshot at `dest` (never overwrites); returns `dest`."""
    from gancli.train.checkpoint import save_snapshot

    src, dest = Path(src).expanduser(), Path(dest)
    if detect_format(src) == "gancli-snapshot":
        raise UserError(f"{src}: is already a gancli snapshot; use it directly (nothing to convert)")
    if dest.exists():
        raise UserError(f"{dest}: already exists; choose another output file (convert never overwrites)")
    modules, recipe, meta = open_network(src)
    save_snapshot(dest, modules, recipe.to_dict(), meta)
    return dest
