"""Building the CUDA ops on first use (gancli.ops.build) and the dispatch auto|cuda|ref, on the CPU.

The build machinery is exercised with a fake compiler (cache key, cache hits and misses, the lock,
stale locks, timeouts, concurrent builders, failure reporting), plus one real C++ build through
`torch.utils.cpp_extension.load` and ninja. The CUDA path's Python half (autograd wiring, separable
passes, the adjoint geometry of upfirdn2d) runs on the CPU against a stand-in kernel module that does
what the CUDA kernels are specified to do; the kernels themselves are tested on a GPU
(tests/test_ops_cuda.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.errors import UserError
from gancli.ops import build
from gancli.ops import dispatch as ops
from gancli.ops.bias_act import ACTIVATION_CODES, ACTIVATIONS, _bias_act_cuda, _bias_act_ref
from gancli.ops.build import BuildError, BuildLock, Extension, LockTimeout
from gancli.ops.upfirdn2d import _upfirdn2d_cuda, _upfirdn2d_torch, setup_filter, transposed_geometry

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
FACTS = {"compilers": {"cxx": "fake c++ 1.0"}, "archs": [], "torch": "x"}


class FakeCompiler:
    """Stands in for nvcc + ninja: writes a 'library' holding the sources' text, counts its runs."""

    def __init__(self, delay: float = 0.0, fail: str | None = None):
        self.delay, self.fail = delay, fail
        self.runs: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name, sources, build_dir, cuda, archs, cflags, cuda_cflags):
        with self._lock:
            self.runs.append(name)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(f"Error building extension '{name}':\n{self.fail}")
        library = Path(build_dir) / f"{name}.so"
        library.write_text("|".join(Path(s).read_text() for s in sources))
        return types.SimpleNamespace(__file__=str(library), text=library.read_text(), origin="compiled")


def fake_import(name, library):
    return types.SimpleNamespace(__file__=str(library), text=Path(library).read_text(), origin="cache")


def make_ext(root: Path, sources, compiler, **kwargs) -> Extension:
    kwargs.setdefault("facts", dict(FACTS))
    kwargs.setdefault("announce_fn", None)
    return Extension("fake_ops", sources, cuda=False, compile_fn=compiler, import_fn=fake_import, root=root,
                     **kwargs)


@pytest.fixture
def sources(tmp_path):
    a = tmp_path / "src" / "a.cpp"
    a.parent.mkdir()
    a.write_text("int a = 1;")
    b = tmp_path / "src" / "b.cu"
    b.write_text("int b = 2;")
    return [a, b]


# ---------------------------------------------------------------------------------------------------
# Cache


def test_first_load_builds_second_process_loads_the_cache(tmp_path, sources):
    compiler = FakeCompiler()
    first = make_ext(tmp_path / "cache", sources, compiler)
    module = first.load()
    assert module.origin == "compiled" and module.text == "int a = 1;|int b = 2;"
    assert first.load() is module  # same process: no second build, no second import
    assert len(compiler.runs) == 1 and first.last["built"]
    build_dir = Path(first.last["build_dir"])
    assert build_dir.parent == tmp_path / "cache" and (build_dir / build.DONE_NAME).is_file()
    assert not (build_dir / build.LOCK_NAME).exists()  # released

    second = make_ext(tmp_path / "cache", sources, compiler)  # a new process, as far as state goes
    again = second.load()
    assert again.origin == "cache" and again.text == module.text
    assert len(compiler.runs) == 1 and not second.last["built"]
    assert any("loaded the cached build" in n for n in second.notes)


def test_changed_source_or_facts_miss_the_cache(tmp_path, sources):
    compiler = FakeCompiler()
    dirs = {make_ext(tmp_path, sources, compiler).build_dir()}
    make_ext(tmp_path, sources, compiler).load()
    sources[1].write_text("int b = 3;")
    changed = make_ext(tmp_path, sources, compiler)
    assert changed.load().text.endswith("int b = 3;")
    assert len(compiler.runs) == 2
    dirs.add(changed.build_dir())
    for key, value in [("archs", ["9.0"]), ("torch", "y"), ("compilers", {"cxx": "fake c++ 2.0"})]:
        dirs.add(make_ext(tmp_path, sources, compiler, facts={**FACTS, key: value}).build_dir())
    assert len(dirs) == 5  # sources, GPU architecture, torch version and compiler all key the cache


def test_module_name_carries_the_key(tmp_path, sources):
    ext = make_ext(tmp_path, sources, FakeCompiler())
    ext.load()
    key = ext.build_dir().name.rsplit("-", 1)[1]
    assert len(key) == 16 and ext.module_name(ext.build_dir()) == f"fake_ops_{key}"


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GANCLI_OPS_CACHE", raising=False)
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "c"))
    assert build.cache_root() == tmp_path / "c" / "ops"
    monkeypatch.setenv("GANCLI_OPS_CACHE", str(tmp_path / "k"))
    assert build.cache_root() == tmp_path / "k"


