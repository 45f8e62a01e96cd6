"""Snapshot files: the safetensors format that `gancli sample` reads, and what `gancli info` shows.

Loading never runs code from a file. That is the whole point of this module. Header parsing, hashing
and `describe_checkpoint` need only the standard library; torch and safetensors are imported when
tensors are read or written.

Snapshot file (`snapshot-000012.safetensors`, what users pass to `gancli sample`)
--------------------------------------------------------------------------------
A plain safetensors file. Tensors are named `<module>.<name>` (module names such as `G_ema`, `G`,
`D` contain no dot; `<name>` is the state-dict key). The safetensors metadata (all strings) holds:

  format          'gancli-snapshot'
  format_version  '1' (a reader refuses a larger number: written by a newer gancli)
  gancli_version  version of gancli that wrote the file
  modules         JSON list of module names (so an empty module survives a round trip)
  recipe          JSON: the resolved recipe, so the file needs nothing else to be used
  meta            JSON: kimg, step, created (ISO-8601 UTC), architecture info, ... Optional key
                  `buffers`: {module: [state-dict keys that are buffers]}, used by `gancli info`
                  to count parameters without buffers.
  content_sha256  SHA-256 hex digest, defined below.

content_sha256 covers everything else in the file, so a changed weight, shape, dtype, recipe or
meta is detected. With field(b) = 8-byte little-endian length of b, then b:

  sha256( b"gancli-snapshot-content-v1\\n"
          + for key in sorted(metadata keys except content_sha256): field(key) + field(value)
          + for name in sorted(tensor names):
                field(name) + field(dtype code, e.g. b"F32") + field(JSON shape, e.g. b"[3,4]")
                + field(raw little-endian tensor bytes) )

The reader computes it by streaming the file's data section, without torch.

How snapshots are named in a run directory and paired with their training state is in
`gancli.train.checkpoint`; the training state itself in `gancli.train.state`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gancli import __version__ as _GANCLI_VERSION
from gancli.errors import UserError
from gancli.fileio import atomic_path, json_value

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_FORMAT_VERSION",
    "CheckpointWarning",
    "Snapshot",
    "save_snapshot",
    "load_snapshot",
    "read_snapshot_header",
    "describe_checkpoint",
    "info_lines",
    "render_info",
]

SNAPSHOT_FORMAT = "gancli-snapshot"
SNAPSHOT_FORMAT_VERSION = 1

_HASH_DOMAIN = b"gancli-snapshot-content-v1\n"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit safetensors itself enforces
_HASH_CHUNK = 16 * 1024 * 1024

# safetensors dtype code -> bytes per element, for the dtypes gancli writes.
_DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}

_PICKLE_HINT = (
    "this looks like a pickle / torch.save file: gancli never unpickles network files; "
    "import official networks with `gancli convert`"
)


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped or only partly restored (shown, not fatal)."""


@dataclass
class Snapshot:
    """A loaded snapshot file."""

    modules: dict[str, dict[str, torch.Tensor]]  # {'G_ema': state_dict, 'G': ..., 'D': ...}
    recipe: dict[str, Any]  # the resolved recipe the network was trained with
    meta: dict[str, Any]  # kimg, step, created, architecture info, ...
    path: Path
    content_sha256: str = ""
    format_version: int = SNAPSHOT_FORMAT_VERSION
    gancli_version: str = ""



# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _torch_dtype_codes() -> dict[Any, str]:
    import torch

    return {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }


def _field(h: Any, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _shape_json(shape: Any) -> bytes:
    return json.dumps([int(s) for s in shape], separators=(",", ":")).encode("ascii")


def _hash_metadata(h: Any, metadata: dict[str, str]) -> None:
    h.update(_HASH_DOMAIN)
    for key in sorted(metadata):
        if key == "content_sha256":
            continue
        _field(h, key.encode("utf-8"))
        _field(h, metadata[key].encode("utf-8"))


def _to_plain_dict(obj: Any, what: str) -> dict[str, Any]:
    import dataclasses

    if obj is None:
        return {}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    elif not isinstance(obj, dict) and callable(getattr(obj, "to_dict", None)):
        obj = obj.to_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"{what} must be a dict, not {type(obj).__name__}")
    return obj


