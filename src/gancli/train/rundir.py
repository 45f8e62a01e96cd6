"""Run directories and the JSON-lines training log.

Run directories are `root/<name>-NNNNN/`. NNNNN is one more than the highest index of any run in
`root`, whatever its name (so indices tell the order runs were started, as in the official
StyleGAN tools, where the index comes first instead). A directory is created with exist_ok=False
and the index is bumped on a collision, so two runs started at the same moment never share a
directory and an existing run is never overwritten.

The log is one JSON object per line (`stats.jsonl`), appended and flushed after every record, so
`tail -f` and a crash both see whole lines. Only the standard library is imported here.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import IO, Any

from gancli.errors import UserError
from gancli.fileio import blocking_file, json_value

__all__ = ["create_run_dir", "JsonlLogger", "read_jsonl", "trim_jsonl", "remove_leftover_temp_files", "RUN_NAME_RE"]

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INDEX_RE = re.compile(r"-(\d{5,})$")
# Temporary files of gancli.fileio's atomic writes (`.<target name>.<random>.tmp`) of the files a run writes.
_RUN_TEMP_RE = re.compile(r"^\.(snapshot-|state-|fakes-|reals\.png|recipe\.yaml|stats\.jsonl|metrics\.jsonl).*\.tmp$")


def _run_indices(root: Path) -> list[int]:
    out = []
    for entry in root.iterdir():
        m = _INDEX_RE.search(entry.name)
        if m and entry.is_dir():
            out.append(int(m.group(1)))
    return out


def create_run_dir(root: str | os.PathLike[str] = "runs", name: str = "quickstart") -> Path:
    """Create and return a new, empty run directory `root/<name>-NNNNN/`.

    root is created when missing. name may contain letters, digits, '.', '_' and '-'.
    """
    root = Path(root)
    if not isinstance(name, str) or not RUN_NAME_RE.match(name) or len(name) > 200:
        raise UserError(
            f"run name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)"
        )
    blocker = blocking_file(root)
    if blocker is not None:
        what = "exists and is not a directory" if blocker == root else f"cannot be created: {blocker} is a file"
        raise UserError(f"{root}: {what}; choose another runs directory (--outdir)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        index = max(_run_indices(root), default=-1) + 1
        while True:
            run_dir = root / f"{name}-{index:05d}"
            try:
                run_dir.mkdir(exist_ok=False)
                return run_dir
            except FileExistsError:  # another process got there first: take the next index
                index += 1
    except PermissionError as e:
        raise UserError(f"{root}: cannot create a run directory here ({e.strerror or e})") from None


def _jsonable(obj: Any) -> Any:
    """json.dumps default for log fields: gancli.fileio.json_value, NaN-safe, anything else as str."""
    try:
        return _finite(json_value(obj))
    except TypeError:
        return str(obj)


def _finite(obj: Any) -> Any:
    """Replace NaN/Infinity (not valid JSON) with the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class JsonlLogger:
    """Append one JSON object per line to `path`, flushed after each record.

    Opening an existing log appends (resume). If the previous writer died mid-line, the partial
    line is terminated first so new records start on a line of their own (`read_jsonl` skips the
    damaged line). Non-finite floats are written as the strings "NaN", "Infinity", "-Infinity"
    so every line is strict JSON. Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    needs_newline = f.read(1) != b"\n"
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise UserError(f"{self.path}: is a directory, not a log file") from None
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8", newline="\n")
        if needs_newline:
            self._file.write("\n")
            self._file.flush()

    def log(self, **fields: Any) -> None:
        """Write `fields` as one JSON line and flush it."""
        if self._file is None:
            raise ValueError(f"{self.path}: log is closed")
        line = json.dumps(_finite(fields), default=_jsonable, ensure_ascii=False, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> JsonlLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; call close() explicitly
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines log; lines that are not JSON objects (e.g. cut by a crash) are skipped
    with a warning."""
    path = Path(path)
    records = []
    bad = 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
                else:
                    bad += 1
    except FileNotFoundError:
        raise UserError(f"{path}: no such log file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a log file") from None
    if bad:
        warnings.warn(f"{path}: skipped {bad} damaged line(s)", stacklevel=2)
    return records


def remove_leftover_temp_files(run_dir: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """Remove the temporary files that writers killed mid-write left in a run directory.

    Only names of gancli's own atomic writes of run files (`.snapshot-....tmp`, `.state-....tmp`, ...)
    are touched. Returns [(path, size in bytes)] of what was removed.
    """
    removed = []
    for entry in Path(run_dir).iterdir():
        if _RUN_TEMP_RE.match(entry.name) and entry.is_file():
            size = entry.stat().st_size
            entry.unlink(missing_ok=True)
            removed.append((entry, size))
    return sorted(removed)


def trim_jsonl(path: str | os.PathLike[str], *, step: int, kimg: float) -> int:
    """Cut a training log back to a checkpoint: drop the records after `step` (or, for records without
    a step such as snapshot and metric events, after `kimg`) and lines a crash left damaged.

    Used on resume, so the log never repeats steps or goes backwards. Rewritten atomically, and only
    when something is dropped. Returns the number of lines dropped (0 when the file does not exist).
    """
    from gancli.fileio import atomic_write_text

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        later = (isinstance(rec.get("step"), int) and rec["step"] > step) or (
            "step" not in rec and isinstance(rec.get("kimg"), (int, float)) and rec["kimg"] > round(kimg, 3) + 1e-9)
        if not later:
            kept.append(line if line.endswith("\n") else line + "\n")
    dropped = len(lines) - len(kept)
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


def grid_path(run_dir: Path, nimg: int, step: int) -> Path:
    """Where the training grid of an image tick goes: `fakes-NNNNNN.png` (NNNNNN = whole kimg), or, when
    that kimg has a grid already (train.image_kimg below 1), `fakes-NNNNNN-stepSSSSSSSS.png`, so that
    no grid, the step-0 one included, is overwritten."""
    path = Path(run_dir) / f"fakes-{nimg // 1000:06d}.png"
    return path.with_name(f"fakes-{nimg // 1000:06d}-step{step:08d}.png") if path.exists() else path
