"""Build C++/CUDA extensions on first use: a keyed cache, a lock that cannot hang, loud failures.

`Extension(name, sources)` describes one extension; `Extension.load()` returns the imported module,
building it first when no cached build exists. Nothing here runs at import time, and this module does
not import torch until a build or a load needs it.

Cache. Each build lives in `<cache root>/<name>-<key>/`, where `key` hashes the sources (names and
bytes), the compilers' version lines, the GPU architectures, the torch, CUDA and Python versions and
the compile flags. Anything that changes one of them gets a fresh directory; an unchanged setup reuses
the built module without running the compiler (or ninja) again. The cache root is
`$GANCLI_OPS_CACHE`, else `$GANCLI_CACHE/ops`, else `~/.cache/gancli/ops`.

Lock. One process builds; the others (DDP ranks, parallel jobs) wait for it and then load its result.
The lock is a file created atomically (`O_CREAT | O_EXCL`) holding the owner's PID, host and start
time; the owner touches it every few seconds while it builds. A waiter takes over a lock whose owner
is gone: on the same host when the PID no longer exists, and on any host when the file has not been
touched for `stale_after` seconds; it says so (with the lock's path). A waiter gives up after
`timeout` seconds (`$GANCLI_OPS_LOCK_TIMEOUT`, default 900) with an error that names the lock file,
its owner and what to do.

Failure. A failed build raises `BuildError` with the compiler's message and the build directory. The
failure is recorded in the build directory so that processes that were waiting for that very build
report it instead of compiling again; a process started later tries again (the user may have fixed
the cause).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from gancli.errors import UserError

DEFAULT_LOCK_TIMEOUT = 900.0  # seconds a process waits for another one's build
DEFAULT_STALE_AFTER = 120.0  # seconds without a heartbeat after which another host's lock is stale
HEARTBEAT = 5.0  # seconds between the owner's touches of its lock file
LOCK_NAME = "build.lock"
DONE_NAME = "build.json"  # written last: the build directory holds a complete, loadable module
FAILED_NAME = "failed.json"
LOG_NAME = "build.log"  # the compiler's full output of the last failed build


class BuildError(Exception):
    """A build failed. `message` is the compiler's output, `build_dir` where it ran."""

    def __init__(self, name: str, build_dir: Path, message: str):
        self.name, self.build_dir, self.message = name, Path(build_dir), message.strip()
        super().__init__(f"building the {name} extension failed in {build_dir}:\n{self.message}")

    @property
    def log_path(self) -> Path:
        """The file holding the compiler's full output."""
        return self.build_dir / LOG_NAME

    def summary(self, max_lines: int = 12) -> str:
        """The compiler's lines that say what went wrong (errors first, each once, no command lines)."""
        import re

        lines, seen = [], set()
        for line in self.message.splitlines():
            line = line.strip()
            # torch's header ("Error building extension 'x': [1/4] nvcc ...") and ninja's command lines.
            if (not line or line in seen or line.startswith("Error building extension")
                    or re.match(r"^\[\d+/\d+\] ", line) or line.startswith("FAILED:")):
                continue
            seen.add(line)
            lines.append(line)
        errors = [line for line in lines if re.search(r"\berror\b", line, re.IGNORECASE)]
        picked = (errors or lines)[:max_lines]
        return "\n".join(picked) if picked else "(no compiler output)"


class LockTimeout(UserError):
    """Waited too long for another process's build."""


class StaleLockWarning(UserWarning):
    """A build lock left by a process that is gone was removed."""


