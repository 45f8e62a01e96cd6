"""Snapshots, training states, RNG states, atomic writes and finding the latest checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.errors import UserError
from gancli.fileio import atomic_path, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from gancli.train import checkpoint as ck

ALL_DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.float64,
    torch.int32,
    torch.int16,
    torch.int8,
]


def _tensor(dtype: torch.dtype, shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(0, 100, shape, generator=g).to(dtype)


def _modules() -> dict[str, dict[str, torch.Tensor]]:
    G = {f"w_{str(d).replace('torch.', '')}": _tensor(d, (3, 5), i) for i, d in enumerate(ALL_DTYPES)}
    G["scalar"] = torch.tensor(1.5)
    G["empty"] = torch.zeros(0, 4)
    base = _tensor(torch.float32, (6, 8), 99)
    D = {
        "transposed": base.t(),  # non-contiguous
        "row_view": base[2],  # view into a larger storage
        "tied_a": base,  # shares storage with the two above
        "tied_b": base,  # same tensor twice
        "param": torch.nn.Parameter(_tensor(torch.float32, (4,), 98)),  # requires grad
    }
    return {"G_ema": {k: v.clone() for k, v in G.items()}, "G": G, "D": D, "aux": {}}


RECIPE = {
    "name": "tiny-test",
    "model": {"G": {"kind": "stylegan2", "z_dim": 16}, "D": {"kind": "stylegan2"}},
    "data": {"resolution": 32},
    "train": {"lr": 0.002, "betas": [0.0, 0.99]},
}
META = {"kimg": 12, "step": 3000, "note": "ünïcode", "buffers": {"G": ["w_int64"]}}


@pytest.fixture
def snap(tmp_path) -> Path:
    path = tmp_path / "snapshot-000012.safetensors"
    ck.save_snapshot(path, _modules(), RECIPE, META)
    return path


def _msg(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# --- snapshots: round trip -------------------------------------------------------------------------


def test_snapshot_round_trip_all_dtypes(snap):
    original = _modules()
    loaded = ck.load_snapshot(snap)
    assert set(loaded.modules) == set(original)
    assert loaded.modules["aux"] == {}
    for mod, sd in original.items():
        assert set(loaded.modules[mod]) == set(sd), mod
        for name, t in sd.items():
            got = loaded.modules[mod][name]
            assert got.dtype == t.dtype, (mod, name)
            assert got.shape == t.shape, (mod, name)
            assert torch.equal(got, t.detach()), (mod, name)
    assert loaded.recipe == RECIPE
    for k, v in META.items():
        assert loaded.meta[k] == v
    assert "created" in loaded.meta
    assert loaded.path == snap
    assert len(loaded.content_sha256) == 64
    assert loaded.format_version == 1


def test_save_does_not_modify_inputs_and_loaded_tensors_are_independent(snap):
    mods = _modules()
    before = {k: v.clone() for k, v in mods["D"].items()}
    ck.save_snapshot(snap.parent / "b.safetensors", mods, RECIPE, META)
    for k, v in before.items():
        assert torch.equal(mods["D"][k], v)
    loaded = ck.load_snapshot(snap.parent / "b.safetensors")
    loaded.modules["D"]["tied_a"].add_(1)
    assert not torch.equal(loaded.modules["D"]["tied_a"], loaded.modules["D"]["tied_b"])


def test_snapshot_metadata_fields(snap):
    from safetensors import safe_open

    with safe_open(str(snap), "pt") as f:
        md = f.metadata()
    assert md["format"] == "gancli-snapshot"
    assert md["format_version"] == "1"
    assert json.loads(md["recipe"]) == RECIPE
    assert json.loads(md["meta"])["kimg"] == 12
    assert len(md["content_sha256"]) == 64
    with safe_open(str(snap), "pt") as f:
        assert "G_ema.w_float32" in f.keys()


def test_snapshot_hash_is_deterministic(tmp_path):
    meta = {**META, "created": "2024-01-01T00:00:00Z"}
    h1 = ck.save_snapshot(tmp_path / "a.safetensors", _modules(), RECIPE, meta)
    h2 = ck.save_snapshot(tmp_path / "b.safetensors", _modules(), RECIPE, meta)
    assert h1 == h2
    mods = _modules()
    mods["G"]["w_float32"][0, 0] += 1
    assert ck.save_snapshot(tmp_path / "c.safetensors", mods, RECIPE, meta) != h1


def test_save_rejects_unsupported_values(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        ck.save_snapshot(tmp_path / "x.safetensors", {"G": {"c": torch.zeros(2, dtype=torch.complex64)}}, {})
    with pytest.raises(ValueError, match="without '.'"):
        ck.save_snapshot(tmp_path / "x.safetensors", {"G.ema": {"w": torch.zeros(2)}}, {})
    with pytest.raises(TypeError):
        ck.save_snapshot(tmp_path / "x.safetensors", {"G": {"w": [1, 2]}}, {})
    assert not (tmp_path / "x.safetensors").exists()
    assert os.listdir(tmp_path) == []  # no temp files left behind


# --- snapshots: bad files --------------------------------------------------------------------------


def _data_start(path: Path) -> int:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return 8 + n


def test_tampered_tensor_byte_is_refused(snap):
    raw = bytearray(snap.read_bytes())
    pos = _data_start(snap) + 5
    raw[pos] ^= 0x01
    snap.write_bytes(bytes(raw))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(snap)
    msg = _msg(e)
    assert snap.name in msg and "content hash mismatch" in msg and "refusing" in msg
    with pytest.raises(UserError, match="content hash mismatch"):
        ck.describe_checkpoint(snap)
    # explicitly skipping verification still loads it (for forensics)
    assert ck.load_snapshot(snap, verify=False).modules


def _rewrite_metadata(path: Path, out: Path, change) -> None:
    """Rewrite the file with edited metadata but the same tensor bytes (keeps content_sha256)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        md = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(md)
    save_file(tensors, str(out), metadata=md)


