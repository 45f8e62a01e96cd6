"""Throughput of the ADA augmentation pipeline (forward + backward to the images): prints one JSON object.

    python bench/bench_augment.py                          # presets bgc and bgcfnc, 32 and 256 px, 2 threads
    python bench/bench_augment.py --res 64 --pipes bgc --p 0.2,0.6 --device cuda

For each preset, resolution and p: images/s of `pipe(x)` followed by a backward pass to `x` (what
every D evaluation of a training step adds), the median over timed iterations after warm-up. At
p = 0 the pipeline returns its input (no cost); its cost grows with p as more images are resampled.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def measure(pipe_name: str, res: int, p: float, batch: int, seconds: float, device: str) -> dict:
    from gancli.augment import AugmentPipe, preset_multipliers

    pipe = AugmentPipe(preset_multipliers(pipe_name), p=p).to(device)
    x = torch.randn(batch, 3, res, res, device=device, requires_grad=True)
    times = []
    torch.manual_seed(0)
    for i in range(1000):
        start = time.perf_counter()
        pipe(x).square().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
        if sum(times) > seconds:
            break
    median = statistics.median(times)
    return {"pipe": pipe_name, "res": res, "p": p, "batch": batch, "img_s": round(batch / median, 1),
            "ms_per_batch": round(median * 1000, 2), "iterations": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipes", default="bgc,bgcfnc")
    parser.add_argument("--res", default="32,256")
    parser.add_argument("--p", default="0.2,0.6")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [measure(pipe, int(res), float(p), args.batch, args.seconds, args.device)
               for pipe in args.pipes.split(",") for res in args.res.split(",") for p in args.p.split(",")]
    print(json.dumps({"augment": results, "device": args.device, "threads": args.threads, "torch": torch.__version__,
                      "machine": platform.machine()}, indent=1))


if __name__ == "__main__":
    main()