# ---------------------------------------------------------------------------------------------------
# Lock


def _write_lock(path: Path, pid: int, host: str, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "started": time.time() - age}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_dead_process_is_taken_over_and_reported(tmp_path, sources):
    compiler = FakeCompiler()
    ext = make_ext(tmp_path, sources, compiler, timeout=20)
    lock = ext.build_dir() / build.LOCK_NAME
    pid = _dead_pid()
    _write_lock(lock, pid, socket.gethostname())
    start = time.monotonic()
    with pytest.warns(build.StaleLockWarning, match="removed stale build lock"):
        assert ext.load().origin == "compiled"
    assert time.monotonic() - start < 10
    note = next(n for n in ext.notes if "stale" in n)
    assert str(lock) in note and f"process {pid}" in note and "no longer exists" in note


def test_stale_lock_from_another_host_is_judged_by_its_heartbeat(tmp_path, sources):
    ext = make_ext(tmp_path, sources, FakeCompiler(), timeout=20, stale_after=60)
    lock = ext.build_dir() / build.LOCK_NAME
    _write_lock(lock, 4242, "other-host", age=600)  # not touched for 10 minutes
    with pytest.warns(build.StaleLockWarning, match="other-host"):
        assert ext.load().origin == "compiled"
    assert any("other-host" in n and str(lock) in n for n in ext.notes)


def test_live_lock_times_out_with_the_lock_path_and_owner(tmp_path, sources):
    compiler = FakeCompiler()
    ext = make_ext(tmp_path, sources, compiler, timeout=0.6)
    lock = ext.build_dir() / build.LOCK_NAME
    _write_lock(lock, os.getppid(), socket.gethostname())  # a live process on this host
    start = time.monotonic()
    with pytest.raises(LockTimeout) as info:
        ext.load()
    assert 0.5 < time.monotonic() - start < 10
    message = str(info.value)
    assert str(lock) in message and f"process {os.getppid()}" in message and "delete that file" in message
    assert compiler.runs == [] and lock.exists()  # a live owner's lock is left alone
    # A fresh lock from another host (recent heartbeat) also counts as live.
    _write_lock(lock, 7, "other-host")
    with pytest.raises(LockTimeout, match="process 7 on other-host"):
        make_ext(tmp_path, sources, compiler, timeout=0.3).load()


def test_lock_timeout_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GANCLI_OPS_LOCK_TIMEOUT", "soon")
    with pytest.raises(UserError, match="GANCLI_OPS_LOCK_TIMEOUT"):
        build._env_seconds("GANCLI_OPS_LOCK_TIMEOUT", 1.0)
    monkeypatch.setenv("GANCLI_OPS_LOCK_TIMEOUT", "2.5")
    assert build._env_seconds("GANCLI_OPS_LOCK_TIMEOUT", 1.0) == 2.5


def test_the_owner_heartbeat_keeps_its_lock_fresh(tmp_path):
    path = tmp_path / "x.lock"
    lock = BuildLock(path, timeout=1, heartbeat=0.05)
    with lock:
        os.utime(path, (time.time() - 1000, time.time() - 1000))
        time.sleep(0.3)
        assert time.time() - path.stat().st_mtime < 5
    assert not path.exists()


def test_concurrent_builders_wait_for_one_build(tmp_path, sources):
    compiler = FakeCompiler(delay=1.0)
    said: list[str] = []
    exts = [make_ext(tmp_path, sources, compiler, timeout=30, announce_fn=said.append, announce_after=0.3)
            for _ in range(3)]
    results = [None] * 3

    def run(i):
        results[i] = exts[i].load()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compiler.runs) == 1
    assert sorted(r.origin for r in results) == ["cache", "cache", "compiled"]
    assert sum(any("waited" in n for n in e.notes) for e in exts) == 2
    # The user hears what is going on: one "building" line, and each waiter says whom it waits for.
    assert sum(m.startswith("building fake_ops in ") for m in said) == 1
    waiting = [m for m in said if m.startswith("waiting for process")]
    assert len(waiting) == 2 and all(str(exts[0].build_dir() / build.LOCK_NAME) in m for m in waiting)


