"""Datasets, the converter and the batch stream (gancli.data)."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from gancli.data import EMOJI_CREDIT, batches, convert_dataset, find_images, open_dataset, read_image
from gancli.data.loader import epoch_order
from gancli.errors import UserError

# ---------------------------------------------------------------------------------------------------
# Helpers: tiny synthetic images with known pixels.


def pixels(size: int | tuple[int, int], seed: int, channels: int = 3) -> np.ndarray:
    w, h = (size, size) if isinstance(size, int) else size
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.RandomState(seed).randint(0, 256, size=shape, dtype=np.uint8)


def save(path, arr: np.ndarray, mode: str | None = None) -> np.ndarray:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return arr


def folder_of(tmp_path, names, size=8, name="imgs") -> dict[str, np.ndarray]:
    """Write RGB PNGs (relative names) into tmp_path/name; return {name: HWC pixels}."""
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return {n: save(root / n, pixels(size, seed=i)) for i, n in enumerate(names)}


def zip_of(path, files: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def user_error(fn, *args, **kwargs) -> str:
    """Call fn, expect UserError, and return its message (which must be one line)."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def chw(arr: np.ndarray) -> np.ndarray:
    return arr.transpose(2, 0, 1)


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------
# Bad inputs: every one is a UserError that names the offending path, image or entry.


def test_missing_path(tmp_path):
    msg = user_error(open_dataset, str(tmp_path / "nope"))
    assert "nope" in msg and "not found" in msg


