"""Scaling of data-parallel training from 1 to N processes (torch.distributed), as JSON.

    python bench/bench_ddp.py [--config A] [--batch 16] [--steps 8] [--procs 1,2] [--device cpu]

Strong scaling: the same global batch and networks (bench/run.py's training config, with the
regularization of StyleGAN2) trained by 1 process, then by N processes that each take batch/N. Each
process runs full `Trainer.train_step`s (all four phases, gradient all-reduce per phase, EMA on rank 0)
with ONE CPU thread (on CUDA: one GPU each), so N processes use N cores. Reported per process count:
images/s of the whole job, and `efficiency` = rate_N / (N * rate_1) (1.0 is perfect scaling).

The load average before and after is recorded: on a shared machine other work steals cores, and
the numbers are only meaningful when `load_before` is well below the number of cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def worker(args) -> None:
    import torch
    from run import COMMON, TRAIN_CONFIGS

    from gancli.data import batches, open_dataset
    from gancli.losses import LossStats
    from gancli.recipe import load_recipe, parse_override
    from gancli.train import distributed
    from gancli.train.loop import Trainer

    torch.set_num_threads(1)
    overrides = TRAIN_CONFIGS[args.config] + COMMON + [f"train.batch={args.batch}", f"train.device={args.device}"]
    recipe = load_recipe("quickstart", [parse_override(s) for s in overrides])
    world = distributed.world_from_env()
    device = distributed.setup(recipe, *world) if world else None
    rank, world_size = (world[0], world[2]) if world else (0, 1)
    dataset = open_dataset(args.data, recipe.data.resolution, cache=False)
    trainer = Trainer(recipe, dataset, Path(args.data), device=device, progress=False)
    trainer.use_data(batches(dataset, trainer.batch_rank, seed=0, rank=rank, world_size=world_size))
    stats = LossStats()

    def sync():
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if world:
            import torch.distributed as dist

            dist.barrier()

    for _ in range(2):  # warm-up
        trainer.train_step(stats)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(stats)
    sync()
    seconds = time.perf_counter() - start
    if rank == 0:
        print(json.dumps({"img_s": round(args.steps * args.batch / seconds, 3), "seconds": round(seconds, 2)}))
    distributed.shutdown()


def run_job(nprocs: int, args, data: str) -> dict:
    from gancli.train.distributed import free_port

    base = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", data, "--config", args.config,
            "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nprocs == 1:
        env.pop("WORLD_SIZE", None)
        envs = [env]
    else:
        port = str(free_port())
        envs = [dict(env, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(nprocs), MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=port) for r in range(nprocs)]
    procs = [subprocess.Popen(base, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for e in envs]
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"bench_ddp: a worker failed:\n{err[-2000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="A")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import numpy as np
    from PIL import Image
    from run import TRAIN_CONFIGS

    res = int(next(s for s in TRAIN_CONFIGS[args.config] if s.startswith("data.resolution=")).split("=")[1])
    counts = [int(n) for n in args.procs.split(",")]
    result = {"config": args.config, "batch": args.batch, "steps": args.steps, "device": args.device,
              "threads_per_process": 1, "cpu_count": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2),
              "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.RandomState(0)
        for i in range(64):
            Image.fromarray(rng.randint(0, 255, (res, res, 3), dtype=np.uint8)).save(Path(tmp) / f"{i}.png")
        for n in counts:
            result["results"][str(n)] = run_job(n, args, tmp)
    base = result["results"].get("1")
    if base:
        for n in counts:
            r = result["results"][str(n)]
            r["efficiency"] = round(r["img_s"] / (n * base["img_s"]), 3)
    result["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