WORKER = textwrap.dedent("""
    import sys, time, types
    from pathlib import Path
    sys.path.insert(0, {src!r})
    from gancli.ops.build import Extension

    def compile_fn(name, sources, build_dir, *rest):
        with open({count!r}, "a") as f:
            f.write("build\\n")
        time.sleep(1.0)
        lib = Path(build_dir) / (name + ".so")
        lib.write_text("ok")
        return types.SimpleNamespace(__file__=str(lib))

    ext = Extension("fake_ops", [Path({source!r})], cuda=False, compile_fn=compile_fn,
                    import_fn=lambda n, p: types.SimpleNamespace(__file__=str(p)),
                    facts={{"x": 1}}, root=Path({root!r}), timeout=60)
    ext.load()
    print("built" if ext.last["built"] else "waited")
""")


def test_concurrent_processes_wait_for_one_build(tmp_path, sources):
    count = tmp_path / "count.txt"
    script = WORKER.format(src=str(REPO_SRC), count=str(count), source=str(sources[0]), root=str(tmp_path / "c"))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert count.read_text().splitlines() == ["build"]
    assert sorted(out.strip() for out, _ in outs) == ["built", "waited"]


# ---------------------------------------------------------------------------------------------------
# Failures


COMPILER_ERROR = "bias_act.cu(42): error: expected a \";\"\n1 error detected in the compilation of bias_act.cu"


def test_failed_build_names_the_error_and_directory_and_is_not_repeated(tmp_path, sources):
    compiler = FakeCompiler(fail=COMPILER_ERROR)
    ext = make_ext(tmp_path, sources, compiler)
    with pytest.raises(BuildError) as info:
        ext.load()
    error = info.value
    assert error.build_dir == ext.build_dir() and 'error: expected a ";"' in error.summary()
    assert str(ext.build_dir()) in str(error)
    with pytest.raises(BuildError):
        ext.load()  # remembered in this process
    assert len(compiler.runs) == 1
    assert (ext.build_dir() / build.FAILED_NAME).is_file() and not (ext.build_dir() / build.LOCK_NAME).exists()
    assert COMPILER_ERROR in error.log_path.read_text()  # the full output stays in the build folder
    # A process started later tries again (the user may have fixed the cause) and succeeds.
    fixed = make_ext(tmp_path, sources, FakeCompiler())
    assert fixed.load().origin == "compiled"
    assert not (ext.build_dir() / build.FAILED_NAME).exists()


def test_error_summary_keeps_the_errors_once_without_command_lines(tmp_path):
    output = ("Error building extension 'gancli_cuda_ops_1': [1/3] /usr/bin/nvcc -c bias_act.cu -o bias_act.o\n"
              "FAILED: bias_act.cuda.o\n"
              "bias_act.cu(42): error: identifier \"foo\" is undefined\n"
              "bias_act.cu(42): error: identifier \"foo\" is undefined\n"
              "bias_act.cu(50): warning: unused variable\n"
              "[2/3] c++ -c ops.cpp\n"
              "ninja: build stopped: subcommand failed.\n")
    error = BuildError("gancli_cuda_ops", tmp_path, output)
    assert error.summary().splitlines() == ['bias_act.cu(42): error: identifier "foo" is undefined']
    assert "nvcc -c" not in error.summary()
    no_errors = BuildError("x", tmp_path, "[1/1] c++ x.cpp\nsomething odd happened")
    assert no_errors.summary() == "something odd happened"


def test_waiters_get_the_builders_failure_without_compiling_again(tmp_path, sources):
    compiler = FakeCompiler(delay=0.5, fail=COMPILER_ERROR)
    exts = [make_ext(tmp_path, sources, compiler, timeout=30) for _ in range(3)]
    errors = []

    def run(e):
        try:
            e.load()
        except BuildError as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(e,)) for e in exts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compiler.runs) == 1 and len(errors) == 3
    assert all("expected a" in e.message for e in errors)


# ---------------------------------------------------------------------------------------------------
# Dispatch: auto | cuda | ref


@pytest.fixture
def fresh_dispatch():
    ops.reset_build_state()
    yield
    ops.reset_build_state()
    ops.set_impl("auto")


class FakeCudaTensor:
    """Enough of a CUDA tensor for `resolve_impl` (which only asks where the tensor lives)."""

    is_cuda = True


def test_cpu_tensors_always_use_the_reference_and_never_build(fresh_dispatch, monkeypatch):
    monkeypatch.setattr(ops, "kernels", lambda required: pytest.fail("must not build for CPU tensors"))
    x = torch.randn(2, 3, 4, 4)
    for impl in ops.IMPLS:
        assert ops.resolve_impl(impl, x) == "ref"
    assert ops.resolve_impl("cuda") == "ref"


def test_ref_never_builds(fresh_dispatch, monkeypatch):
    monkeypatch.setattr(ops, "kernels", lambda required: pytest.fail("must not build under 'ref'"))
    ops.set_impl("ref")
    assert ops.resolve_impl(None, FakeCudaTensor()) == "ref"


