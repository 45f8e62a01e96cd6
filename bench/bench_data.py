"""Streaming data: decode rate, time to the first batch and peak memory of training, as JSON.

    python bench/bench_data.py [--sizes 2000,10000,20000] [--steps 20] [--tmp DIR] [--keep]

Synthetic zips of random-noise PNGs (compression level 1, the worst case for the decoder and the disk)
are written on the fly to a temporary folder.

- `decode`: images/s of ONE process decoding training images from a zip (`decode_training_image`:
  read the member, inflate, decode the PNG, check it) at 64, 256 and 1024 px: the rate per worker.
- `first_batch`: seconds to open the largest zip (index only) and get the first batch of 32 with the
  default workers (streamed), and the same for opening with a cache build (all images decoded first).
- `training`: peak memory of a `gancli train` process doing `--steps` steps of a tiny StyleGAN2 (256 px,
  batch 4) on each zip of 256 px images, streamed (data.cache_max_gb=0, the default workers), sampled
  every 50 ms in the child: peak VmHWM, peak RssAnon (anonymous memory) and RssFile (file pages,
  e.g. the memory-mapped cache) of the training process, and the peak of the proportional anonymous
  memory (Pss_Anon: pages shared by the forked workers counted once) summed over it and its workers. `in_memory_bytes` is what
  the old loader held in every process: N x 3 x 256 x 256 bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Run by the child: sample /proc memory of itself and its children while training, print one JSON line.
CHILD = r"""
import json, os, sys, threading, time
peak = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0, "Pss_Anon_with_workers": 0, "workers": 0}
def status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out
def pss_anon(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss_Anon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
def children():
    pids = []
    for t in os.listdir("/proc/self/task"):
        try:
            pids += [int(p) for p in open(f"/proc/self/task/{t}/children").read().split()]
        except OSError:
            pass
    return pids
def sample():
    while True:
        me = status("self")
        for k in ("VmHWM", "RssAnon", "RssFile"):
            peak[k] = max(peak[k], me.get(k, 0))
        kids = children()
        peak["workers"] = max(peak["workers"], len(kids))
        total = pss_anon("self") + sum(pss_anon(p) for p in kids)  # pages shared after fork counted once
        peak["Pss_Anon_with_workers"] = max(peak["Pss_Anon_with_workers"], total)
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
from gancli.cli import main
start = time.time()
code = main(sys.argv[1:])
time.sleep(0.1)
peak["seconds"] = round(time.time() - start, 1)
peak["exit_code"] = code
print("BENCH " + json.dumps(peak))
"""

TINY_256 = ["data.resolution=256", "model.z_dim=32", "model.w_dim=32", "model.mapping_layers=2", "model.channel_base=256",
            "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null", "model.mbstd_group_size=2",
            "train.batch=4", "loss.r1_interval=4", "loss.pl_interval=4", "train.image_kimg=1000",
            "train.snapshot_kimg=1000", "train.grid_seeds=4"]


def write_zip(path: Path, count: int, size: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.RandomState(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            buf = io.BytesIO()
            Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
            zf.writestr(f"{i // 1000:05d}/img{i:08d}.png", buf.getvalue())
        zf.writestr("dataset.json", json.dumps({"labels": None}))
    return path


def decode_rate(tmp: Path, size: int, count: int) -> dict:
    from gancli.data.images import close_zip_handles, decode_training_image, open_source

    z = write_zip(tmp / f"decode{size}.zip", count, size)
    src = open_source(str(z))
    decode_training_image(src.spec, size, False, src.names[0])  # open the handle
    start = time.perf_counter()
    for name in src.names:
        decode_training_image(src.spec, size, False, name)
    elapsed = time.perf_counter() - start
    close_zip_handles()
    z.unlink()
    return {"images": count, "img_per_s_per_worker": round(count / elapsed, 1)}


def first_batch(z: Path, cache: Path) -> dict:
    from gancli.data import batches, open_dataset
    from gancli.data.loader import resolve_workers

    out = {}
    start = time.perf_counter()
    ds = open_dataset(str(z), 256, cache=False)
    out["open_s"] = round(time.perf_counter() - start, 3)
    b = batches(ds, 32, workers=resolve_workers(None))
    b.take(32)
    out["first_batch_streamed_s"] = round(time.perf_counter() - start, 3)
    t = time.perf_counter()
    for _ in range(10):
        b.take(32)
    out["streamed_img_per_s"] = round(320 / (time.perf_counter() - t), 1)
    out["workers"] = b.workers
    b.close()
    return out


def train_rss(z: Path, steps: int, cache: Path, streamed: bool = True) -> dict:
    kimg = steps * 4 / 1000
    args = ["train", "quickstart", "--data", str(z), "--kimg", f"{kimg:g}", "--outdir", str(z.parent / "runs")]
    for item in TINY_256 + (["data.cache_max_gb=0"] if streamed else []):
        args += ["--set", item]
    env = {**os.environ, "GANCLI_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        return {"failed": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][6:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,20000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tmp", default=None, help="folder for the synthetic zips (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the zips (to reuse them: e.g. the dry run)")
    args = parser.parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="gancli-bench-data-"))
    tmp.mkdir(parents=True, exist_ok=True)
    cache = tmp / "cache"
    result = {"machine": {"python": platform.python_version(), "cores": len(os.sched_getaffinity(0)),
                          "processor": platform.processor() or platform.machine(),
                          "load_before": round(os.getloadavg()[0], 2)}}
    try:
        result["decode"] = {f"{s}px": decode_rate(tmp, s, n) for s, n in ((64, 1000), (256, 300), (1024, 30))}
        result["training"] = {}
        sizes = [int(s) for s in args.sizes.split(",")]
        for n in sizes:
            z = tmp / f"noise256-{n}.zip"
            if not z.exists():
                t = time.perf_counter()
                write_zip(z, n, 256, seed=n)
                write_s = round(time.perf_counter() - t, 1)
            else:
                write_s = None
            entry = {"zip_bytes": z.stat().st_size, "zip_write_s": write_s, "in_memory_bytes": n * 3 * 256 * 256,
                     "streamed": train_rss(z, args.steps, cache)}
            if n == sizes[0]:
                entry["cached"] = train_rss(z, args.steps, cache, streamed=False)  # memory-mapped cache file
            result["training"][str(n)] = entry
        result["first_batch"] = first_batch(tmp / f"noise256-{sizes[-1]}.zip", cache)
    finally:
        result["machine"]["load_after"] = round(os.getloadavg()[0], 2)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
