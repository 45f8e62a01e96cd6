"""The on-disk cache of decoded training images: one memory-mapped uint8 `.npy` file per dataset.

A dataset whose decoded size fits the cache limit is decoded once into `<cache>/datasets/<name>-<res>-
<key>.npy` (uint8 [N, 3, R, R]) and then read with `np.load(mmap_mode='r')`: every rank of a run and
every later run share the same file pages instead of each holding its own copy in RAM. The file name
carries a hash of the source's content identity and the decoding settings, so a changed source gets a
new file and a stale one is never read.

- Atomic: the images are decoded chunk by chunk into a temporary `.tmp-*` memory-mapped file next to
  the cache (never the whole array in RAM), which `os.replace` moves into place only when complete.
  A build that is killed leaves only its temporary file, which is never read and is removed by the
  next build of the same file.
- One builder: the build holds an exclusive `fcntl.flock` on `<cache>/locks/<file>.lock`; other
  processes (the other ranks of a run, a second run) wait for it and then map the finished file.
- Limited: the `datasets/` folder may hold at most `cache_limit_bytes()` (env `GANCLI_CACHE_MAX_GB`,
  recipe `data.cache_max_gb`, default 8 GiB). A dataset larger than the limit is not cached (it
  streams from its source); to make room for a new file the least recently used files are removed
  (a file's modification time is set each time it is opened, so it is its last use).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import numpy as np

from gancli.errors import UserError

DEFAULT_CACHE_MAX_GB = 8.0
CACHE_MAX_ENV = "GANCLI_CACHE_MAX_GB"


def default_cache_dir() -> str:
    return os.environ.get("GANCLI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gancli")


def cache_limit_gb(max_gb: float | None = None) -> float:
    """The size limit of the datasets cache in GiB: `max_gb`, else $GANCLI_CACHE_MAX_GB, else 8."""
    if max_gb is None:
        env = os.environ.get(CACHE_MAX_ENV, "").strip()
        if not env:
            return DEFAULT_CACHE_MAX_GB
        try:
            max_gb = float(env)
        except ValueError:
            raise UserError(f"{CACHE_MAX_ENV}={env!r} is not allowed: use a number of GiB >= 0, e.g. 8 (0: no cache)") from None
        where = CACHE_MAX_ENV
    else:
        where = "data.cache_max_gb"
    if isinstance(max_gb, bool) or not np.isfinite(max_gb) or max_gb < 0:
        raise UserError(f"{where} {max_gb!r} is not allowed: use a number of GiB >= 0, e.g. 8 (0: no cache)")
    return float(max_gb)


def cache_limit_bytes(max_gb: float | None = None) -> int:
    return int(cache_limit_gb(max_gb) * 2**30)


def datasets_dir(cache_root: str | None = None) -> str:
    return os.path.join(cache_root or default_cache_dir(), "datasets")


def cache_files(folder: str) -> list[tuple[str, int, float]]:
    """(path, bytes, last use) of the finished cache files in `folder` (temporary files excluded)."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for e in entries:
        if e.name.endswith(".npy") and not e.name.startswith(".") and e.is_file():
            try:
                st = e.stat()
            except OSError:
                continue
            out.append((e.path, st.st_size, st.st_mtime))
    return out


def summary(cache_root: str | None = None, max_gb: float | None = None) -> dict:
    """The datasets cache at a glance: folder, files, bytes, limit (for `gancli doctor` and `info`)."""
    folder = datasets_dir(cache_root)
    files = cache_files(folder)
    return {"folder": folder, "files": len(files), "bytes": sum(f[1] for f in files),
            "limit_bytes": cache_limit_bytes(max_gb)}


def describe_summary(s: dict) -> str:
    gib = 2**30
    return (f"{s['folder']}: {s['files']} file(s), {s['bytes'] / gib:.2f} GiB of {s['limit_bytes'] / gib:g} GiB "
            f"(set {CACHE_MAX_ENV} or data.cache_max_gb to change the limit)")


def open_cached(path: str, count: int, shape: tuple[int, ...] | None = None,
                resolution: int | None = None) -> np.ndarray | None:
    """The finished cache file memory-mapped read-only, or None if missing, damaged or of another shape.

    shape: each item's shape, e.g. (3, R, R); None: any square RGB size (`resolution` if given)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or len(arr.shape) < 1 or len(arr) != count:
        return None
    if shape is not None:
        if arr.shape[1:] != tuple(shape):
            return None
    elif arr.ndim != 4 or arr.shape[1] != 3 or arr.shape[2] != arr.shape[3] or (
            resolution is not None and arr.shape[2] != resolution):
        return None
    try:
        os.utime(path)  # its last use, for the least-recently-used eviction
    except OSError:
        pass
    return arr


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive lock for building `path` (blocks while another process builds it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    root = os.path.dirname(os.path.dirname(path))
    folder = os.path.join(root, "locks")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, os.path.basename(path) + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _temp_prefix(path: str) -> str:
    return os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path)[:-4] + "-")


def make_room(folder: str, need: int, limit: int, keep: str | None = None) -> bool:
    """Remove least recently used cache files until `need` more bytes fit under `limit`."""
    if need > limit:
        return False
    files = sorted((f for f in cache_files(folder) if f[0] != keep), key=lambda f: f[2])
    total = sum(f[1] for f in files)
    for path, size, _ in files:
        if total + need <= limit:
            break
        try:
            os.unlink(path)  # a process that has it mapped keeps reading its pages
            total -= size
        except OSError:
            pass
    return total + need <= limit


def build_cached(path: str, count: int, shape: tuple[int, ...], fill: Callable[[np.ndarray], None],
                 limit: int) -> np.ndarray | None:
    """Build the cache file `path` of uint8 [count, *shape] (unless another process just did) and map it.

    path:  the cache file (in `<cache>/datasets/`).
    count: images; shape: one image's shape (3, R, R).
    fill:  writes every image into the array it is given (a memory-mapped temporary file), in
           chunks; a UserError it raises (a bad image) removes the temporary file and propagates.
    limit: the size limit of the folder in bytes; older files are evicted to make room.
    Returns None when the file cannot be written (read-only or full disk): the caller streams.
    """
    need = int(count * int(np.prod(shape)))
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = _locked(path)
        lock.__enter__()
    except OSError:
        return None
    tmp = None
    try:
        arr = open_cached(path, count, shape)
        if arr is not None:  # another process built it while this one waited
            return arr
        prefix = _temp_prefix(path)
        for leftover in os.listdir(folder):  # of a killed build of this file (we hold its lock)
            if os.path.join(folder, leftover).startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, leftover))
        if not make_room(folder, need, limit, keep=path):
            return None
        tmp = f"{prefix}{os.getpid()}.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, *shape))
        if hasattr(os, "posix_fallocate"):  # a full disk is an OSError now, not a SIGBUS while writing
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.path.getsize(tmp))
            finally:
                os.close(fd)
        try:
            fill(out)
            out.flush()
        finally:
            del out
        os.replace(tmp, path)
        tmp = None
        return open_cached(path, count, shape)
    except OSError:
        return None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        lock.__exit__(None, None, None)