def _failing_extension(tmp_path, sources, monkeypatch):
    compiler = FakeCompiler(fail=COMPILER_ERROR)
    ext = make_ext(tmp_path, sources, compiler)
    monkeypatch.setattr(ops, "_extension", ext)
    monkeypatch.setattr(torch.version, "cuda", "13.0")  # pretend this torch has CUDA
    return ext, compiler


def test_auto_falls_back_with_one_loud_warning(fresh_dispatch, monkeypatch, tmp_path, sources):
    ext, compiler = _failing_extension(tmp_path, sources, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert ops.resolve_impl("auto", FakeCudaTensor()) == "ref"
    messages = [str(w.message) for w in caught if issubclass(w.category, ops.OpsBuildWarning)]
    assert len(messages) == 1, messages
    assert str(ext.build_dir()) in messages[0] and 'error: expected a ";"' in messages[0]
    assert "falling back to the PyTorch reference ops" in messages[0]
    assert len(compiler.runs) == 1


def test_cuda_fails_hard_with_the_same_facts(fresh_dispatch, monkeypatch, tmp_path, sources):
    ext, _ = _failing_extension(tmp_path, sources, monkeypatch)
    with pytest.raises(UserError) as info:
        ops.resolve_impl("cuda", FakeCudaTensor())
    message = str(info.value)
    assert "\n" not in message
    assert str(ext.build_dir()) in message and 'error: expected a ";"' in message and "--ops ref" in message


def test_cuda_on_a_cpu_build_of_torch_says_why(fresh_dispatch, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError, match="has no CUDA support"):
        ops.resolve_impl("cuda", FakeCudaTensor())


def test_auto_uses_the_kernels_when_they_build(fresh_dispatch, monkeypatch, tmp_path, sources):
    monkeypatch.setattr(ops, "_extension", make_ext(tmp_path, sources, FakeCompiler()))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert ops.resolve_impl("auto", FakeCudaTensor()) == "cuda"
    assert ops.resolve_impl("cuda", FakeCudaTensor()) == "cuda"


def test_importing_gancli_compiles_nothing(tmp_path):
    code = ("import sys, gancli.ops, gancli.families.stylegan2.nets, gancli.cli; "
            "print('torch.utils.cpp_extension' in sys.modules, gancli.ops.dispatch._extension)")
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC), "GANCLI_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]
    assert not (tmp_path / "ops").exists()


def test_cuda_sources_ship_with_the_package():
    folder = ops.CUDA_SOURCE_DIR
    ext = ops.cuda_extension()
    shipped = {p.name for p in folder.iterdir() if p.suffix in (".cu", ".cuh", ".cpp", ".h")}
    assert {p.name for p in ext.sources + ext.depends} == shipped  # every source is in the cache key
    assert {"ops.cpp", "bias_act.cu", "upfirdn2d.cu"} <= shipped
    assert all(p.is_file() and p.parent == folder for p in ext.sources + ext.depends)
    pyproject = (REPO_SRC.parent / "pyproject.toml").read_text()
    for pattern in ("cuda/*.cu", "cuda/*.cuh", "cuda/*.cpp", "cuda/*.h"):
        assert pattern in pyproject


def test_activation_codes_match_the_kernel_header():
    header = (ops.CUDA_SOURCE_DIR / "activation_codes.h").read_text()
    assert set(ACTIVATION_CODES) == set(ACTIVATIONS)
    for name, code in ACTIVATION_CODES.items():
        assert f"k{name.capitalize()} = {code}," in header


# ---------------------------------------------------------------------------------------------------
# A real build through torch.utils.cpp_extension.load and ninja: the CUDA kernel bodies compiled for
# the CPU (tests/cuda_emulation/harness.cpp), which then checks their index arithmetic and formulas.

EMULATION = Path(__file__).resolve().parent / "cuda_emulation" / "harness.cpp"
KERNEL_HEADERS = ["activation_codes.h", "kernel_math.cuh", "bias_act_kernel.cuh", "upfirdn2d_kernel.cuh"]


def emulation_extension(root: Path, **kwargs) -> Extension:
    return Extension("gancli_kernel_emulation", [EMULATION], depends=[ops.CUDA_SOURCE_DIR / h for h in KERNEL_HEADERS],
                     cuda=False, extra_cflags=["-O1"], root=root, announce_fn=None, **kwargs)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """(extension, module, cache root): built once per test session."""
    root = tmp_path_factory.mktemp("emulation-cache")
    ext = emulation_extension(root)
    return ext, ext.load(), root