def test_tampered_recipe_is_refused(snap, tmp_path):
    out = tmp_path / "edited.safetensors"

    def edit(md):
        r = json.loads(md["recipe"])
        r["train"]["lr"] = 0.5
        md["recipe"] = json.dumps(r)

    _rewrite_metadata(snap, out, edit)
    with pytest.raises(UserError) as e:
        ck.load_snapshot(out)
    assert out.name in _msg(e) and "content hash mismatch" in _msg(e)


def test_tampered_meta_is_refused(snap, tmp_path):
    out = tmp_path / "edited.safetensors"
    _rewrite_metadata(
        snap, out, lambda md: md.update(meta=md["meta"].replace('"step": 3000', '"step": 3001'))
    )
    with pytest.raises(UserError, match="content hash mismatch") as e:
        ck.load_snapshot(out)
    assert out.name in _msg(e)


def test_unmodified_rewrite_is_accepted(snap, tmp_path):
    """The hash covers content, not byte layout: the same content written again still verifies."""
    out = tmp_path / "same.safetensors"
    _rewrite_metadata(snap, out, lambda md: None)
    ck.load_snapshot(out)


def test_corrupt_meta_json(snap, tmp_path):
    out = tmp_path / "badjson.safetensors"
    _rewrite_metadata(snap, out, lambda md: md.update(meta="{not json"))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(out, verify=False)
    assert out.name in _msg(e) and "meta" in _msg(e) and "not valid JSON" in _msg(e)
    with pytest.raises(UserError, match="content hash mismatch"):
        ck.load_snapshot(out)


def test_newer_format_version_is_refused(snap, tmp_path):
    out = tmp_path / "future.safetensors"
    _rewrite_metadata(snap, out, lambda md: md.update(format_version="2"))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(out)
    assert out.name in _msg(e) and "newer gancli" in _msg(e) and "upgrade" in _msg(e)


@pytest.mark.parametrize("keep", [4, 20, 200, -1])
def test_truncated_file(snap, keep):
    raw = snap.read_bytes()
    snap.write_bytes(raw[:keep] if keep > 0 else raw[:keep])
    with pytest.raises(UserError) as e:
        ck.load_snapshot(snap)
    assert snap.name in _msg(e) and "truncated" in _msg(e)


