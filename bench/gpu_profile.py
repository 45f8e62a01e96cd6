"""Where a gancli training step spends its time: torch profiler tables and peak memory of single steps.

    python bench/gpu_profile.py --recipe stylegan2-ffhq256 --data D.zip --out DIR [--precisions mixed,fp32]
                                [--batch 64] [--rows 15] [--device cuda] [--set KEY=VALUE ...]

Per precision, through the real trainer (the recipe with the same overrides as bench/gpu_gancli_train.py,
torch flags as the official training loop sets them: cuDNN benchmark on, TF32 off):
1. a warm-up step (step 0: all four phases, so every shape is autotuned and allocated once);
2. a timed "full" step, numbered 16 so that all four phases run (Gmain, Greg, Dmain, Dreg), with the
   peak allocated GPU memory reset before it: `full_step_peak_gpu_mem_gb` is one training step's peak;
3. a timed "plain" step (Gmain + Dmain, step 17) with its own peak;
4. the profiler over one full step and over one plain step: the top `--rows` ops by self device time
   (self CPU time on a CPU), written to DIR/profile-<precision>-full.txt and -plain.txt.
The step numbers only choose which phases run (step % interval == 0) and seed the step's draws.
A 16-step period costs about plain * 12 + (plain + Greg) * 3 + full. Prints `RESULT {json}` per precision.
bench/gpu_gancli_train.py --profile DIR calls `profile_precision` right after each training run, in the
same process, so that cuDNN's autotuning is not paid twice (gpu_check.sh does that).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_precision(recipe_name: str, data: str, out: Path, precision: str, batch: int = 64, rows: int = 15,
                      device: str = "auto", sets: list[str] = ()) -> dict:
    """Steps 1-4 of the module docstring for one precision; returns what the RESULT line holds."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gancli import ops
    from gancli.losses import LossStats
    from gancli.recipe import load_recipe, parse_override
    from gancli.train.loop import Trainer

    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"data.source={data}", f"train.batch={batch}", "distributed.gpus=1", "data.xflip=true",
                 "metrics.names=[]", "augment.kind=none", f"train.device={device}"] + list(sets)
    if precision == "fp32":
        overrides += ["model.num_fp16_res=0", "model.conv_clamp=null"]
    recipe = load_recipe(recipe_name, [parse_override(s) for s in overrides])
    ops.set_impl(recipe.ops)
    dataset = recipe.family.open_dataset(recipe)
    result = {"recipe": recipe_name, "precision": precision, "batch": batch}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, dataset, Path(tmp), progress=False)
        dev = trainer.device
        result["device"] = str(dev)
        trainer.use_data(recipe.family.data_stream(recipe, dataset, trainer.batch_rank, start_index=0, rank=0,
                                                   world_size=1))
        stats = LossStats()

        def step(number: int) -> float:
            trainer.state.step = number
            _sync(dev)
            start = time.perf_counter()
            trainer.train_step(stats)
            _sync(dev)
            return time.perf_counter() - start

        result["warmup_step_seconds"] = round(step(0), 3)
        for name, number in (("full", 16), ("plain", 17)):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            result[f"{name}_step_seconds"] = round(step(number), 4)
            if dev.type == "cuda":
                result[f"{name}_step_peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        for name, number in (("full", 32), ("plain", 33)):
            with profile(activities=activities) as prof:
                step(number)
            averages = prof.key_averages()
            keys = ["self_device_time_total", "self_cuda_time_total"] if dev.type == "cuda" else ["self_cpu_time_total"]
            table, used = None, keys[-1]
            for key in keys:  # newer torch names it 'device', older 'cuda'
                try:
                    table, used = averages.table(sort_by=key, row_limit=rows), key
                    break
                except (KeyError, AttributeError, ValueError):
                    continue
            path = out / f"profile-{precision}-{name}.txt"
            phases = "Gmain, Greg, Dmain, Dreg" if name == "full" else "Gmain, Dmain"
            path.write_text(f"gancli {recipe_name} {precision}, batch {batch}, one {name} step ({phases}) on {dev}, "
                            f"torch {torch.__version__}, sorted by {used}\n{table or '(no table)'}\n")
            result[f"profile_{name}"] = str(path)
    return result  # the trainer goes with this frame; callers may torch.cuda.empty_cache() after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--precisions", default="mixed,fp32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    import torch

    torch.backends.cudnn.benchmark = True  # as the official training loop
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for precision in args.precisions.split(","):
        result = profile_precision(args.recipe, args.data, Path(args.out), precision, batch=args.batch, rows=args.rows,
                                   device=args.device, sets=args.sets)
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