@pytest.mark.slow
def test_real_ninja_build_then_cached_import(emulated):
    ext, module, root = emulated
    assert ext.last["built"] and (ext.build_dir() / "build.ninja").is_file()
    assert (ext.build_dir() / build.DONE_NAME).is_file() and not (ext.build_dir() / build.LOCK_NAME).exists()
    # A second process: the cached library is imported directly, without running the compiler.
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO_SRC)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        import numpy as np
        from test_ops_build import emulation_extension
        ext = emulation_extension(Path({str(root)!r}), compile_fn=lambda *a: sys.exit("compiled again"))
        out = ext.load().bias_act_f64(np.array([-1.0, 2.0]), np.zeros(0), np.zeros(0), 1, 1, 1, 0, 0.0, 1.0, -1.0, 1, 1)
        print(out.tolist(), ext.last["built"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0.0,", "2.0]", "False"]  # relu


def _memory(t: torch.Tensor) -> np.ndarray:
    """The elements of a dense contiguous or channels-last tensor in memory order."""
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return t.permute(0, 2, 3, 1).reshape(-1).numpy()
    assert t.is_contiguous()
    return t.reshape(-1).numpy()


def emulated_upfirdn2d(module, x, f2, up, down, pad, flip, gain, blocks=3):
    """What upfirdn2d.cu's launcher does, with the kernel body run on the CPU."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    fh, fw = f2.shape
    out_h, out_w = (h * upy + py0 + py1 - fh) // downy + 1, (w * upx + px0 + px1 - fw) // downx + 1
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    y = torch.empty(n, c, out_h, out_w, dtype=x.dtype,
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    fn = module.upfirdn2d_f64 if x.dtype == torch.float64 else module.upfirdn2d_f32
    out = fn(_memory(x), list(x.stride()), list(x.shape), f2.float().numpy(), list(y.shape), list(y.stride()),
             channels_last, upx, upy, downx, downy, px0, py0, flip, gain, blocks)
    return y.copy_(torch.as_strided(torch.from_numpy(out), y.shape, y.stride()))  # a fresh tensor, as at::empty


def emulated_bias_act(module, x, b, grad, dim, act, alpha, gain, clamp, order):
    """What bias_act.cu's launcher does, with the kernel body run on the CPU (2 blocks of 3 threads)."""
    fn = module.bias_act_f64 if x.dtype == torch.float64 else module.bias_act_f32
    g = _memory(torch.empty_like(x).copy_(grad)) if order else np.zeros(0)
    out = fn(_memory(x), np.zeros(0) if b is None else b.numpy(), g, x.stride(dim) if b is not None else 1,
             x.shape[dim], ACTIVATION_CODES[act], order, alpha, gain, -1.0 if clamp is None else clamp, 2, 3)
    return torch.empty_like(x).copy_(torch.as_strided(torch.from_numpy(out), x.shape, x.stride()))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_emulated_upfirdn2d_kernel_matches_reference(emulated, dtype, layout):
    module = emulated[1]
    rng = np.random.RandomState(3 + (dtype == torch.float32) + 2 * (layout == "contiguous"))
    for case in range(40):
        up = tuple(int(v) for v in rng.randint(1, 4, size=2))
        down = tuple(int(v) for v in rng.randint(1, 4, size=2))
        f2 = torch.from_numpy(rng.rand(int(rng.randint(1, 7)), int(rng.randint(1, 7))) + 0.1).float()
        fh, fw = f2.shape
        shape = (int(rng.randint(1, 3)), int(rng.randint(1, 5)), int(rng.randint(1, 9)), int(rng.randint(1, 9)))
        pad = [int(v) for v in rng.randint(-3, 6, size=4)]
        pad[1] = max(pad[1], fw - shape[3] * up[0] - pad[0])
        pad[3] = max(pad[3], fh - shape[2] * up[1] - pad[2])
        flip, gain = bool(rng.randint(2)), float(rng.uniform(0.5, 3))
        x = torch.from_numpy(rng.randn(*shape)).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        got = emulated_upfirdn2d(module, x, f2, up, down, pad, flip, gain)
        expected = _upfirdn2d_torch(x.double(), f2.double(), up, down, pad, flip, gain)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol,
                                   msg=lambda m: f"case {case} x {shape} f {tuple(f2.shape)} up {up} down {down} pad {pad} flip {flip}: {m}")  # noqa: B023