def test_trailing_garbage(snap):
    with open(snap, "ab") as f:
        f.write(b"junk")
    with pytest.raises(UserError, match="corrupt") as e:
        ck.load_snapshot(snap)
    assert snap.name in _msg(e)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "empty" in _msg(e)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.safetensors"
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "no such file" in _msg(e)


def test_directory(tmp_path):
    p = tmp_path / "adir.safetensors"
    p.mkdir()
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "directory" in _msg(e)


def test_random_bytes(tmp_path):
    p = tmp_path / "random.safetensors"
    p.write_bytes(np.random.RandomState(0).bytes(4096).replace(b"\x80", b"\x00"))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "not a safetensors file" in _msg(e)


def test_text_file(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("hello, this is not a checkpoint at all\n" * 10)
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "not a gancli checkpoint" in _msg(e)


def test_safetensors_from_another_tool(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "model.safetensors"
    save_file({"weight": torch.randn(3, 3)}, str(p))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    assert p.name in _msg(e) and "not a gancli checkpoint" in _msg(e) and "gancli convert" in _msg(e)
    save_file({"weight": torch.randn(3, 3)}, str(p), metadata={"format": "pt"})
    with pytest.raises(UserError, match="not a gancli checkpoint"):
        ck.load_snapshot(p)


class _Payload:
    """Unpickling this runs a shell command that creates the sentinel file."""

    def __init__(self, sentinel: Path, how: str = "os.system"):
        self.sentinel, self.how = sentinel, how

    def __reduce__(self):
        if self.how == "os.system":
            return (os.system, (f"touch '{self.sentinel}'",))
        if self.how == "exec":
            import builtins

            return (builtins.exec, (f"open({str(self.sentinel)!r}, 'w').close()",))
        return (subprocess.call, (["touch", str(self.sentinel)],))


def test_payload_really_would_run(tmp_path):
    """Guard for the tests below: unpickling the payload does create the sentinel."""
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(sentinel)))
    assert sentinel.exists()


@pytest.mark.parametrize("how", ["os.system", "exec", "subprocess"])
@pytest.mark.parametrize("writer", ["pickle", "pickle0", "torch.save"])
def test_pickle_to_load_snapshot_is_refused_and_never_runs(tmp_path, how, writer):
    sentinel = tmp_path / "pwned"
    p = tmp_path / "network-snapshot.pkl"
    obj = {"G_ema": _Payload(sentinel, how)}
    if writer == "torch.save":
        torch.save(obj, p)
    else:
        p.write_bytes(pickle.dumps(obj, protocol=0 if writer == "pickle0" else 4))
    with pytest.raises(UserError) as e:
        ck.load_snapshot(p)
    msg = _msg(e)
    assert p.name in msg
    if writer != "pickle0":
        assert "pickle / torch.save" in msg and "never unpickles" in msg and "gancli convert" in msg
    else:
        assert "gancli convert" in msg
    assert not sentinel.exists()
    with pytest.raises(UserError):
        ck.describe_checkpoint(p)
    assert not sentinel.exists()


# --- training state --------------------------------------------------------------------------------


def _optimizer_state() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).square().mean().backward()
        opt.step()
    return net, opt


def test_training_state_round_trip_with_optimizer(tmp_path):
    net, opt = _optimizer_state()
    state = {
        "optimizers": {"G": opt.state_dict()},
        "ema_beta": 0.999,
        "cur_nimg": 123_456,
        "phase": "Gmain",
        "ada_p": torch.tensor(0.25),
        "nested": [{"a": torch.arange(3)}, (1, 2.5, None, "x")],
        "np_array": np.arange(4, dtype=np.float32),
        "np_scalar": np.float64(0.5),
    }
    p = tmp_path / "state-000012.pt"
    ck.save_training_state(p, state, snapshot_sha256="ab" * 32)
    loaded = ck.load_training_state(p)

    assert loaded["ema_beta"] == 0.999 and loaded["cur_nimg"] == 123_456 and loaded["phase"] == "Gmain"
    assert torch.equal(loaded["ada_p"], torch.tensor(0.25))
    assert torch.equal(loaded["nested"][0]["a"], torch.arange(3))
    assert loaded["nested"][1] == (1, 2.5, None, "x")
    assert torch.equal(loaded["np_array"], torch.arange(4, dtype=torch.float32))
    assert loaded["np_scalar"] == 0.5 and type(loaded["np_scalar"]) is float

    net2, _ = _optimizer_state()
    opt2 = torch.optim.Adam(net2.parameters(), lr=1.0)
    opt2.load_state_dict(loaded["optimizers"]["G"])
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["param_groups"] == sd2["param_groups"]
    for k in sd1["state"]:
        for name, v in sd1["state"][k].items():
            assert torch.equal(v, sd2["state"][k][name])


