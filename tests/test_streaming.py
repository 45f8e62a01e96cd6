"""Datasets larger than memory: streaming decode, worker processes, the shared on-disk cache, bad images."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import final_tensors, run_dirs, tiny_args

import gancli.data.images as images_mod
from gancli.data import batches, epoch_order, open_dataset
from gancli.data.cache import cache_files, summary


def png(rng: np.random.RandomState, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def write_zip(path: Path, count: int, size: int = 16, *, labels: int = 0, bad: dict[int, bytes] | None = None,
              seed: int = 0) -> Path:
    """A training zip in the NVlabs layout of `count` random `size` px PNGs; `bad`: index -> raw bytes."""
    rng = np.random.RandomState(seed)
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(count)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, name in enumerate(names):
            zf.writestr(name, (bad or {}).get(i) or png(rng, size))
        meta = {"labels": [[n, i % labels] for i, n in enumerate(names)] if labels else None}
        zf.writestr("dataset.json", json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory) -> Path:
    return write_zip(tmp_path_factory.mktemp("stream") / "big.zip", 2000, 16, labels=3)


@pytest.fixture
def decodes(monkeypatch):
    """Counts images opened by Pillow (every decode of a training image goes through `_open_loaded`)."""
    count = {"n": 0}
    real = images_mod._open_loaded

    def counting(data, label):
        count["n"] += 1
        return real(data, label)

    monkeypatch.setattr(images_mod, "_open_loaded", counting)
    return count


def test_opening_a_big_zip_decodes_one_image_and_the_first_batch_comes_before_the_rest(big_zip, decodes, monkeypatch):
    opened = []
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *a, **k):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    ds = open_dataset(str(big_zip), 16, use_labels=True, cache=False)
    assert ds.streamed and ds.num_images == 2000 and ds.c_dim == 3
    assert decodes["n"] == 1  # the size check of the first image, nothing else
    assert sorted(opened) == ["00000/img00000000.png", "dataset.json"]  # besides the central directory
    x, c = batches(ds, 8, seed=0).take(8)
    assert x.shape == (8, 3, 16, 16) and c.shape == (8, 3)
    assert decodes["n"] == 1 + 8  # the first batch, not the set


def test_streamed_batches_with_workers_equal_the_cached_ones(big_zip, tmp_path):
    cached = open_dataset(str(big_zip), 16, use_labels=True, xflip=True, max_size=1500, cache_dir=str(tmp_path))
    streamed = open_dataset(str(big_zip), 16, use_labels=True, xflip=True, max_size=1500, cache=False)
    assert not cached.streamed and streamed.streamed and cached.storage.startswith("memory-mapped")
    assert cached.image_names == streamed.image_names and np.array_equal(cached.labels, streamed.labels)
    counts = [8, 8, 4, 8, 8, 12, 8]  # a change of n drops the prefetched batches
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        a = batches(cached, 8, seed=3, start_index=2990, rank=rank, world_size=world)  # crosses an epoch end
        b = batches(streamed, 8, seed=3, start_index=2990, rank=rank, world_size=world, workers=2)
        assert a._pool is None and b._pool is not None
        try:
            for n in counts:
                (xa, ca), (xb, cb) = a.take(n), b.take(n)
                assert torch.equal(xa, xb) and torch.equal(ca, cb), (rank, world, n)
            assert a.position == b.position == 2990 + sum(counts)
        finally:
            b.close()


def test_chunked_reads_and_reference_statistics_of_a_streamed_set(big_zip, tmp_path, decodes):
    from test_metrics import _FakeNVlabs, _save_script

    from gancli.metrics import stats_cache as sc
    from gancli.metrics.detectors import load_inception

    cached = open_dataset(str(big_zip), 16, max_size=600, cache_dir=str(tmp_path))
    streamed = open_dataset(str(big_zip), 16, max_size=600, cache=False)
    got = np.concatenate(list(streamed.iter_chunks(100, 500, mirror=True, workers=2)))
    assert np.array_equal(got, np.concatenate(list(cached.iter_chunks(100, 500, mirror=True))))
    assert np.array_equal(got[500:], got[:500][..., ::-1]) and len(got) == 1000
    # the statistics' key comes from the zip's central directory: nothing is decoded to make it
    decodes["n"] = 0
    key = streamed.content_key(300)
    assert decodes["n"] == 0 and key == cached.content_key(300) and key != streamed.content_key(299)
    det = load_inception(_save_script(_FakeNVlabs(), tmp_path / "det.pt"))
    a = sc.real_stats(streamed, det, 300, True, cache_dir=tmp_path / "m", use_cache=False, batch_size=64)
    b = sc.real_stats(cached, det, 300, True, cache_dir=tmp_path / "m", use_cache=False, batch_size=64)
    assert a.count == 600 and a.key == b.key and np.array_equal(a.mu, b.mu) and np.array_equal(a.sigma, b.sigma)


def test_ranks_decode_disjoint_images_of_each_step(big_zip):
    ds = open_dataset(str(big_zip), 16, cache=False)
    seen = []
    for rank in (0, 1):
        b = batches(ds, 4, seed=0, rank=rank, world_size=2)
        seen.append([set(b.take_indices(8).tolist()) for _ in range(5)])
    assert all(not (s0 & s1) and len(s0 | s1) == 8 for s0, s1 in zip(*seen))


# --------------------------------------------------------------------------------------------------
# The on-disk cache


def test_cache_is_built_once_and_reused_without_decoding(tmp_path, decodes):
    z = write_zip(tmp_path / "d.zip", 40)
    cache = str(tmp_path / "cache")
    first = open_dataset(str(z), 16, cache_dir=cache)
    assert decodes["n"] == 40 and not first.streamed
    [(path, size, _)] = cache_files(os.path.join(cache, "datasets"))
    assert size >= 40 * 3 * 16 * 16 and isinstance(first.images, np.memmap)
    decodes["n"] = 0
    again = open_dataset(str(z), 16, cache_dir=cache)
    assert decodes["n"] == 0 and again.store.path == path  # the second open maps the file, decodes nothing
    assert np.array_equal(again.images, first.images)
    sub = open_dataset(str(z), 16, cache_dir=cache, max_size=10)  # a subset reads rows of the same file
    assert decodes["n"] == 0 and sub.store.path == path and len(cache_files(os.path.join(cache, "datasets"))) == 1
    assert np.array_equal(sub.images, first.images[sub.store.rows])
    assert sub.content_key() == open_dataset(str(z), 16, cache=False, max_size=10).content_key()  # same content, same key


KILLED_BUILD = r"""
import os, signal, sys
import gancli.data.dataset as d
real, n = d.decode_training_image, [0]
def dying(*a, **k):
    n[0] += 1
    if n[0] == 150:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