@pytest.mark.slow
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_emulated_bias_act_kernel_matches_reference_and_derivatives(emulated, act, layout):
    module = emulated[1]
    spec = ACTIVATIONS[act]
    torch.manual_seed(len(act))
    # Values around the special points: 0 (relu/lrelu/elu/selu kinks), +-25 (softplus threshold 20).
    special = torch.tensor([0.0, -0.0, 25.0, -25.0, 20.0, 19.5, 1e-3, -1e-3], dtype=torch.float64)
    for case, (dim, use_bias, clamp, gain, alpha) in enumerate(
            [(1, True, None, 1.0, spec.alpha), (1, True, 0.8, 1.7, 0.3), (3, False, 2.0, 0.6, spec.alpha),
             (0, True, None, 2.0, 0.1), (2, True, 1.2, 1.0, spec.alpha)]):
        x = torch.randn(3, 4, 5, 6, dtype=torch.float64) * 3
        x.view(-1)[: special.numel()] = special
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        b = torch.randn(x.shape[dim], dtype=torch.float64) if use_bias else None
        if b is not None and case == 1:
            b[0] = 0.0  # keep the special values special
        dy = torch.randn(x.shape, dtype=torch.float64)
        z = x.clone().requires_grad_(True)
        zb = z if b is None else z + b.reshape([-1 if d == dim else 1 for d in range(4)])
        y = _bias_act_ref(zb, None, dim, spec, alpha, gain, clamp)
        (d1,) = torch.autograd.grad(y, z, torch.ones_like(y), create_graph=True)
        d2 = torch.autograd.grad(d1.sum(), z)[0] if d1.requires_grad else torch.zeros_like(z)
        what = f"{act} case {case} dim {dim} bias {use_bias} clamp {clamp} gain {gain} alpha {alpha}"
        for order, expected in enumerate([y.detach(), dy * d1.detach(), dy * d2]):
            got = emulated_bias_act(module, x, b, dy, dim, act, alpha, gain, clamp, order)
            assert got.stride() == x.stride()
            torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-11, msg=lambda m: f"{what} order {order}: {m}")  # noqa: B023
            got32 = emulated_bias_act(module, x.float(), None if b is None else b.float(), dy.float(), dim, act,
                                      alpha, gain, clamp, order)
            # float32: the same up to float rounding, except exactly where float32 rounding moves a value
            # across a clamp boundary (none of these cases sit on one).
            torch.testing.assert_close(got32.double(), expected, rtol=2e-5, atol=2e-5,
                                       msg=lambda m: f"{what} float32 order {order}: {m}")  # noqa: B023


def test_real_build_failure_carries_the_compiler_message(tmp_path):
    source = tmp_path / "broken.cpp"
    source.write_text("#include <pybind11/pybind11.h>\nint broken( { return 0; }\n")
    ext = Extension("gancli_test_broken", [source], cuda=False, root=tmp_path / "cache")
    with pytest.raises(BuildError) as info:
        ext.load()
    assert "broken.cpp" in info.value.message and "error" in info.value.summary().lower()
    assert info.value.build_dir == ext.build_dir() and ext.build_dir().is_dir()


# ---------------------------------------------------------------------------------------------------
# The CUDA path's Python half, on the CPU, against a stand-in for the kernels


def _fake_bias_act(x, b, grad, code, alpha, gain, clamp, order, dim):
    """What bias_act.cu computes, from the reference by autograd (float64, no graph)."""
    act = next(name for name, c in ACTIVATION_CODES.items() if c == code)
    spec = ACTIVATIONS[act]
    with torch.enable_grad():
        z = x.detach().double().requires_grad_(True)
        zb = z if b is None else z + b.detach().double().reshape([-1 if d == dim else 1 for d in range(x.ndim)])
        y = _bias_act_ref(zb, None, dim, spec, alpha, gain, None if clamp < 0 else clamp)
        if order == 0:
            return y.detach().to(x.dtype)
        (d1,) = torch.autograd.grad(y.sum(), z, create_graph=True)
        if order == 1:
            return (grad.double() * d1).detach().to(x.dtype)
        (d2,) = torch.autograd.grad(d1.sum(), z) if d1.requires_grad else (torch.zeros_like(z),)
        return (grad.double() * d2).detach().to(x.dtype)


def _fake_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    assert f.ndim == 2 and f.dtype == torch.float32  # the kernel's contract
    with torch.no_grad():
        return _upfirdn2d_torch(x.detach(), f.to(x.dtype), (upx, upy), (downx, downy), (px0, px1, py0, py1),
                                flip_filter, gain)


@pytest.fixture
def stand_in_kernels(monkeypatch):
    module = types.SimpleNamespace(bias_act=_fake_bias_act, upfirdn2d=_fake_upfirdn2d)
    monkeypatch.setattr(ops, "_extension", types.SimpleNamespace(load=lambda: module))


GEOMETRIES = [  # up, down, padding, taps, flip
    (1, 1, (1, 1, 1, 1), [1, 3, 3, 1], False),
    (2, 1, (2, 1, 2, 1), [1, 3, 3, 1], False),
    (1, 2, (1, 1, 1, 1), [1, 3, 3, 1], True),
    ((3, 2), (1, 2), (2, -1, 0, 3), [[1, 2, 1], [0, 1, 3]], False),
    ((1, 2), (3, 1), (-1, 4, 2, 0), [1, 2, 3, 4, 3, 2, 1, 1], True),  # separable (8 taps)
    (1, 3, (0, 0, 0, 0), None, False),
]