def test_training_state_rejects_unsafe_values_at_save(tmp_path):
    p = tmp_path / "state.pt"
    with pytest.raises(TypeError, match="state\\['obj'\\]"):
        ck.save_training_state(p, {"obj": object()})
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_training_state_expected_snapshot(tmp_path):
    p = tmp_path / "state.pt"
    ck.save_training_state(p, {"x": 1}, snapshot_sha256="a" * 64)
    assert ck.load_training_state(p, expect_snapshot_sha256="a" * 64) == {"x": 1}
    with pytest.raises(UserError) as e:
        ck.load_training_state(p, expect_snapshot_sha256="b" * 64)
    assert p.name in _msg(e) and "different snapshot" in _msg(e)


@pytest.mark.parametrize("how", ["os.system", "exec", "subprocess"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_training_state_is_refused_and_never_runs(tmp_path, how, writer):
    sentinel = tmp_path / "pwned"
    p = tmp_path / "state-000001.pt"
    obj = {"format": "gancli-training-state", "format_version": 1, "state": {"x": _Payload(sentinel, how)}}
    if writer == "torch.save":
        torch.save(obj, p)
    else:
        p.write_bytes(pickle.dumps(obj))
    with pytest.raises(UserError) as e:
        ck.load_training_state(p)
    msg = _msg(e)
    assert p.name in msg
    assert ("refusing" in msg) if writer == "torch.save" else ("not a gancli training-state file" in msg)
    assert not sentinel.exists()


def test_foreign_and_damaged_training_state(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"model": torch.zeros(2)}, p)
    with pytest.raises(UserError, match="not a gancli training-state") as e:
        ck.load_training_state(p)
    assert p.name in _msg(e)

    good = tmp_path / "good.pt"
    ck.save_training_state(good, {"w": torch.randn(1000)})
    raw = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="truncated or corrupt") as e:
        ck.load_training_state(cut)
    assert cut.name in _msg(e)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty") as e:
        ck.load_training_state(empty)
    assert empty.name in _msg(e)

    with pytest.raises(UserError, match="no such file") as e:
        ck.load_training_state(tmp_path / "missing.pt")
    assert "missing.pt" in _msg(e)

    (tmp_path / "d.pt").mkdir()
    with pytest.raises(UserError, match="directory") as e:
        ck.load_training_state(tmp_path / "d.pt")
    assert "d.pt" in _msg(e)

    snap = tmp_path / "snap.safetensors"
    ck.save_snapshot(snap, {"G": {"w": torch.zeros(1)}}, {}, {})
    with pytest.raises(UserError, match="not a gancli training-state") as e:
        ck.load_training_state(snap)
    assert snap.name in _msg(e)


def test_atomic_write_keeps_old_file_when_writer_raises(tmp_path):
    p = tmp_path / "file.bin"
    p.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(p, "wb") as f:
            f.write(b"new partial")
            raise RuntimeError("disk on fire")
    assert p.read_bytes() == b"old content"
    assert sorted(os.listdir(tmp_path)) == ["file.bin"]


def test_atomic_write_keeps_old_file_when_fsync_or_replace_fails(tmp_path, monkeypatch):
    import gancli.fileio as fileio

    p = tmp_path / "file.bin"
    p.write_bytes(b"old")
    for target in ("fsync", "replace"):

        def boom(*a, **k):
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(fileio.os, target, boom)
            with pytest.raises(OSError):
                atomic_write_bytes(p, b"new")
        assert p.read_bytes() == b"old"
        assert sorted(os.listdir(tmp_path)) == ["file.bin"]


