"""Bad input through the command line: one line naming the file and what is allowed, exit code 2,
no traceback, and nothing the user had is modified."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_user_error
from PIL import Image
from safetensors.torch import save_file


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
