"""Atomic file writes.

A file that gancli writes (a checkpoint, a training state, a cache entry, a JSON pointer) is either
the complete old version or the complete new version, never a half-written mix: a crash, a full
disk or Ctrl-C while writing leaves the previous file untouched.

How: write to a temporary file in the *same directory* (so the final rename stays on one file
system), flush and fsync it, then `os.replace` it over the target (atomic on POSIX and Windows),
then fsync the directory so the rename itself survives a power cut. On any exception the temporary
file is removed and the target is not touched.

Only the standard library is imported here, so any module may use these helpers cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "kill_point",
    "blocking_file",
]

_TEXT_MODES = ("w", "wt")
_BINARY_MODES = ("wb",)

_umask_cache: int | None = None


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    global _umask_cache
    if _umask_cache is None:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _umask_cache = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _umask_cache is None:  # no /proc: the classic set-and-restore (done once per process)
            old = os.umask(0o022)
            os.umask(old)
            _umask_cache = old
    return _umask_cache


def _final_mode(path: Path) -> int:
    """Permissions for the new file: keep the old file's, else what open() would have given."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable. Not possible (nor needed) on Windows."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_temp(path: Path) -> tuple[int, Path]:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    return fd, Path(tmp)


def _commit(tmp: Path, path: Path, exclusive: bool = False) -> None:
    kill_point()  # the temporary file is complete, the target not yet replaced
    os.chmod(tmp, _final_mode(path))
    if exclusive:  # never replace a file, even one that appeared while we wrote
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: the best check it allows
            if os.path.lexists(path):
                raise FileExistsError(path) from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent if str(path.parent) else Path("."))
    kill_point()  # the new file is in place


def blocking_file(directory: str | os.PathLike[str]) -> Path | None:
    """The existing non-directory (`directory` itself or an ancestor) that stops `directory` from being
    created, or None when nothing does (`out.txt/runs` -> `out.txt`)."""
    path = Path(directory)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


_kill_count = 0


def kill_point() -> None:
    """Crash-test hook: with GANCLI_TEST_KILL_AFTER_WRITE=k in the environment, the process kills
    itself (SIGKILL: no cleanup, no atexit) at the k-th write step, counted from 1.

    Write steps are the two moments of every atomic write (temporary file complete; renamed into
    place) and each file a checkpoint rotation removes. Tests use it to crash at every moment of a
    checkpoint write without relying on timing; unset (always, outside tests), it does nothing.
    """
    global _kill_count
    target = os.environ.get("GANCLI_TEST_KILL_AFTER_WRITE")
    if not target:
        return
    _kill_count += 1
    if _kill_count == int(target):
        import signal

        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open `path` for writing so that it appears complete or not at all.

    Yields a file object for a temporary file beside `path`. When the `with` block finishes
    normally the data is flushed, fsynced and renamed over `path`. When it raises (anything,
    KeyboardInterrupt included) the temporary file is deleted and an existing `path` is untouched.

    mode: 'wb' (bytes) or 'w' / 'wt' (text; encoding defaults to UTF-8).
    The parent directory must exist.
    """
    if mode not in _TEXT_MODES + _BINARY_MODES:
        raise ValueError(f"atomic_write mode must be 'wb', 'w' or 'wt', not {mode!r}")
    path = Path(path)
    fd, tmp = _make_temp(path)
    try:
        if mode in _TEXT_MODES:
            f = os.fdopen(fd, mode, encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, mode)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[Path]:
    """Like `atomic_write`, for writers that insist on a file *name* (e.g. safetensors, zipfile).

    Yields the path of an empty temporary file beside `path`; write it by name inside the block.
    On success it is fsynced and renamed over `path`; on an exception it is removed.
    exclusive: never replace an existing `path` (FileExistsError, the temporary file removed), even
    one created by another process while the block ran.
    """
    path = Path(path)
    fd, tmp = _make_temp(path)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path, exclusive)
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (newlines written as given, no translation)."""
    with atomic_write(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Serialize `obj` as JSON (UTF-8, trailing newline) and write it to `path` atomically.

    The object is serialized before the file is opened, so a value that is not JSON-serializable
    raises without touching `path`.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)


def json_value(obj: Any) -> Any:
    """`json.dumps(default=...)` for common non-JSON values: paths -> str, sets -> sorted lists,
    numpy/torch scalars -> numbers, arrays/tensors -> lists. Anything else raises TypeError."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"value of type {type(obj).__name__} cannot be stored as JSON")