def _check_regular_file(path: Path, what: str) -> int:
    """Common checks for a file the user named; returns its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected a {what})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a {what} file")
    if st.st_size == 0:
        raise UserError(f"{path}: is empty (0 bytes), not a {what}; it was probably cut short while copying")
    return st.st_size


# ---------------------------------------------------------------------------------------------
# Snapshot: writing
# ---------------------------------------------------------------------------------------------


def _le_bytes(t: torch.Tensor) -> Any:
    """The tensor's bytes in little-endian order as a buffer (no copy on little-endian hosts)."""
    import torch

    flat = t.reshape(-1).view(torch.uint8)
    if sys.byteorder == "big" and t.element_size() > 1:  # pragma: no cover - no such CI host
        flat = flat.reshape(-1, t.element_size()).flip(1).reshape(-1).contiguous()
    return flat.numpy()


def _flatten_modules(modules: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`{module: state_dict}` -> `{'module.name': tensor}`, each tensor CPU, contiguous, unshared."""
    import torch

    codes = _torch_dtype_codes()
    if not isinstance(modules, dict):
        raise TypeError(f"modules must be a dict of state dicts, not {type(modules).__name__}")
    flat: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for mod, sd in modules.items():
        if not isinstance(mod, str) or not mod or "." in mod:
            raise ValueError(f"module name {mod!r} must be a non-empty string without '.'")
        if not isinstance(sd, dict):
            raise TypeError(f"modules[{mod!r}] must be a state dict, not {type(sd).__name__}")
        for name, t in sd.items():
            key = f"{mod}.{name}"
            if not isinstance(name, str) or not name:
                raise ValueError(f"state-dict key {name!r} in module {mod!r} must be a non-empty string")
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{key} is a {type(t).__name__}, not a tensor")
            if t.dtype not in codes:
                allowed = ", ".join(str(d).replace("torch.", "") for d in codes)
                raise TypeError(f"{key} has dtype {t.dtype}; snapshots store only {allowed}")
            if t.device.type == "meta":
                raise ValueError(f"{key} is on the meta device and has no data")
            t = t.detach()
            if t.device.type != "cpu":
                t = t.cpu()  # a fresh, contiguous, unshared copy
            else:
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if (
                    not t.is_contiguous()
                    or t.storage_offset() != 0
                    or storage.nbytes() != t.numel() * t.element_size()
                    or ptr in seen_storages
                ):
                    t = t.clone(memory_format=torch.contiguous_format)
            seen_storages.add(t.untyped_storage().data_ptr())
            flat[key] = t
    return flat


def _content_hash_of_tensors(metadata: dict[str, str], flat: dict[str, torch.Tensor]) -> str:
    codes = _torch_dtype_codes()
    h = hashlib.sha256()
    _hash_metadata(h, metadata)
    for name in sorted(flat):
        t = flat[name]
        _field(h, name.encode("utf-8"))
        _field(h, codes[t.dtype].encode("ascii"))
        _field(h, _shape_json(t.shape))
        _field(h, memoryview(_le_bytes(t)).cast("B"))
    return h.hexdigest()


def save_snapshot(
    path: str | os.PathLike[str],
    modules: dict[str, dict[str, torch.Tensor]],
    recipe: dict[str, Any] | None,
    meta: dict[str, Any] | None = None,
) -> str:
    """Write a snapshot file atomically; return its content_sha256.

    modules: {'G_ema': state_dict, 'G': ..., 'D': ...}; tensors may live on any device, be
             non-contiguous or share storage (they are copied as needed, never modified).
    recipe:  the resolved recipe (a dict, a dataclass, or an object with `to_dict()`).
    meta:    JSON-serializable facts (kimg, step, architecture, `buffers`, ...); `created` is
             added when missing.
    The parent directory is created when missing.
    """
    from safetensors.torch import save_file

    path = Path(path)
    recipe_d = _to_plain_dict(recipe, "recipe")
    meta_d = dict(_to_plain_dict(meta, "meta"))
    meta_d.setdefault("created", _now_iso())
    flat = _flatten_modules(modules)
    metadata = {
        "format": SNAPSHOT_FORMAT,
        "format_version": str(SNAPSHOT_FORMAT_VERSION),
        "gancli_version": _GANCLI_VERSION,
        "modules": json.dumps(list(modules)),
        "recipe": json.dumps(recipe_d, default=json_value, ensure_ascii=False),
        "meta": json.dumps(meta_d, default=json_value, ensure_ascii=False),
    }
    digest = _content_hash_of_tensors(metadata, flat)
    metadata["content_sha256"] = digest
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(flat, os.fspath(tmp), metadata=metadata)
    return digest


# ---------------------------------------------------------------------------------------------
# Snapshot: reading (header parsing and hashing need no torch)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    dtype: str
    shape: list[int]
    start: int
    end: int


@dataclass
class _Parsed:
    path: Path
    file_size: int
    data_start: int
    metadata: dict[str, str]
    entries: list[_Entry] = field(default_factory=list)
    format_version: int = SNAPSHOT_FORMAT_VERSION


def _not_safetensors(path: Path, reason: str) -> UserError:
    hint = ""
    if path.suffix.lower() in (".pkl", ".pt", ".pth", ".ckpt", ".bin"):
        hint = "; to use a network file from another project, import it with `gancli convert`"
    return UserError(f"{path}: is not a gancli checkpoint (not a safetensors file: {reason}){hint}")


def _parse_snapshot(path: str | os.PathLike[str]) -> _Parsed:
    """Read and validate the header of a snapshot file; every problem is a one-line UserError."""
    path = Path(path)
    size = _check_regular_file(path, "gancli checkpoint (.safetensors)")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            # a safetensors header length can start with byte 0x80 too: it is followed by '{' at byte 8
            pickled = head[:1] == b"\x80" and head[8:9] != b"{"
            if pickled or head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                raise UserError(f"{path}: {_PICKLE_HINT}")
            f.seek(8)
            head = head[:8]
            if len(head) < 8:
                raise UserError(f"{path}: is truncated ({size} bytes), not a complete gancli checkpoint")
            n = int.from_bytes(head, "little")
            if n < 2 or n > _MAX_HEADER_BYTES:
                raise _not_safetensors(path, "no valid header")
            raw = f.read(n)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    if raw[:1] != b"{":
        raise _not_safetensors(path, "no JSON header")
    if len(raw) < n:
        raise UserError(f"{path}: is truncated (the file ends inside its header); copy it again")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _not_safetensors(path, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != SNAPSHOT_FORMAT:
        raise UserError(
            f"{path}: is not a gancli checkpoint (a safetensors file without gancli metadata, "
            "probably from another tool); import other projects' networks with `gancli convert`"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise UserError(f"{path}: is corrupt (its metadata values are not all strings)")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise UserError(
            f"{path}: is corrupt (format_version {metadata.get('format_version')!r} is not a number)"
        ) from None
    if version > SNAPSHOT_FORMAT_VERSION:
        raise UserError(
            f"{path}: was written by a newer gancli ({metadata.get('gancli_version', '?')}, format "
            f"version {version}); this gancli {_GANCLI_VERSION} reads format version "
            f"{SNAPSHOT_FORMAT_VERSION} and older: upgrade gancli"
        )
    if version < 1:
        raise UserError(f"{path}: is corrupt (format_version {version} is not valid)")

    data_start = 8 + n
    data_len = size - data_start
    entries: list[_Entry] = []
    for name, e in header.items():
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("dtype"), str)
            and isinstance(e.get("shape"), list)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in e["shape"])
            and isinstance(e.get("data_offsets"), list)
            and len(e["data_offsets"]) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in e["data_offsets"])
        )
        if not ok:
            raise UserError(f"{path}: is corrupt (malformed header entry for tensor {name!r})")
        if e["dtype"] not in _DTYPE_SIZES:
            raise UserError(
                f"{path}: tensor {name!r} has dtype {e['dtype']}, which gancli snapshots do not use "
                f"(allowed: {', '.join(_DTYPE_SIZES)})"
            )
        start, end = e["data_offsets"]
        numel = 1
        for s in e["shape"]:
            numel *= s
        if end - start != numel * _DTYPE_SIZES[e["dtype"]]:
            raise UserError(f"{path}: is corrupt (tensor {name!r}: data size does not match its shape)")
        entries.append(_Entry(name, e["dtype"], list(e["shape"]), start, end))
    # The data section must be tiled exactly by the tensors, in order, with no gaps or overlap.
    expected = 0
    for ent in sorted(entries, key=lambda x: (x.start, x.end)):
        if ent.start != expected:
            raise UserError(f"{path}: is corrupt (tensor data offsets overlap or leave gaps)")
        expected = ent.end
    if data_len < expected:
        raise UserError(
            f"{path}: is truncated ({data_len} of {expected} bytes of tensor data present); "
            "the file was cut short: copy it again or use an earlier snapshot"
        )
    if data_len > expected:
        raise UserError(f"{path}: is corrupt ({data_len - expected} unexpected bytes after the tensor data)")
    if "content_sha256" not in metadata:
        raise UserError(f"{path}: is corrupt (no content_sha256 in its metadata)")
    return _Parsed(path, size, data_start, metadata, entries, version)


def _file_content_hash(parsed: _Parsed) -> str:
    h = hashlib.sha256()
    _hash_metadata(h, parsed.metadata)
    try:
        with open(parsed.path, "rb") as f:
            for ent in sorted(parsed.entries, key=lambda x: x.name):
                _field(h, ent.name.encode("utf-8"))
                _field(h, ent.dtype.encode("ascii"))
                _field(h, _shape_json(ent.shape))
                remaining = ent.end - ent.start
                h.update(remaining.to_bytes(8, "little"))
                f.seek(parsed.data_start + ent.start)
                while remaining:
                    chunk = f.read(min(remaining, _HASH_CHUNK))
                    if not chunk:
                        raise UserError(f"{parsed.path}: is truncated (it changed while being read)")
                    h.update(chunk)
                    remaining -= len(chunk)
    except OSError as e:
        raise UserError(f"{parsed.path}: cannot be read ({e.strerror or e})") from None
    return h.hexdigest()


def _verify(parsed: _Parsed) -> None:
    if _file_content_hash(parsed) != parsed.metadata["content_sha256"]:
        raise UserError(
            f"{parsed.path}: was modified after it was written (content hash mismatch); refusing to load it"
        )


def _json_meta(parsed: _Parsed, key: str, kind: type) -> Any:
    raw = parsed.metadata.get(key)
    if raw is None:
        raise UserError(f"{parsed.path}: is corrupt (metadata has no {key!r} entry)")
    try:
        value = json.loads(raw)
    except ValueError:
        raise UserError(f"{parsed.path}: is corrupt (metadata {key!r} is not valid JSON)") from None
    if not isinstance(value, kind):
        raise UserError(f"{parsed.path}: is corrupt (metadata {key!r} is not a JSON {kind.__name__})")
    return value


def load_snapshot(path: str | os.PathLike[str], *, verify: bool = True) -> Snapshot:
    """Load a snapshot file written by `save_snapshot`. Never runs code from the file.

    verify: check content_sha256 before loading (recommended; costs one read of the file).
    Raises UserError (one line naming the file) for every kind of bad file.
    """
    parsed = _parse_snapshot(path)
    if verify:
        _verify(parsed)
    recipe = _json_meta(parsed, "recipe", dict)
    meta = _json_meta(parsed, "meta", dict)
    module_names = _json_meta(parsed, "modules", list)

    from safetensors.torch import load_file

    try:
        flat = load_file(os.fspath(parsed.path), device="cpu")
    except Exception as e:  # noqa: BLE001 - any library failure is a bad file
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"{parsed.path}: could not be read as safetensors ({reason})") from None
    modules: dict[str, dict[str, Any]] = {str(m): {} for m in module_names}
    for key in sorted(flat):
        mod, sep, name = key.partition(".")
        if not sep:
            raise UserError(f"{parsed.path}: is corrupt (tensor name {key!r} has no module prefix)")
        modules.setdefault(mod, {})[name] = flat[key]
    return Snapshot(
        modules=modules,
        recipe=recipe,
        meta=meta,
        path=parsed.path,
        content_sha256=parsed.metadata["content_sha256"],
        format_version=parsed.format_version,
        gancli_version=parsed.metadata.get("gancli_version", ""),
    )



def read_snapshot_header(path: str | os.PathLike[str], *, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recipe, meta) of a snapshot, from its header only (no torch). Every problem is a UserError."""
    parsed = _parse_snapshot(path)
    if verify:
        _verify(parsed)
    return _json_meta(parsed, "recipe", dict), _json_meta(parsed, "meta", dict)


# ---------------------------------------------------------------------------------------------
# `gancli info`
# ---------------------------------------------------------------------------------------------


def _flatten_arch(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_arch(v, key + "."))
        elif v is None or isinstance(v, (str, int, float, bool)):
            out[key] = v
        elif isinstance(v, list) and len(v) <= 16 and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[key] = v
    return out


def describe_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Facts about a snapshot for `gancli info`, read from its header only (no torch needed).

    Returns {path, file_size, format, format_version, gancli_version, created, recipe_name, kimg,
    step, architecture (flat dict), modules: {name: {tensors, parameters, buffers, buffers_known,
    dtypes}}, total_parameters, verified}. `parameters` excludes buffers when meta lists them
    (meta['buffers'] = {module: [keys]}), otherwise counts every tensor element.
    """
    parsed = _parse_snapshot(path)
    if verify:
        _verify(parsed)
    recipe = _json_meta(parsed, "recipe", dict)
    meta = _json_meta(parsed, "meta", dict)
    module_names = _json_meta(parsed, "modules", list)
    buffers = meta.get("buffers") if isinstance(meta.get("buffers"), dict) else {}

    modules: dict[str, dict[str, Any]] = {
        str(m): {"tensors": 0, "parameters": 0, "buffers": 0, "dtypes": []} for m in module_names
    }
    for ent in parsed.entries:
        mod, _, name = ent.name.partition(".")
        info = modules.setdefault(mod, {"tensors": 0, "parameters": 0, "buffers": 0, "dtypes": []})
        numel = 1
        for s in ent.shape:
            numel *= s
        info["tensors"] += 1
        if name in (buffers.get(mod) or ()):
            info["buffers"] += numel
        else:
            info["parameters"] += numel
        dt = ent.dtype.lower()
        if dt not in info["dtypes"]:
            info["dtypes"].append(dt)
    for mod, info in modules.items():
        info["buffers_known"] = mod in buffers

    arch: dict[str, Any] = {}
    if isinstance(recipe.get("model"), dict):
        from gancli.families import family_name_of, get_family

        model = recipe["model"]  # described by its own family (older files hold every family's keys)
        kind = model.get("kind", "stylegan2")
        family = get_family(kind) if isinstance(kind, str) and family_name_of(kind) else None
        arch.update(_flatten_arch(family.describe(model) if family is not None else model))
    data = recipe.get("data")
    if isinstance(data, dict) and "resolution" in data and "resolution" not in arch:
        arch["resolution"] = data["resolution"]
    if isinstance(meta.get("architecture"), dict):
        arch.update(_flatten_arch(meta["architecture"]))

    recipe_name = recipe.get("name") or meta.get("recipe_name") or recipe.get("source")
    return {
        "path": str(parsed.path),
        "file_size": parsed.file_size,
        "format": SNAPSHOT_FORMAT,
        "format_version": parsed.format_version,
        "gancli_version": parsed.metadata.get("gancli_version", ""),
        "created": meta.get("created"),
        "recipe_name": recipe_name,
        "kimg": meta.get("kimg"),
        "step": meta.get("step"),
        "architecture": arch,
        "modules": modules,
        "total_parameters": sum(m["parameters"] for m in modules.values()),
        "verified": bool(verify),
    }


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):  # powers of 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def info_lines(desc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows describing a checkpoint, in display order (plain text)."""
    rows: list[tuple[str, str]] = [
        ("file", f"{desc['path']} ({_human_size(desc['file_size'])})"),
        (
            "format",
            f"{desc['format']} v{desc['format_version']}"
            + (f", written by gancli {desc['gancli_version']}" if desc.get("gancli_version") else "")
            + (", content hash verified" if desc.get("verified") else ", content hash not checked"),
        ),
    ]
    if desc.get("created"):
        rows.append(("created", str(desc["created"])))
    rows.append(("recipe", str(desc.get("recipe_name") or "(unnamed)")))
    progress = []
    if desc.get("kimg") is not None:
        progress.append(f"kimg {desc['kimg']}")
    if desc.get("step") is not None:
        progress.append(f"step {desc['step']}")
    if progress:
        rows.append(("progress", ", ".join(progress)))
    for key, value in desc.get("architecture", {}).items():
        rows.append((key, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    for mod, info in desc.get("modules", {}).items():
        text = f"{info['parameters']:,} parameters"
        if info.get("buffers_known"):
            text += f" + {info['buffers']:,} buffer elements"
        text += f" in {info['tensors']} tensors"
        if info.get("dtypes"):
            text += f" ({', '.join(info['dtypes'])})"
        rows.append((mod, text))
    return rows


def render_info(desc: dict[str, Any]) -> Any:
    """A rich renderable (two-column grid) of `describe_checkpoint` output."""
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in info_lines(desc):
        table.add_row(label, value)
    return table