def test_checkpoint_writers_leave_old_file_when_interrupted(tmp_path, monkeypatch):
    """A torch.save / safetensors save that dies half-way leaves the previous checkpoint intact."""
    import safetensors.torch

    snap = tmp_path / "snapshot-000001.safetensors"
    ck.save_snapshot(snap, {"G": {"w": torch.ones(3)}}, RECIPE, META)
    st = tmp_path / "state-000001.pt"
    ck.save_training_state(st, {"step": 1})
    snap_before, st_before = snap.read_bytes(), st.read_bytes()

    def half_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    def half_torch_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", half_save_file)
    monkeypatch.setattr(torch, "save", half_torch_save)
    with pytest.raises(KeyboardInterrupt):
        ck.save_snapshot(snap, {"G": {"w": torch.zeros(3)}}, RECIPE, META)
    with pytest.raises(KeyboardInterrupt):
        ck.save_training_state(st, {"step": 2})
    assert snap.read_bytes() == snap_before and st.read_bytes() == st_before
    assert sorted(os.listdir(tmp_path)) == [snap.name, st.name]


def test_atomic_helpers(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    with atomic_path(tmp_path / "b.bin") as tmp:
        assert tmp.parent == tmp_path and tmp.name != "b.bin"
        tmp.write_bytes(b"by name")
    assert (tmp_path / "b.bin").read_bytes() == b"by name"
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "c", "ab"):
            pass
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.txt", "b.bin"]


def test_atomic_write_keeps_permissions(tmp_path):
    p = tmp_path / "perm.txt"
    p.write_text("x")
    os.chmod(p, 0o640)
    atomic_write_text(p, "y")
    assert (os.stat(p).st_mode & 0o777) == 0o640
    q = tmp_path / "new.txt"
    atomic_write_text(q, "z")
    import gancli.fileio as fileio

    # what a plain open() would give, not mkstemp's 0600
    assert (os.stat(q).st_mode & 0o777) == 0o666 & ~fileio._current_umask()


# --- naming and latest checkpoint ------------------------------------------------------------------


def test_paths():
    assert ck.snapshot_path("runs/x", 12, 3000) == Path("runs/x/snapshot-000012-step00003000.safetensors")
    assert ck.state_path("runs/x", 12, 3000) == Path("runs/x/state-000012-step00003000.pt")
    # the names of runs written before steps were in the name
    assert ck.snapshot_path("runs/x", 12) == Path("runs/x/snapshot-000012.safetensors")
    assert ck.state_path("runs/x", 1234567) == Path("runs/x/state-1234567.pt")
    with pytest.raises(ValueError):
        ck.snapshot_path("runs/x", -1)
    with pytest.raises(ValueError):
        ck.snapshot_path("runs/x", 1.5)
    with pytest.raises(ValueError):
        ck.snapshot_path("runs/x", 1, -2)


def _save(run: Path, kimg: int, step: int | None = None, keep: int = 0) -> ck.CheckpointPair:
    step = kimg * 10 if step is None else step
    return ck.save_checkpoint(
        run,
        kimg,
        step=step,
        modules={"G": {"w": torch.full((2,), float(step))}},
        recipe=RECIPE,
        meta={},
        state={"cur_nimg": step * 100},
        keep=keep,
    )