def test_wrong_kind_of_path(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert "notes.txt" in user_error(open_dataset, str(txt))
    folder_zip = tmp_path / "x.zip"
    folder_zip.mkdir()
    msg = user_error(open_dataset, str(folder_zip))
    assert "x.zip" in msg and "folder" in msg
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip")
    msg = user_error(open_dataset, str(fake))
    assert "fake.zip" in msg and "zip" in msg


def test_empty_folder_and_zip(tmp_path, cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    (empty / ".hidden.png").write_bytes(png_bytes(pixels(8, 0)))
    assert "empty" in user_error(open_dataset, str(empty), cache_dir=cache)
    z = zip_of(tmp_path / "nothing.zip", {"readme.txt": b"x", "__MACOSX/._a.png": b"junk"})
    msg = user_error(open_dataset, z, cache_dir=cache)
    assert "nothing.zip" in msg and "empty" in msg


def test_corrupt_and_truncated_images(tmp_path, cache):
    folder_of(tmp_path, ["a.png", "b.png"])
    (tmp_path / "imgs" / "c_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is garbage")
    msg = user_error(open_dataset, str(tmp_path / "imgs"), cache_dir=cache)
    assert "c_bad.png" in msg and "corrupt" in msg

    data = png_bytes(pixels(32, 5))
    z = zip_of(tmp_path / "trunc.zip", {"a.png": png_bytes(pixels(32, 1)), "b.png": data[: len(data) // 2]})
    msg = user_error(open_dataset, z, cache_dir=cache)
    assert "trunc.zip:b.png" in msg and "truncated" in msg


def test_mixed_sizes_names_the_odd_image(tmp_path, cache):
    folder_of(tmp_path, ["a.png", "b.png"], size=8)
    save(tmp_path / "imgs" / "c.png", pixels(16, 9))
    msg = user_error(open_dataset, str(tmp_path / "imgs"), cache_dir=cache)
    assert "c.png" in msg and "16x16" in msg and "a.png" in msg and "gancli dataset" in msg


def test_non_square_refused_and_any_square_size_loads(tmp_path, cache):
    folder_of(tmp_path, ["a.png"], size=(8, 6))
    msg = user_error(open_dataset, str(tmp_path / "imgs"), cache_dir=cache)
    assert "a.png" in msg and "8x6" in msg and "square" in msg and "gancli dataset" in msg
    # the data layer takes any square size: which sizes a model takes is its family's rule (test_resolutions.py)
    folder_of(tmp_path, ["b.png"], size=12, name="twelve")
    assert open_dataset(str(tmp_path / "twelve"), cache_dir=cache).images.shape == (1, 3, 12, 12)
    assert open_dataset(str(tmp_path / "twelve"), 12, cache_dir=cache).resolution == 12


def test_rgba_and_greyscale_rejected_for_training(tmp_path, cache):
    folder_of(tmp_path, ["a.png"])
    save(tmp_path / "imgs" / "b_alpha.png", pixels(8, 3, channels=4), "RGBA")
    msg = user_error(open_dataset, str(tmp_path / "imgs"), cache_dir=cache)
    assert "b_alpha.png" in msg and "RGBA" in msg and "gancli dataset" in msg

    folder_of(tmp_path, ["a.png"], name="grey")
    save(tmp_path / "grey" / "g.png", pixels(8, 4, channels=1), "L")
    msg = user_error(open_dataset, str(tmp_path / "grey"), cache_dir=cache)
    assert "g.png" in msg and "greyscale" in msg


def test_resolution_mismatch_and_allow_resize(tmp_path, cache):
    folder_of(tmp_path, ["a.png", "b.png"], size=8)
    msg = user_error(open_dataset, str(tmp_path / "imgs"), 16, cache_dir=cache)
    assert "a.png" in msg and "8x8" in msg and "16" in msg
    ds = open_dataset(str(tmp_path / "imgs"), 16, allow_resize=True, cache_dir=cache)
    assert ds.images.shape == (2, 3, 16, 16)
    assert "72" in user_error(open_dataset, str(tmp_path / "imgs"), 72, cache_dir=cache)


def test_use_labels_without_labels(tmp_path, cache):
    folder_of(tmp_path, ["a.png"])
    msg = user_error(open_dataset, str(tmp_path / "imgs"), use_labels=True, cache_dir=cache)
    assert "imgs" in msg and "no labels" in msg
    z = zip_of(
        tmp_path / "nolabels.zip", {"a.png": png_bytes(pixels(8, 0)), "dataset.json": b'{"labels": null}'}
    )
    msg = user_error(open_dataset, z, use_labels=True, cache_dir=cache)
    assert "nolabels.zip:dataset.json" in msg and "null" in msg
    assert "emoji" in user_error(open_dataset, "emoji", use_labels=True, cache_dir=cache)


@pytest.mark.parametrize(
    "labels, needle",
    [
        ([["a.png", 0]], "b.png"),  # an image without a label
        ([["a.png", 0], ["b.png", 1], ["zz.png", 1]], "zz.png"),  # a label for no image
        ([["a.png", 0], ["b.png", 1.5]], "b.png"),  # not an integer
        ([["a.png", 0], ["b.png", "cat"]], "b.png"),  # not an integer
        ([["a.png", 0], ["b.png"]], '["b.png"]'),  # wrong shape
        ({"a.png": 0}, "dict"),  # wrong container
    ],
)
def test_dataset_json_labels_that_do_not_match(tmp_path, cache, labels, needle):
    files = {"a.png": png_bytes(pixels(8, 0)), "b.png": png_bytes(pixels(8, 1))}
    files["dataset.json"] = json.dumps({"labels": labels}).encode()
    z = zip_of(tmp_path / "lab.zip", files)
    msg = user_error(open_dataset, z, use_labels=True, cache_dir=cache)
    assert "lab.zip:dataset.json" in msg and needle in msg


def test_dataset_json_not_valid_json(tmp_path, cache):
    folder_of(tmp_path, ["a.png"])
    (tmp_path / "imgs" / "dataset.json").write_text('{"labels": [["a.png", 0],,]}')
    msg = user_error(open_dataset, str(tmp_path / "imgs"), use_labels=True, cache_dir=cache)
    assert "dataset.json" in msg and "not valid JSON" in msg and "line 1" in msg


def test_bad_numbers(tmp_path, cache):
    folder_of(tmp_path, ["a.png"])
    assert "max_size" in user_error(open_dataset, str(tmp_path / "imgs"), max_size=0, cache_dir=cache)
    ds = open_dataset(str(tmp_path / "imgs"), cache_dir=cache)
    assert "batch size" in user_error(batches, ds, 0, seed=0)
    assert "rank" in user_error(batches, ds, 2, seed=0, rank=2, world_size=2)


# ---------------------------------------------------------------------------------------------------
# The converter's bad inputs.


def test_convert_dest_exists_is_untouched(tmp_path):
    folder_of(tmp_path, ["a.png"])
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"precious")
    before = os.stat(dest).st_mtime_ns
    msg = user_error(convert_dataset, str(tmp_path / "imgs"), str(dest), resolution=8, progress=False)
    assert "out.zip" in msg and "exists" in msg
    assert dest.read_bytes() == b"precious" and os.stat(dest).st_mtime_ns == before
    (tmp_path / "dir.zip").mkdir()
    assert "dir.zip" in user_error(
        convert_dataset, str(tmp_path / "imgs"), str(tmp_path / "dir.zip"), resolution=8, progress=False
    )


def test_convert_bad_arguments(tmp_path):
    folder_of(tmp_path, ["a.png"])
    src = str(tmp_path / "imgs")
    msg = user_error(convert_dataset, src, str(tmp_path / "out.tar"), resolution=8, progress=False)
    assert "out.tar" in msg and ".zip" in msg
    msg = user_error(
        convert_dataset, src, str(tmp_path / "o.zip"), resolution=8, transform="zoom", progress=False
    )
    assert "zoom" in msg and "center-crop" in msg and "pad" in msg
    msg = user_error(
        convert_dataset, src, str(tmp_path / "o.zip"), resolution=8, resize_filter="magic", progress=False
    )
    assert "magic" in msg and "lanczos" in msg and "box" in msg
    assert "3" in user_error(convert_dataset, src, str(tmp_path / "o.zip"), resolution=3, progress=False)
    assert "nowhere" in user_error(
        convert_dataset, str(tmp_path / "nowhere"), str(tmp_path / "o.zip"), resolution=8, progress=False
    )
    assert not (tmp_path / "o.zip").exists()


def test_convert_corrupt_image_fails_cleanly_or_is_skipped(tmp_path):
    folder_of(tmp_path, ["a.png", "c.png"])
    (tmp_path / "imgs" / "b.png").write_bytes(b"not a png")
    dest = tmp_path / "out" / "d.zip"
    msg = user_error(convert_dataset, str(tmp_path / "imgs"), str(dest), resolution=8, progress=False)
    assert "b.png" in msg
    assert not dest.exists() and os.listdir(dest.parent) == []  # no half-written zip or temp file left
    summary = convert_dataset(str(tmp_path / "imgs"), str(dest), resolution=8, progress=False, skip_bad=True)
    assert summary["count"] == 2 and summary["skipped"] == 1 and "b.png" in summary["skipped_images"][0]
    assert os.listdir(dest.parent) == ["d.zip"]


def test_convert_label_file_mismatch(tmp_path):
    folder_of(tmp_path, ["a.png", "b.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("path,class\na.png,0\n")
    msg = user_error(
        convert_dataset,
        str(tmp_path / "imgs"),
        str(tmp_path / "o.zip"),
        resolution=8,
        labels=str(csv),
        progress=False,
    )
    assert "labels.csv" in msg and "b.png" in msg
    csv.write_text("a.png,0\nb.png,x1\n")
    msg = user_error(
        convert_dataset,
        str(tmp_path / "imgs"),
        str(tmp_path / "o.zip"),
        resolution=8,
        labels=str(csv),
        progress=False,
    )
    assert "labels.csv" in msg and "b.png" in msg and "line 2" in msg
    msg = user_error(
        convert_dataset,
        str(tmp_path / "imgs"),
        str(tmp_path / "o.zip"),
        resolution=8,
        labels="dirs",
        progress=False,
    )
    assert "a.png" in msg and "subfolder" in msg
    assert not (tmp_path / "o.zip").exists()


# ---------------------------------------------------------------------------------------------------
# Positive behaviour.


def test_round_trip_folder_to_zip_keeps_pixels(tmp_path, cache):
    names = ["b.png", "a.png", "sub/c.png", "sub/deeper/d.png", "e.jpg"]
    src = folder_of(tmp_path, names[:4])
    save(tmp_path / "imgs" / "e.jpg", np.full((8, 8, 3), 77, np.uint8))  # flat colour survives JPEG
    src["e.jpg"] = np.asarray(Image.open(tmp_path / "imgs" / "e.jpg").convert("RGB"))
    (tmp_path / "imgs" / ".git").mkdir()
    save(tmp_path / "imgs" / ".git" / "x.png", pixels(16, 1))  # hidden: ignored
    order = sorted(src)
    assert find_images(str(tmp_path / "imgs")) == order

    direct = open_dataset(str(tmp_path / "imgs"), cache_dir=cache)
    assert direct.image_names == order and direct.images.shape == (5, 3, 8, 8)
    for i, n in enumerate(order):
        assert np.array_equal(direct.images[i], chw(src[n]))

    dest = tmp_path / "out.zip"
    summary = convert_dataset(
        str(tmp_path / "imgs"), str(dest), resolution=8, resize_filter="box", progress=False
    )
    assert summary["count"] == 5 and summary["skipped"] == 0 and summary["labels"] is None
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == [
            "00000/img00000000.png",
            "00000/img00000001.png",
            "00000/img00000002.png",
            "00000/img00000003.png",
            "00000/img00000004.png",
            "dataset.json",
        ]
        meta = json.loads(zf.read("dataset.json"))
    assert meta["labels"] is None and meta["gancli"]["resolution"] == 8 and meta["gancli"]["count"] == 5
    ds = open_dataset(str(dest), 8, cache_dir=cache)
    assert np.array_equal(ds.images, direct.images)
    again = open_dataset(str(dest), 8, cache_dir=cache)  # from the decoded-image cache
    assert np.array_equal(again.images, direct.images)
    # One cache file for the zip (reused by the second open), one for the folder (folders are cached too).
    assert sorted(f.split("-")[0] for f in os.listdir(os.path.join(cache, "datasets"))) == ["imgs", "out"]


def test_convert_resizes_and_converts_modes(tmp_path, cache):
    root = tmp_path / "mixed"
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (255, 0, 0, 255)  # opaque red square on transparent black
    save(root / "rgba.png", rgba, "RGBA")
    save(root / "grey.png", np.full((20, 10), 40, np.uint8), "L")
    Image.fromarray(pixels(24, 2)).convert("P").save(root / "palette.png")
    save(root / "big.png", pixels((40, 30), 3))
    summary = convert_dataset(str(root), str(tmp_path / "m.zip"), resolution=8, progress=False)
    assert summary["count"] == 4
    ds = open_dataset(str(tmp_path / "m.zip"), cache_dir=cache)
    assert ds.images.shape == (4, 3, 8, 8)
    grey = ds.images[ds_index(ds, root, "grey.png")]
    assert (grey == 40).all()
    red = ds.images[ds_index(ds, root, "rgba.png")]
    assert (red[:, 0, 0] == 255).all()  # transparent corner -> white
    assert tuple(red[:, 4, 4]) == (255, 0, 0)


def ds_index(ds, root, name) -> int:
    """Index in a converted zip of the source image `name` (the converter keeps sorted order)."""
    return sorted(os.listdir(root)).index(name)


def test_center_crop_and_pad_geometry(tmp_path, cache):
    wide = np.zeros((8, 12, 3), np.uint8)
    wide[:, :, 0] = np.arange(12, dtype=np.uint8)[None, :] * 10  # red encodes the column
    save(tmp_path / "w" / "wide.png", wide)
    convert_dataset(
        str(tmp_path / "w"), str(tmp_path / "crop.zip"), resolution=8, transform="center-crop", progress=False
    )
    crop = open_dataset(str(tmp_path / "crop.zip"), cache_dir=cache).images[0]
    assert np.array_equal(crop[0, 0], np.arange(2, 10) * 10)  # the centred 8 of 12 columns

    tall = pixels((6, 8), 7)
    save(tmp_path / "t" / "tall.png", tall)
    convert_dataset(
        str(tmp_path / "t"), str(tmp_path / "pad.zip"), resolution=8, transform="pad", progress=False
    )
    pad = open_dataset(str(tmp_path / "pad.zip"), cache_dir=cache).images[0]
    assert (pad[:, :, 0] == 255).all() and (pad[:, :, 7] == 255).all()  # white columns left and right
    assert np.array_equal(pad[:, :, 1:7], chw(tall))

    convert_dataset(
        str(tmp_path / "t"), str(tmp_path / "stretch.zip"), resolution=8, transform="stretch", progress=False
    )
    assert open_dataset(str(tmp_path / "stretch.zip"), cache_dir=cache).images.shape == (1, 3, 8, 8)


def test_labels_from_subfolders(tmp_path, cache):
    folder_of(tmp_path, ["dogs/1.png", "cats/1.png", "cats/2.png", "emus/x/1.png"])
    summary = convert_dataset(
        str(tmp_path / "imgs"), str(tmp_path / "l.zip"), resolution=8, labels="dirs", progress=False
    )
    assert summary["labels"] == summary["num_classes"] == 3 and summary["label_source"] == "dirs"
    ds = open_dataset(str(tmp_path / "l.zip"), use_labels=True, cache_dir=cache)
    assert ds.has_labels and ds.c_dim == 3 and ds.label_names == ["cats", "dogs", "emus"]
    # sorted source order: cats/1, cats/2, dogs/1, emus/x/1
    assert ds.labels.argmax(1).tolist() == [0, 0, 1, 2] and ds.labels.sum(1).tolist() == [1, 1, 1, 1]
    img, label = ds[2]
    assert label.dtype == np.float32 and label.tolist() == [0, 1, 0]
    assert open_dataset(str(tmp_path / "l.zip"), cache_dir=cache).c_dim == 0  # labels only on request

    # a zip's own labels are carried over by a second conversion, and an explicit JSON file works
    convert_dataset(str(tmp_path / "l.zip"), str(tmp_path / "l2.zip"), resolution=4, progress=False)
    assert open_dataset(str(tmp_path / "l2.zip"), use_labels=True, cache_dir=cache).labels.argmax(
        1
    ).tolist() == [0, 0, 1, 2]
    (tmp_path / "labels.json").write_text(
        json.dumps({"cats/1.png": 4, "cats/2.png": 0, "dogs/1.png": 1, "emus/x/1.png": 1})
    )
    convert_dataset(
        str(tmp_path / "imgs"),
        str(tmp_path / "l3.zip"),
        resolution=8,
        labels=str(tmp_path / "labels.json"),
        progress=False,
    )
    ds3 = open_dataset(str(tmp_path / "l3.zip"), use_labels=True, cache_dir=cache)
    assert ds3.c_dim == 5 and ds3.labels.argmax(1).tolist() == [4, 0, 1, 1]


def test_xflip_doubles_and_mirrors(tmp_path, cache):
    folder_of(tmp_path, ["a.png", "b.png", "c.png"])
    ds = open_dataset(str(tmp_path / "imgs"), xflip=True, cache_dir=cache)
    assert len(ds) == 6 and ds.num_images == 3
    for i in range(3):
        img, _ = ds[i]
        flipped, _ = ds[i + 3]
        assert np.array_equal(flipped, img[:, :, ::-1]) and not np.array_equal(flipped, img)
    imgs, labels = ds.get_batch([4, 1])
    assert np.array_equal(imgs[0], ds[4][0]) and np.array_equal(imgs[1], ds[1][0]) and labels.shape == (2, 0)
    with pytest.raises(IndexError):
        ds[6]


def test_max_size_is_a_fixed_subset(tmp_path, cache):
    folder_of(tmp_path, [f"{i:02d}.png" for i in range(10)])
    a = open_dataset(str(tmp_path / "imgs"), max_size=4, cache_dir=cache)
    b = open_dataset(str(tmp_path / "imgs"), max_size=4, cache_dir=cache)
    assert a.num_images == 4 and a.image_names == b.image_names == sorted(a.image_names)


def _stream(ds, batch, seed, steps, start=0, **kw):
    it = batches(ds, batch, seed=seed, start_index=start, **kw)
    return [it.next_indices().tolist() for _ in range(steps)], it.position


def test_sampler_is_seeded_reshuffles_and_resumes_exactly(tmp_path, cache):
    folder_of(tmp_path, [f"{i}.png" for i in range(10)], size=4)
    ds = open_dataset(str(tmp_path / "imgs"), cache_dir=cache)
    run, _ = _stream(ds, 4, seed=7, steps=10)
    assert _stream(ds, 4, seed=7, steps=10)[0] == run
    assert _stream(ds, 4, seed=8, steps=10)[0] != run
    flat = sum(run, [])
    epochs = [flat[i : i + 10] for i in range(0, 40, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch is a permutation
    assert epochs[0] != epochs[1]  # reshuffled per epoch
    assert epochs[1] == epoch_order(10, 7, 1).tolist()

    _, pos = _stream(ds, 4, seed=7, steps=3)
    assert pos == 12
    resumed, _ = _stream(ds, 4, seed=7, steps=7, start=pos)
    assert resumed == run[3:]

    x, c = next(batches(ds, 4, seed=7, start_index=pos))
    assert x.dtype.is_floating_point and tuple(x.shape) == (4, 3, 4, 4) and tuple(c.shape) == (4, 0)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    expect = ds.images[run[3]].astype(np.float32) / 127.5 - 1
    assert np.allclose(x.numpy(), expect)


def test_rank_sharding_splits_the_global_stream(tmp_path, cache):
    folder_of(tmp_path, [f"{i}.png" for i in range(7)], size=4)
    ds = open_dataset(str(tmp_path / "imgs"), xflip=True, cache_dir=cache)
    single, _ = _stream(ds, 6, seed=3, steps=5)
    r0, pos0 = _stream(ds, 3, seed=3, steps=5, rank=0, world_size=2)
    r1, pos1 = _stream(ds, 3, seed=3, steps=5, rank=1, world_size=2)
    assert pos0 == pos1 == 30
    for g, a, b in zip(single, r0, r1, strict=True):
        assert a == g[0::2] and b == g[1::2]
    assert max(sum(single, [])) >= 7  # mirrored indices are drawn too


def test_emoji_dataset(tmp_path, cache):
    from gancli.data.emoji import emoji_dir

    assert "CC-BY 4.0" in EMOJI_CREDIT and "Twitter" in EMOJI_CREDIT
    folder = emoji_dir()
    names = sorted(os.listdir(folder))
    # Emoji whose 8x8 corner blocks are fully transparent must come out with pure white corners.
    clear = []
    for n in names:
        alpha = np.asarray(Image.open(os.path.join(folder, n)).convert("RGBA"))[..., 3]
        clear.append(
            not (alpha[:8, :8].any() or alpha[:8, -8:].any() or alpha[-8:, :8].any() or alpha[-8:, -8:].any())
        )
    clear = np.array(clear)
    assert clear.sum() > 1500
    for res in (32, 64):
        ds = open_dataset("emoji", res, cache_dir=cache)
        assert ds.num_images == len(ds) == 4009 == len(names) and ds.c_dim == 0 and ds.name == "emoji"
        assert ds.images.shape == (4009, 3, res, res) and ds.images.dtype == np.uint8
        corners = ds.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
        white = (corners == 255).all(axis=(1, 2))
        assert white[clear].all()
        assert white.mean() > 0.7
        assert ds.images.min() == 0 and ds.images.mean() > 150  # content on a white background
        cached = open_dataset("emoji", res, cache_dir=cache)  # from the cache file
        assert np.array_equal(cached.images, ds.images)
    assert open_dataset("emoji", cache_dir=cache).resolution == 64
    assert len(os.listdir(os.path.join(cache, "datasets"))) == 2  # the default 64 px reuses its cache


def test_emoji_converts_with_credit(tmp_path):
    summary = convert_dataset("emoji", str(tmp_path / "e.zip"), resolution=16, max_images=5, progress=False)
    assert summary["count"] == 5
    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        assert "CC-BY" in json.loads(zf.read("dataset.json"))["gancli"]["credit"]


def test_damaged_cache_is_rebuilt(tmp_path, cache):
    folder_of(tmp_path, ["a.png", "b.png"])
    convert_dataset(
        str(tmp_path / "imgs"), str(tmp_path / "d.zip"), resolution=8, resize_filter="box", progress=False
    )
    first = np.array(open_dataset(str(tmp_path / "d.zip"), cache_dir=cache).images)  # a copy: the cache is mapped
    [cache_file] = os.listdir(os.path.join(cache, "datasets"))
    with open(os.path.join(cache, "datasets", cache_file), "wb") as f:
        f.write(b"garbage")
    assert np.array_equal(open_dataset(str(tmp_path / "d.zip"), cache_dir=cache).images, first)


def test_read_image(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    save(tmp_path / "one.png", rgba, "RGBA")
    assert (read_image(str(tmp_path / "one.png")) == 255).all()
    assert "two.png" in user_error(read_image, str(tmp_path / "two.png"))


def test_import_is_light():
    import subprocess

    code = "import sys, gancli.data; from gancli.data import open_dataset; assert 'torch' not in sys.modules"
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )


def test_pool_decoding_matches_and_reports_the_first_bad_image(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("GANCLI_DATA_WORKERS", "2")  # force the process pool even on one core
    names = [f"{i:03d}.png" for i in range(300)]
    src = folder_of(tmp_path, names, size=4)
    ds = open_dataset(str(tmp_path / "imgs"), cache_dir=cache)
    assert all(np.array_equal(ds.images[i], chw(src[n])) for i, n in enumerate(names))
    summary = convert_dataset(
        str(tmp_path / "imgs"), str(tmp_path / "p.zip"), resolution=4, resize_filter="box", progress=False
    )
    assert summary["count"] == 300
    assert np.array_equal(open_dataset(str(tmp_path / "p.zip"), cache_dir=cache).images, ds.images)
    for bad in ("150.png", "250.png"):
        (tmp_path / "imgs" / bad).write_bytes(b"broken")
    assert "150.png" in user_error(open_dataset, str(tmp_path / "imgs"), cache_dir=cache)
    assert "150.png" in user_error(
        convert_dataset, str(tmp_path / "imgs"), str(tmp_path / "q.zip"), resolution=4, progress=False
    )
    assert not (tmp_path / "q.zip").exists()