d.decode_training_image = dying
d.open_dataset(sys.argv[1], 16, cache_dir=sys.argv[2])
"""


def test_a_killed_cache_build_leaves_no_file_that_is_used(tmp_path):
    z = write_zip(tmp_path / "d.zip", 300)
    cache = tmp_path / "cache"
    env = {**os.environ, "GANCLI_DATA_WORKERS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(z), str(cache)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    folder = cache / "datasets"
    leftovers = [p.name for p in folder.iterdir()]
    assert leftovers and all(n.startswith(".tmp-") for n in leftovers)  # only the half-written temporary file
    assert cache_files(str(folder)) == []
    ds = open_dataset(str(z), 16, cache_dir=str(cache))  # rebuilt in full; the leftover is removed
    assert [p.name for p in folder.iterdir()] == [os.path.basename(ds.store.path)]
    assert np.array_equal(ds.images, open_dataset(str(z), 16, cache=False).images)


CONCURRENT_OPEN = r"""
import os, sys, time
import gancli.data.images as im
from gancli.data import open_dataset
real, n = im._open_loaded, [0]
def slow(data, label):
    n[0] += 1
    time.sleep(0.002)
    return real(data, label)
im._open_loaded = slow
while not os.path.exists(sys.argv[3]):
    time.sleep(0.005)
