"""Bad input through the command line: one line naming the file and what is allowed, exit code 2,
no traceback, and nothing the user had is modified."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image
from safetensors.torch import save_file

SRC = str(Path(__file__).resolve().parents[1] / "src")


def rgb(path: Path, size=16, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size) if isinstance(size, int) else size, color=(200, 30, 30) if mode != "L" else 128).save(path)
    return path


def good_folder(root: Path, n=4, size=16) -> Path:
    for i in range(n):
        rgb(root / f"a{i}.png", size)
    return root


def snapshot_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def train_dry(cli, data, *extra):
    return cli("train", "quickstart", "--data", data, "--resolution", "16", "--outdir", data.parent / "runs", *extra)


@pytest.mark.parametrize("case, fragments", [
    ("empty", ["no images"]),
    ("corrupt", ["bad.png"]),
    ("truncated", ["cut.png"]),
    ("mixed", ["big.png", "32x32"]),
    ("rgba", ["alpha.png", "gancli dataset"]),
    ("grey", ["grey.png", "gancli dataset"]),
    ("nonsquare", ["wide.png"]),
])
def test_training_data_problems(cli, tmp_path, case, fragments):
    data = tmp_path / "data"
    data.mkdir()
    if case != "empty":
        good_folder(data)
    if case == "corrupt":
        (data / "bad.png").write_bytes(b"not a png at all")
    elif case == "truncated":
        full = rgb(tmp_path / "full.png", 16).read_bytes()
        (data / "cut.png").write_bytes(full[: len(full) // 2])
    elif case == "mixed":
        rgb(data / "big.png", 32)
    elif case == "rgba":
        Image.new("RGBA", (16, 16), (1, 2, 3, 100)).save(data / "alpha.png")
    elif case == "grey":
        rgb(data / "grey.png", 16, mode="L")
    elif case == "nonsquare":
        rgb(data / "wide.png", (16, 8))
    before = snapshot_bytes(data)
    assert_user_error(train_dry(cli, data), *fragments)
    assert snapshot_bytes(data) == before
    assert not (tmp_path / "runs").exists()


def test_labels_that_do_not_match(cli, tmp_path):
    data = good_folder(tmp_path / "data")
    (data / "dataset.json").write_text(json.dumps({"labels": [["a0.png", 1], ["zzz.png", 0]]}))
    assert_user_error(train_dry(cli, data, "--set", "data.use_labels=true"), "dataset.json")
    (data / "dataset.json").write_text("{not json")
    assert_user_error(train_dry(cli, data), "dataset.json")


def test_use_labels_without_labels(cli, tmp_path):
    assert_user_error(train_dry(cli, good_folder(tmp_path / "data"), "--set", "data.use_labels=true"), "labels")


def test_wrong_kind_of_path(cli, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert_user_error(train_dry(cli, text), "notes.txt")
    fake_zip = tmp_path / "fake.zip"
    fake_zip.write_bytes(b"PK but not really a zip")
    assert_user_error(train_dry(cli, fake_zip), "fake.zip")
    folder_zip = tmp_path / "folder.zip"
    folder_zip.mkdir()
    assert_user_error(train_dry(cli, folder_zip), "folder.zip")
    assert_user_error(train_dry(cli, tmp_path / "nowhere"), "nowhere")


def test_dataset_command_round_trips_folder_and_zip(cli, tmp_path):
    src = tmp_path / "src"
    rng = np.random.RandomState(0)
    for i in range(5):
        (src / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 255, (16, 16, 3), dtype=np.uint8)).save(src / f"sub{i % 2}" / f"{i}.png")
    out = tmp_path / "out.zip"
    result = cli("dataset", src, out, "--resolution", "16", "--filter", "box", "--labels", "dirs")
    assert result.code == 0, result
    assert "5 images" in result.out and "2 classes" in result.out
    with zipfile.ZipFile(out) as z:
        meta = json.loads(z.read("dataset.json"))
    assert meta["gancli"]["resolution"] == 16 and len(meta["labels"]) == 5
    again = tmp_path / "again.zip"
    assert cli("dataset", out, again, "--resolution", "16", "--filter", "box").code == 0
    from gancli.data import open_dataset

    a = open_dataset(str(out), 16, use_labels=True, cache=False)
    b = open_dataset(str(again), 16, use_labels=True, cache=False)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    originals = sorted(np.asarray(Image.open(p)).tobytes() for p in src.rglob("*.png"))
    assert sorted(img.transpose(1, 2, 0).tobytes() for img in a.images) == originals


def test_dataset_command_refuses_to_overwrite(cli, tmp_path):
    src = good_folder(tmp_path / "src")
    dest = tmp_path / "exists.zip"
    dest.write_bytes(b"precious")
    assert_user_error(cli("dataset", src, dest, "--resolution", "16"), "exists.zip", "exists")
    assert dest.read_bytes() == b"precious"
    assert_user_error(cli("dataset", src, tmp_path / "out.tar", "--resolution", "16"), "out.tar", ".zip")
    assert_user_error(cli("dataset", src, tmp_path / "o.zip", "--resolution", "16", "--filter", "fancy"), "fancy")
    assert_user_error(cli("dataset", src, tmp_path / "o.zip", "--resolution", "16", "--transform", "zoom"), "zoom")


@pytest.fixture
def ckpt(tmp_path) -> Path:
    from test_commands import make_checkpoint

    return make_checkpoint(tmp_path / "run")


def test_damaged_checkpoints(cli, ckpt, tmp_path):
    data = ckpt.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    assert_user_error(cli("info", truncated), "truncated.safetensors")
    tampered = tmp_path / "tampered.safetensors"
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    tampered.write_bytes(bytes(flipped))
    assert_user_error(cli("sample", tampered, "--outdir", tmp_path / "o"), "tampered.safetensors", "modified")
    assert not (tmp_path / "o").exists()
    other = tmp_path / "other-tool.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other))
    assert_user_error(cli("info", other), "other-tool.safetensors", "not a gancli checkpoint")


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/gancli-pwned-by-test",))


def test_pickles_never_run(cli, tmp_path):
    sentinel = Path("/tmp/gancli-pwned-by-test")
    sentinel.unlink(missing_ok=True)
    evil = tmp_path / "network.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": Payload()}))
    assert_user_error(cli("info", evil), "network.pkl", "system", "not allowed")
    evil_pt = tmp_path / "snapshot-000000.safetensors"
    torch.save({"x": Payload()}, evil_pt)
    assert_user_error(cli("sample", evil_pt, "--outdir", tmp_path / "o"), "snapshot-000000.safetensors")
    assert not sentinel.exists()


# --- issue 16: tracebacks, values accepted but wrong, resource caps ---------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_kimg(cli, tmp_path, value):
    data = good_folder(tmp_path / "data")
    before = snapshot_bytes(tmp_path)
    assert_user_error(train_dry(cli, data, "--kimg", value), "train.total_kimg", "finite")
    assert_user_error(train_dry(cli, data, f"--kimg={value}"), "finite")  # and not only in a dry run:
    assert_user_error(train_dry(cli, data, "--snap", value, "--set", "train.total_kimg=0.004"), "train.snapshot_kimg")
    assert snapshot_bytes(tmp_path) == before and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf"])
def test_non_finite_float_in_a_recipe(cli, tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: quickstart\ntrain: {{total_kimg: {text}}}\nloss: {{r1_gamma: 1}}\n")
    assert_user_error(cli("train", recipe, "--dry-run"), "r.yaml", "train.total_kimg", "finite")
    recipe.write_text(f"base: quickstart\nmodel: {{conv_clamp: {text}}}\n")  # an Optional[float] too
    assert_user_error(cli("train", recipe, "--dry-run"), "model.conv_clamp", "finite")


def test_outdir_below_a_file(cli, tmp_path, ckpt):
    data = good_folder(tmp_path / "data")
    blocker = tmp_path / "some_file.txt"
    blocker.write_text("precious")
    for extra in (["--dry-run"], ["--kimg", "0.004"]):
        result = cli("train", "quickstart", "--data", data, "--resolution", "16", "--outdir", blocker / "runs", *extra)
        assert_user_error(result, "some_file.txt/runs", "some_file.txt is a file")
    assert_user_error(cli("sample", ckpt, "--outdir", blocker / "out"), "some_file.txt is a file")
    assert_user_error(cli("sample", ckpt, "--outdir", blocker), "some_file.txt", "not a directory")
    assert_user_error(cli("mix", ckpt, "--rows", "1", "--cols", "2", "--out", blocker / "m.png"), "some_file.txt")
    assert blocker.read_text() == "precious"


@pytest.mark.parametrize("base", ["./quickstart.yaml", "myrecipes/stylegan2-cifar.yaml", "../recipes/quickstart.yaml"])
def test_missing_base_path_is_an_error_not_the_builtin(cli, tmp_path, base):
    recipe = tmp_path / "sub" / "mine.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"base: {base}\nname: mine\n")
    assert_user_error(cli("train", recipe, "--dry-run"), "mine.yaml", "base:", base, "not found")
    # a bare name is the built-in recipe
    recipe.write_text("base: quickstart\nname: mine\n")
    assert cli("train", recipe, "--dry-run").code == 0


def test_yaml_aliases_are_refused(cli, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    bomb.write_text("base: quickstart\nx:\n" + "\n".join("  " + line for line in levels)
                    + "\nmetrics: {names: *i}\n")
    before = bomb.read_bytes()
    assert_user_error(cli("train", bomb, "--dry-run"), "bomb.yaml", "anchor &a", "line 3", "not allowed")
    assert bomb.read_bytes() == before
    assert_user_error(cli("train", "quickstart", "--set", "metrics.names=[&a fid, *a]", "--dry-run"), "anchor")


@pytest.mark.parametrize("args, fragments", [
    (["sample", "{ckpt}", "--trunc", "nan"], ["--trunc nan", "finite"]),
    (["sample", "{ckpt}", "--trunc", "inf"], ["--trunc inf", "finite"]),
    (["mix", "{ckpt}", "--rows", "1", "--cols", "2", "--trunc", "nan", "--out", "{tmp}/m.png"], ["finite"]),
    (["noise", "{ckpt}", "--seeds", "1", "--trunc", "inf", "--out", "{tmp}/n.png"], ["finite"]),
    (["interpolate", "{ckpt}", "--seeds", "1,2", "--trunc", "nan", "--out", "{tmp}/w.gif"], ["finite"]),
    (["truncate", "{ckpt}", "--psi", "nan"], ["--psi nan", "finite"]),
    (["truncate", "{ckpt}", "--psi", "0:inf:3"], ["--psi 0:inf:3", "finite"]),
    (["mix", "{ckpt}", "--rows", "1", "--cols", "2", "--out", "{tmp}/m3.txt"], ["m3.txt", ".png"]),
    (["noise", "{ckpt}", "--out", "{tmp}/n.jpg"], ["n.jpg", ".png"]),
    (["truncate", "{ckpt}", "--out", "{tmp}/t.gif"], ["t.gif", ".png"]),
    (["interpolate", "{ckpt}", "--seeds", "1,2", "--out", "{tmp}/w.png"], ["w.png", ".gif or .mp4"]),
])
def test_values_accepted_but_wrong(cli, tmp_path, ckpt, args, fragments):
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot_bytes(tmp_path)
    args = [a.format(ckpt=ckpt, tmp=work) for a in args]
    if args[0] in ("sample", "truncate") and "--out" not in args:
        args += ["--outdir", work / "o"] if args[0] == "sample" else ["--out", work / "t.png"]
    assert_user_error(cli(*args), *fragments)
    assert snapshot_bytes(tmp_path) == before  # nothing written, nothing changed


def test_a_refused_state_file_warns_in_one_line(cli, ckpt):
    from gancli.train.checkpoint import list_checkpoints, save_checkpoint

    run = ckpt.parent
    (pair,) = list_checkpoints(run)
    newer = save_checkpoint(run, 0, step=5, modules={"G": {"w": torch.zeros(1)}}, recipe={}, meta={}, state={"step": 5})
    newer.state.write_bytes(b"PK\x03\x04 damaged")
    result = cli("info", run)
    assert result.code == 0, result
    warned = [line for line in result.err.splitlines() if line.strip()]
    assert len(warned) == 1 and warned[0].startswith("warning: skipping snapshot-000000-step00000005"), result.err
    assert "warnings.warn" not in result.err and ".py:" not in result.err
    assert "step 0" in result.out  # the complete pair before it


def _peak_rss_mb(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run `gancli ARGS` in a fresh process; its peak resident memory in MB (a clean parent, so the
    children's maximum is that one process's)."""
    code = ("import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', 'gancli', *sys.argv[1:]], "
            "capture_output=True, text=True); print(p.returncode); print(p.stderr, file=sys.stderr); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    rc, rss_kb = proc.stdout.split()
    proc.returncode = int(rc)
    return proc, int(rss_kb) / 1024


@pytest.mark.parametrize("args, fragments", [
    (["sample", "{ckpt}", "--seeds", "0-100000000", "--outdir", "{tmp}/o"], ["100000001 seeds", "at most 1,000,000"]),
    (["sample", "{ckpt}", "--seeds", "0-7", "--grid", "100000x100000", "--outdir", "{tmp}/o"], ["megapixel", "16384x16384"]),
    (["truncate", "{ckpt}", "--psi", "0:1:100000000", "--out", "{tmp}/t.png"], ["100000000 values", "at most 1000"]),
    (["mix", "{ckpt}", "--rows", "0-1999", "--cols", "0-1999", "--out", "{tmp}/m.png"], ["megapixel"]),
])
def test_huge_requests_are_refused_before_any_work(tmp_path, ckpt, args, fragments):
    before = snapshot_bytes(tmp_path)
    proc, rss = _peak_rss_mb(*[a.format(ckpt=ckpt, tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert all(f in lines[0] for f in fragments), lines[0]
    assert rss < 500, f"{rss:.0f} MB"
    assert snapshot_bytes(tmp_path) == before


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (its data could never fill them)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_zip_bomb_member_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        good = rgb(tmp_path / "g.png").read_bytes()
        for i in range(3):
            zf.writestr(f"a{i}.png", good)
        with zf.open("huge.png", "w", force_zip64=True) as member:  # 1 GiB of zeros, about 1 MB stored
            block = bytes(2**20)
            for _ in range(1024):
                member.write(block)
    assert bomb.stat().st_size < 8 * 2**20
    before = snapshot_bytes(tmp_path)
    proc, rss = _peak_rss_mb("dataset", str(bomb), str(tmp_path / "out.zip"), "--resolution", "16")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "huge.png" in lines[0] and "1,024 MiB" in lines[0] and "at most 256 MiB" in lines[0], lines
    assert rss < 500, f"{rss:.0f} MB"
    assert snapshot_bytes(tmp_path) == before


def test_image_header_claiming_huge_size_is_refused(cli, tmp_path):
    src = good_folder(tmp_path / "src")
    (src / "claims.png").write_bytes(_png_claiming(9000, 8000))
    assert_user_error(cli("dataset", src, tmp_path / "o.zip", "--resolution", "16"), "claims.png", "9000x8000",
                      "megapixels")
    assert not (tmp_path / "o.zip").exists()
    assert_user_error(train_dry(cli, src), "claims.png", "9000x8000")


def test_every_skipped_zip_member_is_counted(cli, tmp_path):
    archive = tmp_path / "src.zip"
    good = rgb(tmp_path / "g.png").read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"a{i}.png", good)
        zf.writestr("../evil.png", good)  # a path-traversal name: never used, but counted
        zf.writestr("/abs.png", good)
        zf.writestr("bad.png", b"not a png")
    result = cli("dataset", archive, tmp_path / "o.zip", "--resolution", "16", "--skip-bad")
    assert result.code == 0, result
    assert "3 images" in result.err + result.out and "3 skipped (1 unreadable, 2 with hidden or unsafe names)" in (
        result.err + result.out), result
    with zipfile.ZipFile(tmp_path / "o.zip") as zf:
        info = json.loads(zf.read("dataset.json"))["gancli"]
        assert info["count"] == 3 and info["skipped"] == 3
        assert not any(".." in n for n in zf.namelist())
