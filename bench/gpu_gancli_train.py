"""Time `gancli train` at the settings the official StyleGAN2-ADA run uses (bench/official_train.py).

    python bench/gpu_gancli_train.py --recipe stylegan2-ffhq256 --data D.zip --outdir OUT \\
        [--precisions mixed,fp32] [--periods 2,1] [--batch 64] [--torch-defaults] [--set KEY=VALUE ...]

Each precision is one real `gancli train` (through `gancli.cli.main`, in this process) of
1 + 16 * periods minibatches: the first minibatch carries the one-time costs (kernel load, cuDNN
autotuning) and the rest are whole lazy-regularization periods (16 minibatches: 4 G and 1 D
regularization), as the official ticks are timed. The figure is the `speed` event gancli writes to
stats.jsonl at the end of the run (steady seconds per kimg after the first step, maintenance left out,
peak GPU memory over those steps).

Identical settings, recipe against the official `cfg_specs` (train.py --gpus 1 --batch 64 --mirror 1
--aug noaug --metrics none):

| official            | paper256 | cifar | gancli key                        | stylegan2-ffhq256 | stylegan2-cifar |
| ------------------- | -------- | ----- | --------------------------------- | ----------------- | --------------- |
| mb / --batch        | 64       | 64    | train.batch (batch_gpu = batch)   | 64                | 64              |
| gpus                | 1        | 1     | distributed.gpus (--gpus 1)       | 1                 | 1 (recipe: 2)   |
| fmaps -> channel_base | 16384  | 32768 | model.channel_base                | 16384             | 32768           |
| channel_max         | 512      | 512   | model.channel_max                 | 512               | 512             |
| map                 | 8        | 2     | model.mapping_layers              | 8                 | 2               |
| mbstd group         | 8        | 32    | model.mbstd_group_size            | 8                 | 32              |
| gamma               | 1        | 0.01  | loss.r1_gamma                     | 1                 | 0.01            |
| pl_weight           | 2        | 0     | loss.pl_weight                    | 2                 | 0               |
| style mixing        | 0.9      | 0     | loss.style_mixing_prob            | 0.9               | 0               |
| D architecture      | resnet   | orig  | model.d_architecture              | resnet            | orig            |
| G_reg / D_reg interval | 4 / 16 | 4 / 16 | loss.pl_interval / r1_interval  | 4 / 16            | 4 / 16          |
| lrate, betas        | 0.0025, (0, 0.99) | same | train.g_lr, d_lr, betas  | same              | same            |
| ema, ramp           | 20, none | 500, 0.05 | train.ema_kimg, ema_rampup    | 20, null          | 500, 0.05       |
| num_fp16_res, conv_clamp | 4, 256 (--fp32: 0, none) | same | model.num_fp16_res, conv_clamp | 4, 256 (fp32: 0, null) | same |
| --mirror 1          | x-flips  | x-flips | data.xflip (--mirror)           | true              | true            |
| --cond 1            | -        | labels | data.use_labels                  | false             | true            |
| --aug noaug         | no ADA   | no ADA | augment.kind                     | none              | none            |
| --metrics none      |          |       | metrics.names                     | [] (set here)     | [] (set here)   |
| cudnn.benchmark     | True     | True  | (torch flag, set here)            | True              | True            |
| allow_tf32 (matmul, cuDNN) | False | False | (torch flags, set here)      | False             | False           |

The torch flags are the official training loop's defaults; gancli itself leaves torch's own (cuDNN
benchmark off, cuDNN TF32 on), so `--torch-defaults` times gancli as it runs out of the box instead.
Prints one line `RESULT {json}` per precision.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PERIOD = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--outdir", default="gancli-runs")
    parser.add_argument("--precisions", default="mixed,fp32")
    parser.add_argument("--periods", default="2,1")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default=None, help="train.device (default: the recipe's, auto)")
    parser.add_argument("--ops", default=None, help="ops: auto, cuda or ref (default: the recipe's, auto)")
    parser.add_argument("--torch-defaults", action="store_true", help="leave cuDNN benchmark and TF32 as torch has them")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="more recipe overrides (repeatable)")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="after each run, profile single steps in this process (bench/gpu_profile.py) into DIR")
    parser.add_argument("--profile-rows", type=int, default=15)
    args = parser.parse_args()

    import torch

    if not args.torch_defaults:  # as the official training loop sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    flags = {"cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
             "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    from gancli.cli import main as gancli_main

    precisions = args.precisions.split(",")
    periods = [int(p) for p in args.periods.split(",")]
    periods += [periods[-1]] * (len(precisions) - len(periods))
    failed = False
    for precision, n in zip(precisions, periods):
        images = args.batch * (1 + PERIOD * n)
        outdir = Path(args.outdir) / f"{Path(args.recipe).stem}-{precision}"
        argv = ["train", args.recipe, "--data", args.data, "--gpus", "1", "--batch", str(args.batch), "--mirror",
                "--kimg", repr(images / 1000), "--outdir", str(outdir), "--set", "metrics.names=[]",
                "--set", "train.snapshot_kimg=100000", "--set", "train.image_kimg=100000", "--set", "augment.kind=none"]
        if precision == "fp32":
            argv += ["--set", "model.num_fp16_res=0", "--set", "model.conv_clamp=null"]
        elif precision != "mixed":
            parser.error(f"--precisions: {precision!r} is not mixed or fp32")
        if args.device:
            argv += ["--device", args.device]
        if args.ops:
            argv += ["--ops", args.ops]
        for item in args.sets:
            argv += ["--set", item]
        result = {"code": "gancli", "recipe": args.recipe, "precision": precision, "periods": n, "images": images,
                  "torch_flags": flags, "argv": " ".join(argv)}
        print("gancli " + " ".join(argv), flush=True)
        start = time.perf_counter()
        try:
            code = gancli_main(argv)
        except Exception as e:  # noqa: BLE001  (one precision failing must not hide the other)
            import traceback

            traceback.print_exc()
            code, result["error"] = 1, f"{type(e).__name__}: {e}"[:1000]
        result["exit_code"] = code
        result["wall_seconds"] = round(time.perf_counter() - start, 2)
        runs = sorted(p for p in outdir.glob("*") if (p / "stats.jsonl").is_file()) if outdir.is_dir() else []
        if runs:
            records = [json.loads(line) for line in (runs[-1] / "stats.jsonl").read_text().splitlines() if line.strip()]
            speed = next((r for r in reversed(records) if r.get("event") == "speed"), None)
            if speed:
                result.update({k: speed[k] for k in ("sec_per_kimg", "img_per_s", "measured_kimg", "measured_seconds",
                                                     "peak_gpu_mem_gb") if k in speed})
            result["log_img_per_s"] = [r["img_per_s"] for r in records if "img_per_s" in r and "event" not in r]
            result["run_dir"] = str(runs[-1])
            snaps = sorted(runs[-1].glob("snapshot-*.safetensors"))
            if snaps:
                result["snapshot"] = str(snaps[-1])
        failed |= code != 0 or "sec_per_kimg" not in result
        print("RESULT " + json.dumps(result), flush=True)
        if args.profile:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from gpu_profile import profile_precision

            try:
                profiled = profile_precision(args.recipe, args.data, Path(args.profile), precision, batch=args.batch,
                                             rows=args.profile_rows, device=args.device or "auto", sets=args.sets)
            except Exception as e:  # noqa: BLE001
                import traceback

                traceback.print_exc()
                profiled, failed = {"precision": precision, "error": f"{type(e).__name__}: {e}"[:1000]}, True
            print("PROFILE " + json.dumps(profiled), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next precision starts from the same free memory
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
