"""Import of other projects' network files. Safe: nothing from a file is ever executed.

Entry points for the CLI:

- `open_network(path) -> (modules, recipe, meta)`: a gancli snapshot (safetensors) or an official
  NVlabs StyleGAN2-ADA network pickle, as `{'G_ema': state_dict, 'G': ..., 'D': ...}`, the gancli
  `Recipe` that rebuilds the networks, and meta (`c_dim`, `img_channels`, `resolution`, ...).
- `convert_to_snapshot(src, dest) -> Path`: write a network file as a gancli snapshot (never
  overwrites `dest`).

Supported formats: NVlabs stylegan2-ada-pytorch `.pkl` (read by the restricted unpickler in
`safe_pickle`, the embedded module source is ignored), rosinality/stylegan2-pytorch torch.save
zip checkpoints (`rosinality`, read weights-only; G_ema only) and rosinality/style-based-gan-pytorch
StyleGAN v1 `.model` checkpoints (`rosinality_v1`, zip or torch's legacy format, read weights-only;
g_running only). Other torch.save files are refused with a message saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gancli.errors import UserError

__all__ = ["open_network", "convert_to_snapshot", "detect_format"]


def detect_format(path: str | os.PathLike[str]) -> str:
    """'gancli-snapshot', 'nvlabs-pickle', 'torch-zip', 'torch-legacy' or 'unknown' (from the file's first bytes)."""
    from gancli.convert.safe_pickle import sniff_format

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    fmt = sniff_format(path)
    if fmt == "pickle":
        with open(path, "rb") as f:
            if f.read(len(TORCH_LEGACY_MAGIC)) == TORCH_LEGACY_MAGIC:
                return "torch-legacy"  # torch.save before torch 1.6 (rosinality's older .model files)
    return {"safetensors": "gancli-snapshot", "pickle": "nvlabs-pickle"}.get(fmt, fmt)


# torch.save's legacy format begins with a pickled magic number (protocol 2, LONG1 0x1950a86a20f9469cfc6c).
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _unsupported(path: Path, fmt: str) -> UserError:
    if fmt in ("torch-zip", "torch-legacy"):
        return UserError(
            f"{path}: is a torch.save zip checkpoint but not a rosinality/stylegan2-pytorch one (no g_ema "
            "generator) nor a rosinality/style-based-gan-pytorch one (no g_running); allowed: gancli snapshots "
            "(.safetensors), official StyleGAN2-ADA .pkl files, rosinality/stylegan2-pytorch .pt and "
            "rosinality/style-based-gan-pytorch .model checkpoints"
        )
    return UserError(
        f"{path}: is not a network file gancli can read; allowed: gancli snapshots (.safetensors) and "
        "official StyleGAN2-ADA .pkl files and rosinality/stylegan2-pytorch .pt checkpoints"
    )


def _open_torch_zip(path: Path) -> tuple[dict[str, dict[str, Any]], Any, dict[str, Any]]:
    from gancli.convert.rosinality import is_rosinality, load_rosinality_file, open_rosinality
    from gancli.convert.rosinality_v1 import is_rosinality_v1, open_rosinality_v1

    obj = load_rosinality_file(path)  # weights-only: refuses any other global, running nothing
    if is_rosinality_v1(obj):
        return open_rosinality_v1(path, obj)
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
    if fmt in ("torch-zip", "torch-legacy"):
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