@pytest.mark.parametrize("up, down, padding, taps, flip", GEOMETRIES)
def test_upfirdn2d_adjoint_geometry_is_the_gradient(up, down, padding, taps, flip):
    f = setup_filter(taps, separable=None) if taps is not None else None
    f2 = torch.ones(1, 1) if f is None else (torch.outer(f, f) if f.ndim == 1 else f)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = _upfirdn2d_torch(x, f2.double(), up, down, padding, flip, 1.5)
    dy = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, dy)
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    g = transposed_geometry((7, 6), tuple(y.shape[2:]), tuple(f2.shape), (upx, upy, downx, downy, *padding))
    adjoint = _upfirdn2d_torch(dy, f2.double(), g[0:2], g[2:4], g[4:8], not flip, 1.5)
    torch.testing.assert_close(adjoint, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up, down, padding, taps, flip", GEOMETRIES)
def test_upfirdn2d_cuda_path_matches_reference_with_gradients(stand_in_kernels, up, down, padding, taps, flip):
    f = setup_filter(taps) if taps is not None else None
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    expected = _upfirdn2d_torch(x, f if f is None else f.double(), up, down, padding, flip, 0.7)
    got = _upfirdn2d_cuda(x, f, up, down, padding, flip, 0.7)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    fn = lambda t: _upfirdn2d_cuda(t, f, up, down, padding, flip, 0.7)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_bias_act_cuda_path_first_and_second_gradients(stand_in_kernels, act, layout):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 2, dtype=torch.float64) * 2
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    spec = ACTIVATIONS[act]
    clamp = 1.5 if act in ("linear", "lrelu", "selu") else None
    fn = lambda t, bb: _bias_act_cuda(t, bb, 1, act, spec.alpha, 1.3, clamp)  # noqa: E731
    torch.testing.assert_close(fn(x, b), _bias_act_ref(x, b, 1, spec, spec.alpha, 1.3, clamp))
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_cuda_path_refuses_third_order_clearly(stand_in_kernels):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = _bias_act_cuda(x, None, 1, "tanh", 0.0, 1.0, None)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order gradients"):
        torch.autograd.grad(gg.sum(), x)


# ---------------------------------------------------------------------------------------------------
# gancli doctor


def _row(rows, name):
    return next(r for r in rows if r[0].strip() == name)


def test_doctor_on_cpu_torch_says_kernels_are_not_built_and_why(cli, monkeypatch):
    from gancli import doctor

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = doctor.checks()
    what, ok, detail, fix = _row(rows, "CUDA kernels")
    assert ok and "not built" in detail and "no CUDA" in detail and "reference ops" in detail
    assert "CUDA build of torch" in fix
    assert _row(rows, "nvcc")[1] and _row(rows, "ninja")[1]  # not needed without CUDA: no problem
    assert "ops" in _row(rows, "ops cache")[2]
    result = cli("doctor")
    assert "CUDA kernels" in result.out and "note" in result.out and "Traceback" not in result.out + result.err


