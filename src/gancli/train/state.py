"""Training state: everything besides the weights that an exact resume needs, and RNG states.

Training state (`state-000012.pt`, beside the snapshot)
-------------------------------------------------------
`torch.save` (zip format) of {'format': 'gancli-training-state', 'format_version': 1,
'gancli_version', 'created', 'snapshot_sha256', 'state': <caller's dict>}, read back with
`torch.load(weights_only=True)` only. `snapshot_sha256` is the content hash of the snapshot
written with it, so a state file is never paired with the wrong weights. Values in the state are
restricted to what a weights-only load accepts (tensors, numbers, strings, bytes, None, dtypes,
devices, torch.Size and dicts/lists/tuples/sets of those); numpy arrays become tensors and numpy
scalars become Python numbers on save. Anything else raises TypeError at save time, so a state that
cannot be loaded back is never written.

Names in a run directory

The state file belongs to the snapshot written with it (`gancli.train.snapshot`); how the two are
named and paired in a run directory is in `gancli.train.checkpoint`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from gancli import __version__ as _GANCLI_VERSION
from gancli.errors import UserError
from gancli.fileio import atomic_write
from gancli.train.snapshot import _MAX_HEADER_BYTES, _check_regular_file, _now_iso

__all__ = [
    "TRAINING_STATE_FORMAT",
    "TRAINING_STATE_FORMAT_VERSION",
    "save_training_state",
    "load_training_state",
]

TRAINING_STATE_FORMAT = "gancli-training-state"
TRAINING_STATE_FORMAT_VERSION = 1


def _sanitize(obj: Any, where: str) -> Any:
    """Return a copy of `obj` that `torch.load(weights_only=True)` accepts, or raise TypeError."""
    import numpy as np
    import torch

    if isinstance(obj, np.generic):  # before the builtins: np.float64 is a float subclass
        return obj.item()
    if obj is None or type(obj) in (bool, int, float, complex, str, bytes):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (torch.Size, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"training state value at {where} is a numpy object array")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, (bool, int, float, complex, str, bytes)):  # subclasses, e.g. IntEnum
        base = next(b for b in (bool, int, float, complex, str, bytes) if isinstance(obj, b))
        return base(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not (k is None or type(k) in (bool, int, float, str)):
                k = _sanitize(k, f"{where} key")
            out[k] = _sanitize(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_sanitize(v, f"{where} item") for v in obj)
    if isinstance(obj, list):
        return [_sanitize(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):  # namedtuples become plain tuples
        return tuple(_sanitize(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(
        f"training state value at {where} has type {type(obj).__module__}.{type(obj).__qualname__}, "
        "which a weights-only load cannot read back; store tensors, numbers, strings or containers"
    )


def save_training_state(
    path: str | os.PathLike[str], state: dict[str, Any], *, snapshot_sha256: str | None = None
) -> None:
    """Write the training state atomically with torch.save (zip format).

    state: nested dicts/lists of tensors, numbers, strings, optimizer state dicts, RNG states
           Numpy arrays/scalars are converted (arrays -> tensors).
    snapshot_sha256: content hash of the snapshot this state belongs to (from `save_snapshot`).
    """
    import torch

    if not isinstance(state, dict):
        raise TypeError(f"training state must be a dict, not {type(state).__name__}")
    payload = {
        "format": TRAINING_STATE_FORMAT,
        "format_version": TRAINING_STATE_FORMAT_VERSION,
        "gancli_version": _GANCLI_VERSION,
        "created": _now_iso(),
        "snapshot_sha256": snapshot_sha256,
        "state": _sanitize(state, "state"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _load_state_payload(path: Path, *, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    import pickle

    import torch

    _check_regular_file(path, "gancli training-state (.pt)")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    if head[:4] != b"PK\x03\x04":
        if head[:1] == b"\x80":
            what = "a raw pickle"
        elif len(head) == 8 and int.from_bytes(head, "little") < _MAX_HEADER_BYTES:
            what = "probably a safetensors snapshot"
        else:
            what = "an unknown format"
        raise UserError(
            f"{path}: is not a gancli training-state file ({what}; expected a torch.save zip archive); "
            "gancli never unpickles other files"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        m = _GLOBAL_RE.search(str(e))
        detail = f"it references {m.group(1)}" if m else "it uses pickle features outside plain data"
        raise UserError(
            f"{path}: refusing to load it: {detail}, i.e. code or objects other than tensors and plain "
            "data; gancli never runs code from files"
        ) from None
    except Exception as e:  # noqa: BLE001 - zip/storage errors all mean a damaged file
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"{path}: is truncated or corrupt ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != TRAINING_STATE_FORMAT:
        raise UserError(
            f"{path}: is not a gancli training-state file (no gancli format marker; written by another tool?)"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UserError(f"{path}: is corrupt (format_version {version!r} is not valid)")
    if version > TRAINING_STATE_FORMAT_VERSION:
        raise UserError(
            f"{path}: was written by a newer gancli ({payload.get('gancli_version', '?')}, training-state "
            f"format version {version}); this gancli {_GANCLI_VERSION} reads version "
            f"{TRAINING_STATE_FORMAT_VERSION}: upgrade gancli"
        )
    if not isinstance(payload.get("state"), dict):
        raise UserError(f"{path}: is corrupt (no state dictionary inside)")
    return payload


def load_training_state(
    path: str | os.PathLike[str],
    *,
    expect_snapshot_sha256: str | None = None,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Load a training state written by `save_training_state` with torch.load(weights_only=True).

    expect_snapshot_sha256: when given, the state must have been written with that snapshot.
    Returns the caller's state dict. Raises UserError (one line naming the file) for a missing,
    empty, truncated, foreign or code-carrying file; nothing from the file is ever executed.
    """
    path = Path(path)
    payload = _load_state_payload(path, map_location=map_location)
    if expect_snapshot_sha256 is not None and payload.get("snapshot_sha256") != expect_snapshot_sha256:
        raise UserError(
            f"{path}: belongs to a different snapshot (snapshot hash does not match); "
            "resume from a matching snapshot/state pair"
        )
    return payload["state"]