def test_latest_checkpoint_and_load(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert ck.latest_checkpoint(run) is None
    for kimg in (0, 4, 8):
        _save(run, kimg)
    pair = ck.latest_checkpoint(run)
    assert pair == ck.CheckpointPair(run / "snapshot-000008-step00000080.safetensors",
                                     run / "state-000008-step00000080.pt", 8, 80)
    snap, state = ck.load_checkpoint(pair)
    assert snap.meta["kimg"] == 8 and snap.meta["step"] == 80 and state == {"cur_nimg": 8000}
    assert torch.equal(snap.modules["G"]["w"], torch.full((2,), 80.0))


def test_checkpoints_within_one_kimg_get_their_own_names(tmp_path):
    """Two saves less than 1 kimg apart used to share a name and replace each other."""
    run = tmp_path / "run"
    first, second = _save(run, 0, step=3), _save(run, 0, step=7)
    assert first.snapshot != second.snapshot and first.snapshot.is_file() and first.state.is_file()
    assert ck.latest_checkpoint(run) == second
    with pytest.raises(ValueError, match="never overwritten"):
        _save(run, 0, step=7)  # a finished checkpoint stays as it was
    assert ck.load_checkpoint(second)[1] == {"cur_nimg": 700}


def test_old_kimg_names_still_load_and_sort_before_new_ones(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    digest = ck.save_snapshot(run / "snapshot-000080.safetensors", {"G": {"w": torch.ones(2)}}, RECIPE, {"kimg": 80})
    ck.save_training_state(run / "state-000080.pt", {"cur_nimg": 80000}, snapshot_sha256=digest)
    old = ck.latest_checkpoint(run)
    assert old == ck.CheckpointPair(run / "snapshot-000080.safetensors", run / "state-000080.pt", 80, None)
    assert ck.resolve_checkpoint(run / "snapshot-000080.safetensors", with_state=True) == old
    new = _save(run, 80, step=20001)  # the same run continued by this version
    assert ck.latest_checkpoint(run) == new
    assert [p.snapshot.name for p in ck.list_checkpoints(run)] == [
        "snapshot-000080.safetensors", "snapshot-000080-step00020001.safetensors"]


def test_keep_removes_older_pairs_only_after_the_new_one_is_written(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for step in (1, 2, 3):
        _save(run, 0, step=step, keep=2)
    assert sorted(p.name for p in run.iterdir()) == [
        "snapshot-000000-step00000002.safetensors", "snapshot-000000-step00000003.safetensors",
        "state-000000-step00000002.pt", "state-000000-step00000003.pt"]
    # a failing write of the new pair removes nothing
    from gancli.train import checkpoint as pairs

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pairs, "save_training_state", broken)
    with pytest.raises(OSError):
        _save(run, 0, step=4, keep=1)
    assert ck.latest_checkpoint(run).step == 3
    assert (run / "state-000000-step00000002.pt").is_file()


def test_resolve_checkpoint(tmp_path):
    run = tmp_path / "run"
    first, second = _save(run, 0, step=1), _save(run, 1, step=2)
    assert ck.resolve_checkpoint(run) == second
    assert ck.resolve_checkpoint(second.snapshot, with_state=True) == second
    # an earlier snapshot of a run with later ones: resuming from it would rewrite them
    with pytest.raises(UserError, match="later checkpoints"):
        ck.resolve_checkpoint(first.snapshot, with_state=True, option="--resume")
    assert ck.resolve_checkpoint(first.snapshot) == first  # reading it is fine
    other = tmp_path / "network.pkl"
    other.write_bytes(b"x")
    assert ck.resolve_checkpoint(other) == ck.CheckpointPair(other, None, 0)
    with pytest.raises(UserError, match="--resume .*network.pkl.*without its training state"):
        ck.resolve_checkpoint(other, with_state=True, option="--resume")
    second.state.unlink()
    with pytest.raises(UserError, match="training state .* is missing"):
        ck.resolve_checkpoint(second.snapshot, with_state=True)
    with pytest.raises(UserError, match="no such file"):
        ck.resolve_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no complete checkpoint"):
        ck.resolve_checkpoint(tmp_path / "empty")


def test_latest_checkpoint_skips_incomplete_pairs(tmp_path):
    run = tmp_path / "run"
    pairs = {kimg: _save(run, kimg) for kimg in (0, 4, 8, 12, 16, 20)}
    pairs[20].state.unlink()  # crash between snapshot and state
    raw = pairs[16].state.read_bytes()
    pairs[16].state.write_bytes(raw[: len(raw) // 2])  # damaged state
    # state written for another snapshot
    ck.save_snapshot(pairs[12].snapshot, {"G": {"w": torch.zeros(2)}}, RECIPE, {})
    # damaged snapshot
    raw = pairs[8].snapshot.read_bytes()
    pairs[8].snapshot.write_bytes(raw[:-3])
    (run / "state-000099-step00000990.pt").write_bytes(b"orphan state without snapshot")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = ck.latest_checkpoint(run)
    assert pair is not None and pair.kimg == 4
    texts = [str(w.message) for w in caught if issubclass(w.category, ck.CheckpointWarning)]
    assert any("snapshot-000020" in t and "missing" in t for t in texts), texts
    assert any("snapshot-000016" in t and "truncated" in t for t in texts), texts
    assert any("snapshot-000012" in t and "different snapshot" in t for t in texts), texts
    assert any("snapshot-000008" in t and "truncated" in t for t in texts), texts


def test_latest_checkpoint_missing_dir(tmp_path):
    with pytest.raises(UserError, match="no such run directory") as e:
        ck.latest_checkpoint(tmp_path / "nope")
    assert "nope" in _msg(e)


# --- describe / info -------------------------------------------------------------------------------


def test_describe_checkpoint(snap):
    desc = ck.describe_checkpoint(snap)
    assert desc["recipe_name"] == "tiny-test"
    assert desc["kimg"] == 12 and desc["step"] == 3000
    assert desc["format_version"] == 1 and desc["verified"] is True
    assert desc["file_size"] == snap.stat().st_size
    assert desc["architecture"]["G.kind"] == "stylegan2"
    assert desc["architecture"]["G.z_dim"] == 16
    assert desc["architecture"]["resolution"] == 32
    mods = _modules()
    numel = {m: sum(t.numel() for t in sd.values()) for m, sd in mods.items()}
    assert desc["modules"]["G_ema"]["parameters"] == numel["G_ema"]
    assert desc["modules"]["G_ema"]["buffers_known"] is False
    # meta lists w_int64 as a buffer of G
    assert desc["modules"]["G"]["buffers"] == mods["G"]["w_int64"].numel()
    assert desc["modules"]["G"]["parameters"] == numel["G"] - mods["G"]["w_int64"].numel()
    assert desc["modules"]["aux"]["parameters"] == 0
    assert desc["total_parameters"] == sum(m["parameters"] for m in desc["modules"].values())

    lines = dict(ck.info_lines(desc))
    assert lines["recipe"] == "tiny-test"
    assert "kimg 12" in lines["progress"]
    assert f"{numel['G_ema']:,} parameters" in lines["G_ema"]

    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(ck.render_info(desc))
    assert "tiny-test" in console.export_text()


def test_checkpoint_module_does_not_import_torch_at_import():
    code = (
        "import sys; import gancli.train, gancli.train.checkpoint, gancli.train.rundir, gancli.fileio; "
        "assert 'torch' not in sys.modules and 'safetensors' not in sys.modules, 'heavy import'"
    )
    subprocess.run([os.sys.executable, "-c", code], check=True)


def test_describe_needs_no_torch(snap):
    code = (
        "import sys; from gancli.train.checkpoint import describe_checkpoint; "
        f"d = describe_checkpoint({str(snap)!r}); assert d['kimg'] == 12; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([os.sys.executable, "-c", code], check=True)


def test_header_length_starting_like_a_pickle_is_still_a_snapshot(tmp_path):
    """The 8-byte header length of a safetensors file can start with 0x80, the pickle marker (about one
    snapshot in 256): such a snapshot loads and is sniffed as a snapshot; real pickles still are not."""
    from gancli.convert import detect_format
    from gancli.convert.safe_pickle import sniff_format

    path = tmp_path / "snapshot-000001.safetensors"
    for pad in range(300):
        ck.save_snapshot(path, _modules(), RECIPE, {**META, "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert ck.load_snapshot(path).meta["kimg"] == 12
    assert detect_format(path) == "gancli-snapshot"
    # a length whose second byte also looks like a pickle protocol (0x0380 = 896 bytes)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes((0x0380).to_bytes(8, "little") + b"{" + b" " * 0x037F)
    assert sniff_format(fake) == "safetensors"
    real = tmp_path / "real.pkl"
    real.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert sniff_format(real) == "pickle"