def _pretend_gpu(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    props = types.SimpleNamespace(name="Fake GPU", major=9, minor=0, total_memory=80 * 2**30, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)


def test_doctor_reports_a_failed_build_with_the_compiler_message(fresh_dispatch, monkeypatch, tmp_path, sources):
    from gancli import doctor

    _pretend_gpu(monkeypatch)
    ext = make_ext(tmp_path, sources, FakeCompiler(fail=COMPILER_ERROR))
    monkeypatch.setattr(ops, "_extension", ext)
    rows = doctor.checks()
    assert "Fake GPU, compute capability 9.0" in _row(rows, "GPU 0")[2]
    what, ok, detail, fix = _row(rows, "CUDA kernels")
    assert not ok and str(ext.build_dir()) in detail and 'error: expected a ";"' in detail and "--ops ref" in fix


def test_doctor_builds_and_checks_kernels_when_a_gpu_is_there(fresh_dispatch, monkeypatch, tmp_path, sources):
    from gancli import doctor

    _pretend_gpu(monkeypatch)
    monkeypatch.setattr(ops, "_extension", make_ext(tmp_path, sources, FakeCompiler()))
    checked = []
    monkeypatch.setattr(doctor, "verify_kernels", lambda device: checked.append(device) or [("upfirdn2d", True, "fine")])
    rows = doctor.checks()
    what, ok, detail, fix = _row(rows, "CUDA kernels")
    assert ok and detail.startswith("built in") and str(tmp_path) in detail
    assert checked == ["cuda"] and _row(rows, "upfirdn2d")[1:3] == (True, "fine")


def test_doctor_kernel_check_catches_a_wrong_kernel(stand_in_kernels, monkeypatch):
    from gancli import doctor

    rows = doctor.verify_kernels("cpu", timing_shape=(1, 4, 8, 8))
    assert [(name, ok) for name, ok, _ in rows] == [("upfirdn2d", True), ("bias_act", True)]
    assert all("ms CUDA vs" in detail for _, _, detail in rows)
    module = ops._extension.load()
    wrong = types.SimpleNamespace(upfirdn2d=lambda *a: module.upfirdn2d(*a) * 1.01, bias_act=module.bias_act)
    monkeypatch.setattr(ops, "_extension", types.SimpleNamespace(load=lambda: wrong))
    rows = doctor.verify_kernels("cpu", timing_shape=(1, 4, 8, 8))
    assert [(name, ok) for name, ok, _ in rows] == [("upfirdn2d", False), ("bias_act", True)]


def test_untouched_lock_of_a_live_pid_is_stale(tmp_path, sources):
    """A PID can be reused after a crash: without heartbeats the lock is stale even if the PID exists."""
    ext = make_ext(tmp_path, sources, FakeCompiler(), timeout=20, stale_after=60)
    lock = ext.build_dir() / build.LOCK_NAME
    _write_lock(lock, os.getppid(), socket.gethostname(), age=600)
    with pytest.warns(build.StaleLockWarning):
        assert ext.load().origin == "compiled"
    assert any("has not touched it" in n and str(lock) in n for n in ext.notes)


def test_a_lock_timeout_under_auto_is_paid_once(fresh_dispatch, monkeypatch, tmp_path, sources):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    ext = make_ext(tmp_path, sources, FakeCompiler(), timeout=0.5)
    monkeypatch.setattr(ops, "_extension", ext)
    lock = ext.build_dir() / build.LOCK_NAME
    _write_lock(lock, os.getppid(), socket.gethostname())
    with pytest.warns(ops.OpsBuildWarning, match="build.lock"):
        assert ops.resolve_impl("auto", FakeCudaTensor()) == "ref"
    start = time.monotonic()
    assert ops.resolve_impl("auto", FakeCudaTensor()) == "ref"  # no second wait
    assert time.monotonic() - start < 0.2
    with pytest.raises(UserError, match="build.lock"):  # 'cuda' still reports the cause
        ops.resolve_impl("cuda", FakeCudaTensor())


@pytest.fixture
def emulated_kernels(emulated, monkeypatch):
    """The CUDA path end to end on the CPU: ops.cpp's two functions, backed by the emulated kernel bodies."""
    module = emulated[1]
    codes = {c: name for name, c in ACTIVATION_CODES.items()}

    def upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
        return emulated_upfirdn2d(module, x.detach(), f, (upx, upy), (downx, downy), (px0, px1, py0, py1),
                                  flip_filter, gain)

    def bias_act(x, b, grad, code, alpha, gain, clamp, order, dim):
        return emulated_bias_act(module, x.detach(), None if b is None else b.detach(),
                                 None if grad is None else grad.detach(), dim, codes[code], alpha, gain,
                                 None if clamp < 0 else clamp, order)

    kernels = types.SimpleNamespace(upfirdn2d=upfirdn2d, bias_act=bias_act)
    monkeypatch.setattr(ops, "_extension", types.SimpleNamespace(load=lambda: kernels))


@pytest.mark.slow
@pytest.mark.parametrize("up, down, padding, taps, flip", GEOMETRIES)
def test_emulated_cuda_path_upfirdn2d_gradients(emulated_kernels, up, down, padding, taps, flip):
    f = setup_filter(taps) if taps is not None else None
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    expected = _upfirdn2d_torch(x, f if f is None else f.double(), up, down, padding, flip, 0.7)
    torch.testing.assert_close(_upfirdn2d_cuda(x, f, up, down, padding, flip, 0.7), expected, rtol=1e-12, atol=1e-12)
    fn = lambda t: _upfirdn2d_cuda(t, f, up, down, padding, flip, 0.7)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.slow
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_emulated_cuda_path_bias_act_gradients(emulated_kernels, act):
    torch.manual_seed(1)
    x = (torch.randn(2, 3, 3, 2, dtype=torch.float64) * 2).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    spec = ACTIVATIONS[act]
    fn = lambda t, bb: _bias_act_cuda(t, bb, 1, act, spec.alpha, 1.3, 2.5)  # noqa: E731
    torch.testing.assert_close(fn(x, b), _bias_act_ref(x, b, 1, spec, spec.alpha, 1.3, 2.5), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