def announce(message: str) -> None:
    """One line on stderr about a build (they take minutes: the user should know what is happening)."""
    print(f"gancli: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where builds are cached: $GANCLI_OPS_CACHE, else $GANCLI_CACHE/ops, else ~/.cache/gancli/ops."""
    explicit = os.environ.get("GANCLI_OPS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    root = os.environ.get("GANCLI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gancli")
    return Path(root).expanduser() / "ops"


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"${name} is {value!r}; it must be a number of seconds") from None
    if seconds <= 0:
        raise UserError(f"${name} is {value!r}; it must be a positive number of seconds")
    return seconds


# --------------------------------------------------------------------------------------------------
# Facts that go into the cache key


def version_line(cmd: Sequence[str], first: bool = False) -> str | None:
    """First or last non-empty output line of `cmd` (e.g. `nvcc --version`), or None if it cannot run."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return (lines[0] if first else lines[-1]) if lines else None


def nvcc_path() -> str | None:
    """The nvcc that torch's extension builder will use: $CUDA_HOME/bin/nvcc, else the one on PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and Path(home, "bin", "nvcc").is_file():
            return str(Path(home, "bin", "nvcc"))
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def compiler_facts(cuda: bool) -> dict[str, str | None]:
    """Version lines of the host C++ compiler and (for CUDA builds) nvcc."""
    cxx = os.environ.get("CXX", "c++")
    facts = {"cxx": version_line([cxx, "--version"], first=True)}
    if cuda:
        nvcc = nvcc_path()
        facts["nvcc"] = version_line([nvcc, "--version"]) if nvcc else None
    return facts


def cuda_archs() -> list[str]:
    """Compute capabilities of the visible GPUs, e.g. ['9.0'] (what the kernels are compiled for)."""
    import torch

    if not torch.cuda.is_available():
        return []
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return [f"{major}.{minor}" for major, minor in sorted(caps)]


def cache_key(sources: Sequence[Path], facts: dict) -> str:
    """Hex digest over the sources' names and bytes and the facts (compilers, archs, versions, flags)."""
    h = hashlib.sha256()
    for path in sorted(Path(s) for s in sources):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update(json.dumps(facts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# The lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class BuildLock:
    """An exclusive lock file that detects dead owners and never waits forever.

    Use as a context manager. `acquire` returns the seconds spent waiting. `notes` collects what the
    lock saw (stale locks taken over), for the caller to report.
    """

    def __init__(self, path: Path, timeout: float, stale_after: float = DEFAULT_STALE_AFTER,
                 poll: float = 0.2, heartbeat: float = HEARTBEAT, on_wait: Callable[[str], None] | None = None,
                 announce_after: float = 3.0):
        self.path = Path(path)
        self.on_wait, self.announce_after = on_wait, announce_after
        self.timeout, self.stale_after, self.poll, self.heartbeat = timeout, stale_after, poll, heartbeat
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{time.time()}"

    def _owner(self) -> dict | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: judged by age alone

    def _stale_reason(self, owner: dict) -> str | None:
        """Why the current lock file is stale, or None when its owner may still be building."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        host, pid = owner.get("host"), owner.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid):
            return f"its owner, process {pid} on this host, no longer exists"
        # A live owner touches its lock every few seconds, so an untouched lock is stale even when its
        # PID exists (a PID reused after a crash) or lives on another host (shared file systems).
        if age > self.stale_after:
            who = f"process {pid} on {host}" if host else "an unknown process"
            return f"its owner ({who}) has not touched it for {age:.0f} s"
        return None

    def describe_owner(self) -> str:
        owner = self._owner()
        if owner is None:
            return "no owner"
        started = owner.get("started")
        since = f", building for {time.time() - started:.0f} s" if isinstance(started, int | float) else ""
        return f"process {owner.get('pid', '?')} on {owner.get('host', '?')}{since}"

    def acquire(self) -> float:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None:
                    reason = self._stale_reason(owner)
                    if reason is not None:
                        self._break(reason)
                        continue
                waited = time.monotonic() - start
                if not announced and self.on_wait is not None and waited >= self.announce_after:
                    announced = True
                    self.on_wait(f"waiting for {self.describe_owner()} to finish building (lock {self.path})")
                if waited >= self.timeout:
                    raise LockTimeout(
                        f"waited {waited:.0f} s for the build lock {self.path} held by {self.describe_owner()}; "
                        f"if no other gancli process is building, delete that file and retry "
                        f"(or set $GANCLI_OPS_LOCK_TIMEOUT to wait longer)"
                    ) from None
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                           "token": self._token}, f)
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="gancli-build-lock", daemon=True)
            self._thread.start()
            return time.monotonic() - start

    def _break(self, reason: str) -> None:
        """Remove a stale lock (rename first, so two waiters cannot both remove a fresh one)."""
        grave = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{threading.get_ident()}")
        try:
            os.replace(self.path, grave)
        except FileNotFoundError:
            return
        try:
            owner = json.loads(grave.read_text())
        except (OSError, ValueError):
            owner = {}
        reason_now = self._stale_reason_of_file(grave, owner)
        if reason_now is None and owner.get("token"):
            # The file we moved is a live lock taken between our check and the rename: put it back.
            try:
                os.link(grave, self.path)
            except OSError:
                pass
            grave.unlink(missing_ok=True)
            return
        grave.unlink(missing_ok=True)
        note = f"removed stale build lock {self.path}: {reason}"
        self.notes.append(note)
        warnings.warn(note, StaleLockWarning, stacklevel=3)

    def _stale_reason_of_file(self, path: Path, owner: dict) -> str | None:
        saved, self.path = self.path, path
        try:
            return self._stale_reason(owner)
        finally:
            self.path = saved

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        owner = self._owner()
        if owner and owner.get("token") == self._token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------------------------------
# Compiling and loading


def torch_compile(name: str, sources: list[Path], build_dir: Path, cuda: bool, archs: list[str],
                  extra_cflags: list[str], extra_cuda_cflags: list[str], verbose: bool = False):
    """Build with `torch.utils.cpp_extension.load` (ninja) into `build_dir`; returns the module."""
    from torch.utils import cpp_extension

    # Our lock already serializes builders; a baton file torch left behind after a killed build would
    # make torch wait forever, so any one found here is stale by construction.
    (build_dir / "lock").unlink(missing_ok=True)
    saved = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if cuda and archs:
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    try:
        return cpp_extension.load(
            name=name, sources=[str(s) for s in sources], build_directory=str(build_dir),
            extra_cflags=extra_cflags, extra_cuda_cflags=extra_cuda_cflags if cuda else None,
            extra_include_paths=[str(sources[0].parent)], with_cuda=cuda, verbose=verbose,
        )
    finally:
        if cuda and archs:
            if saved is None:
                os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
            else:
                os.environ["TORCH_CUDA_ARCH_LIST"] = saved


def import_built(name: str, library: Path):
    """Import an already built extension module from its shared library, without ninja."""
    if name in sys.modules:
        return sys.modules[name]
    loader = importlib.machinery.ExtensionFileLoader(name, str(library))
    spec = importlib.util.spec_from_file_location(name, str(library), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


CompileFn = Callable[..., object]


class Extension:
    """One C++/CUDA extension built on first use and cached.

    Args:
        name:              Base module name (the cache key is appended, so changed sources never
                           clash with an old module already imported in this process).
        sources:           The .cpp/.cu files. Headers that they include go into `depends`.
        depends:           Further files whose bytes go into the cache key (headers).
        cuda:              Compile .cu files with nvcc and key the cache on the GPU architectures.
        extra_cflags:      Extra host compiler flags.
        extra_cuda_cflags: Extra nvcc flags.
        compile_fn:        How to build: `compile_fn(name, sources, build_dir, cuda, archs, extra_cflags,
                           extra_cuda_cflags)` -> module. Default: `torch_compile`. Tests pass a fake.
        facts:             Cache-key facts; default: compilers, archs, torch/CUDA/Python versions.
        root:              Cache root; default `cache_root()` at load time.
        timeout:           Seconds to wait for another process's build (default $GANCLI_OPS_LOCK_TIMEOUT
                           or 900).
        stale_after:       Seconds without heartbeat after which a lock is stale.
        announce_fn:       Where one-line progress messages go (building..., waiting for...); default
                           stderr, None = silent.
        announce_after:    Seconds of waiting for another process's build before saying so.
    """

    def __init__(self, name: str, sources: Sequence[Path], depends: Sequence[Path] = (), cuda: bool = True,
                 extra_cflags: Sequence[str] = (), extra_cuda_cflags: Sequence[str] = (),
                 compile_fn: CompileFn | None = None, import_fn: Callable | None = None,
                 facts: dict | None = None, root: Path | None = None,
                 timeout: float | None = None, stale_after: float = DEFAULT_STALE_AFTER,
                 announce_fn: Callable[[str], None] | None = announce, announce_after: float = 3.0):
        self.name = name
        self.sources = [Path(s) for s in sources]
        self.depends = [Path(s) for s in depends]
        self.cuda = cuda
        self.extra_cflags, self.extra_cuda_cflags = list(extra_cflags), list(extra_cuda_cflags)
        self.compile_fn = compile_fn or torch_compile
        self.import_fn = import_fn or import_built
        self._facts, self._root = facts, root
        self.timeout, self.stale_after = timeout, stale_after
        self.announce = announce_fn or (lambda message: None)
        self.announce_after = announce_after
        self.module = None
        self.error: BuildError | None = None
        self.notes: list[str] = []  # what happened: cache hit, waited for another process, stale locks
        self.last = {}  # timings and paths of the last load(): built, seconds, build_dir
        self._mutex = threading.Lock()

    def facts(self) -> dict:
        if self._facts is None:
            import platform

            import torch

            archs = cuda_archs() if self.cuda else []
            self._facts = {
                "compilers": compiler_facts(self.cuda), "archs": archs, "torch": torch.__version__,
                "torch_cuda": torch.version.cuda, "python": platform.python_version(),
                "cflags": self.extra_cflags, "cuda_cflags": self.extra_cuda_cflags,
            }
        return self._facts

    def build_dir(self) -> Path:
        key = cache_key(self.sources + self.depends, self.facts())
        return (self._root or cache_root()) / f"{self.name}-{key}"

    def module_name(self, build_dir: Path) -> str:
        return f"{self.name}_{build_dir.name.rsplit('-', 1)[1]}"

    def load(self):
        """The built module (building it if needed). Raises `BuildError` or `LockTimeout`.

        A failure is remembered: later calls in this process raise the same `BuildError` at once.
        """
        with self._mutex:
            if self.module is not None:
                return self.module
            if self.error is not None:
                raise self.error
            try:
                self.module = self._load()
            except BuildError as e:
                self.error = e
                raise
            return self.module

    def _load(self):
        start = time.monotonic()
        build_dir = self.build_dir()
        name = self.module_name(build_dir)
        done = build_dir / DONE_NAME
        cached = self._read_done(done, build_dir)
        if cached is not None:
            module = self.import_fn(*cached)
            self.notes.append(f"loaded the cached build from {build_dir}")
            self.last = {"built": False, "seconds": time.monotonic() - start, "build_dir": str(build_dir)}
            return module
        timeout = self.timeout if self.timeout is not None else _env_seconds(
            "GANCLI_OPS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
        lock = BuildLock(build_dir / LOCK_NAME, timeout=timeout, stale_after=self.stale_after,
                         on_wait=self.announce, announce_after=self.announce_after)
        asked = time.time()
        waited = lock.acquire()
        try:
            self.notes.extend(lock.notes)
            cached = self._read_done(done, build_dir)
            if cached is not None:  # another process built it while we waited
                module = self.import_fn(*cached)
                self.notes.append(f"waited {waited:.1f} s for another process to build {build_dir}")
                self.last = {"built": False, "seconds": time.monotonic() - start, "build_dir": str(build_dir)}
                return module
            failed = self._read_failed(build_dir / FAILED_NAME)
            if failed is not None and failed.get("time", 0) >= asked:
                # The process we waited for failed on this very build: report its error, don't repeat it.
                raise BuildError(self.name, build_dir, failed.get("message", ""))
            (build_dir / FAILED_NAME).unlink(missing_ok=True)
            self.announce(f"building {self.name} in {build_dir} (first use; this can take a few minutes)")
            try:
                module = self.compile_fn(name, self.sources, build_dir, self.cuda,
                                         self.facts().get("archs", []), self.extra_cflags, self.extra_cuda_cflags)
            except Exception as e:  # the compiler's message is in the exception (torch puts ninja's output there)
                message = _error_text(e)
                (build_dir / LOG_NAME).write_text(message + "\n")
                _write_json(build_dir / FAILED_NAME, {"time": time.time(), "message": message})
                raise BuildError(self.name, build_dir, message) from e
            library = Path(getattr(module, "__file__", "") or "")
            # torch may rename a rebuilt module (name_v1); the cached import must use its real name.
            _write_json(done, {"module": getattr(module, "__name__", name), "library": library.name, "facts": self.facts(),
                               "seconds": round(time.monotonic() - start, 2), "time": time.time()})
            self.notes.append(f"built {name} in {time.monotonic() - start:.1f} s in {build_dir}")
            self.last = {"built": True, "seconds": time.monotonic() - start, "build_dir": str(build_dir)}
            return module
        finally:
            lock.release()

    def _read_done(self, done: Path, build_dir: Path) -> tuple[str, Path] | None:
        """(module name, library) of a complete build in `build_dir`, or None."""
        try:
            info = json.loads(done.read_text())
        except (OSError, ValueError):
            return None
        library = build_dir / str(info.get("library", ""))
        if not info.get("library") or not info.get("module") or not library.is_file():
            return None
        return str(info["module"]), library

    @staticmethod
    def _read_failed(path: Path) -> dict | None:
        try:
            info = json.loads(path.read_text())
            return info if isinstance(info, dict) else None
        except (OSError, ValueError):
            return None


def _error_text(e: BaseException) -> str:
    """The compiler's output for a failed build; type and message for anything else."""
    text = str(e)
    parts = [text if text.startswith("Error building extension") else f"{type(e).__name__}: {text}"]
    output = getattr(e, "output", None)
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    if output and output not in parts[0]:
        parts.append(str(output))
    return "\n".join(p for p in parts if p) or type(e).__name__


def _write_json(path: Path, data: dict) -> None:
    """Atomic write (temporary file + rename), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)