ds = open_dataset(sys.argv[1], 16, cache_dir=sys.argv[2])
print(n[0], int(ds.streamed))
"""


def test_concurrent_processes_build_the_cache_once(tmp_path):
    z = write_zip(tmp_path / "d.zip", 300)
    go = tmp_path / "go"
    env = {**os.environ, "GANCLI_DATA_WORKERS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_OPEN, str(z), str(tmp_path / "c"), str(go)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    import time

    time.sleep(1.0)  # both imported and waiting
    go.touch()
    counts = sorted(int(p.communicate(timeout=120)[0].split()[0]) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert counts[1] == 300 and counts[0] <= 1  # one built it; the other waited for the lock (or came later)
    assert len(cache_files(str(tmp_path / "c" / "datasets"))) == 1


def test_size_limit_streams_big_sets_and_evicts_the_least_recently_used(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    folder = os.path.join(cache, "datasets")
    one = 100 * 3 * 16 * 16  # bytes of a 100-image set
    zips = [write_zip(tmp_path / f"z{i}.zip", 100, seed=i) for i in range(3)]
    limit_gb = 2.5 * one / 2**30  # room for two sets
    big = open_dataset(str(write_zip(tmp_path / "big.zip", 300, seed=9)), 16, cache_dir=cache, cache_max_gb=limit_gb)
    assert big.streamed and cache_files(folder) == []  # over the limit: streams, writes nothing
    a = open_dataset(str(zips[0]), 16, cache_dir=cache, cache_max_gb=limit_gb)
    b = open_dataset(str(zips[1]), 16, cache_dir=cache, cache_max_gb=limit_gb)
    os.utime(b.store.path, (1, 1))  # b is the least recently used
    os.utime(a.store.path, (2, 2))
    c = open_dataset(str(zips[2]), 16, cache_dir=cache, cache_max_gb=limit_gb)
    assert sorted(p for p, _, _ in cache_files(folder)) == sorted([a.store.path, c.store.path])
    assert sum(s for _, s, _ in cache_files(folder)) <= limit_gb * 2**30
    assert np.array_equal(b.images[:3], open_dataset(str(zips[1]), 16, cache=False).images[:3])  # still readable
    monkeypatch.setenv("GANCLI_CACHE_MAX_GB", "0")  # the environment sets the default limit
    assert open_dataset(str(zips[1]), 16, cache_dir=cache).streamed
    monkeypatch.setenv("GANCLI_CACHE_MAX_GB", "lots")
    with pytest.raises(Exception, match="GANCLI_CACHE_MAX_GB"):
        open_dataset(str(zips[1]), 16, cache_dir=cache)


def test_doctor_shows_the_dataset_cache(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("GANCLI_CACHE_MAX_GB", "3")
    open_dataset(str(write_zip(tmp_path / "d.zip", 20)), 16)
    s = summary()
    assert s["files"] == 1 and s["bytes"] > 20 * 768 and s["limit_bytes"] == 3 * 2**30
    from gancli.doctor import dataset_cache_row

    what, ok, detail, _ = dataset_cache_row()
    assert ok and str(tmp_path / "c") in detail and "1 file(s)" in detail and "of 3 GiB" in detail
    assert "dataset cache" in cli("doctor", "--no-build").out  # a row of the doctor's table


def test_dry_run_says_where_the_images_will_come_from(cli, tmp_path):
    z = write_zip(tmp_path / "d.zip", 30)
    line = lambda r: next(ln for ln in r.out.splitlines() if ln.startswith("storage"))  # noqa: E731
    plan = cli("train", "quickstart", "--data", z, "--set", "data.resolution=16", "--dry-run")
    assert plan.code == 0 and "30 images" in line(plan) and "memory-mapped cache file" in line(plan)
    plan = cli("train", "quickstart", "--data", z, "--set", "data.resolution=16", "--set", "data.cache_max_gb=0", "--dry-run")
    assert "streamed from the source" in line(plan)
    assert not (tmp_path / "c" / "datasets").exists()


# --------------------------------------------------------------------------------------------------
# Corrupt images met mid-run


def _bad_zip(tmp_path: Path, step: int, batch: int = 4, count: int = 48) -> tuple[Path, str]:
    """A zip of `count` 16 px images with a corrupt one that is first read in step `step` (seed 0)."""
    grid = set(np.random.RandomState(0).choice(count, 4, replace=False).tolist())  # reals.png (train.grid_seeds=4)
    # not the first image (decoded when the dataset is opened), nor one of the reals grid
    bad = next(int(i) for i in epoch_order(count, 0, 0)[step * batch:(step + 1) * batch] if i and i not in grid)
    good = png(np.random.RandomState(1), 16)
    z = write_zip(tmp_path / "bad.zip", count, bad={bad: good[: len(good) // 2]})
    return z, f"{bad // 1000:05d}/img{bad:08d}.png"


STREAM = ("data.cache_max_gb=0", "data.workers=1")  # stream from the zip, one decoding process


def test_corrupt_image_mid_run_is_one_line_and_keeps_the_last_snapshot(cli, tmp_path):
    z, member = _bad_zip(tmp_path, step=5)
    out = tmp_path / "runs"
    result = cli(*tiny_args(z, "train.total_kimg=0.048", "train.snapshot_kimg=0.008", *STREAM), "--outdir", out)
    assert result.code == 2 and "Traceback" not in result.err + result.out, result
    [error] = [ln for ln in result.err.splitlines() if ln.startswith("error")]  # after the run's start lines
    assert member in error and "bad.zip:" in error and "data.skip_bad" in error
    (run,) = run_dirs(out)
    snap = final_tensors(run)  # the snapshot of step 4 is complete and loads
    assert snap and sorted(p.name for p in run.glob("snapshot-*"))[-1].endswith("step00000004.safetensors")


def test_skip_bad_skips_the_same_way_after_a_resume(cli, tmp_path):
    z, member = _bad_zip(tmp_path, step=4)  # read in the resumed half
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = ("data.skip_bad=true", *STREAM)
    first = cli(*tiny_args(z, "train.total_kimg=0.032", *args), "--outdir", straight)
    assert first.code == 0, first
    warnings = [ln for ln in first.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and member in warnings[0] and "skipped" in warnings[0]
    assert cli(*tiny_args(z, "train.total_kimg=0.012", *args), "--outdir", split).code == 0
    (run,) = run_dirs(split)
    resumed = cli(*tiny_args(z, "train.total_kimg=0.032", *args), "--resume", run)
    assert resumed.code == 0, resumed
    assert sum(member in ln for ln in resumed.err.splitlines() if ln.startswith("warning:")) == 1
    a, b = final_tensors(run_dirs(straight)[0]), final_tensors(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_workers_is_bit_identical(cli, tmp_path):
    z = write_zip(tmp_path / "d.zip", 40)
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = ("data.cache_max_gb=0", "data.workers=2")
    assert cli(*tiny_args(z, "train.total_kimg=0.048", *args), "--outdir", straight).code == 0
    assert cli(*tiny_args(z, "train.total_kimg=0.020", *args), "--outdir", split).code == 0  # stops mid-epoch
    (run,) = run_dirs(split)
    assert cli(*tiny_args(z, "train.total_kimg=0.048", *args), "--resume", run).code == 0
    a, b = final_tensors(run_dirs(straight)[0]), final_tensors(run)
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    # and the comparison can fail: the same run on another data order differs
    assert cli(*tiny_args(z, "train.total_kimg=0.048", "train.seed=1", *args), "--outdir", tmp_path / "o").code == 0
    c = final_tensors(run_dirs(tmp_path / "o")[0])
    assert any(not torch.equal(a[k], c[k]) for k in a)



def test_translation_domains_are_memory_mapped_from_the_shared_cache(tmp_path, monkeypatch, decodes):
    import gancli.data.translation as tr
    from gancli.data.translation import open_translation_data

    monkeypatch.setattr(tr, "_open_loaded", images_mod._open_loaded)  # the counting one (imported by name there)
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "c"))
    rng = np.random.RandomState(0)
    for d, count in (("trainA", 5), ("trainB", 7)):
        (tmp_path / "h2z" / d).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.randint(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "h2z" / d / f"{i}.png")
    first = open_translation_data(tmp_path / "h2z", 16, paired=False)
    assert len(cache_files(str(tmp_path / "c" / "datasets"))) == 2  # one file per domain
    decodes["n"] = 0
    again = open_translation_data(tmp_path / "h2z", 16, paired=False)
    assert decodes["n"] == 2  # the first image of each domain (it fixes the shape), then the files are mapped
    assert isinstance(again.A, np.memmap) and isinstance(again.B, np.memmap)
    assert np.array_equal(again.A, first.A) and np.array_equal(again.B, first.B) and again.B.shape == (7, 3, 16, 16)
    monkeypatch.setenv("GANCLI_CACHE_MAX_GB", "0")  # over the limit: decoded into memory as before
    plain = open_translation_data(tmp_path / "h2z", 16, paired=False)
    assert not isinstance(plain.A, np.memmap) and np.array_equal(plain.A, first.A)
