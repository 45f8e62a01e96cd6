"""Time the official StyleGAN2-ADA training loop (a checkout outside gancli, never committed) at fixed settings.

    python bench/official_train.py --repo .official/stylegan2-ada-pytorch --data D.zip --cfg paper256 \\
        --outdir OUT [--precisions mixed,fp32] [--periods 2,1] [--cond] [--snapshot] [--dry-run [--tiny]]
    python bench/official_train.py --repo .official/stylegan2-ada-pytorch --prebuild bias_act|upfirdn2d

Settings: exactly what `train.py --gpus 1 --cfg CFG --batch B --mirror 1 --aug noaug --metrics none
[--cond 1] [--fp32 1]` sets up: its own `setup_training_loop_kwargs` is called with those options.
`--batch B` (64, the configs' batch) makes batch_gpu = B on one GPU; without it train.py would
accumulate B / ref_gpus per round (8 rounds of 8 for paper256, 2 of 32 for cifar).

Only the loop's bookkeeping differs from train.py (none of it changes a training step):
- a tick is 16 minibatches (one lazy-regularization period: 4 G regularizations and 1 D
  regularization) instead of 4 kimg, and training stops after 1 + 16 * periods minibatches. Tick 0
  is the first minibatch alone (it carries the plugin load and cuDNN's autotuning); every later tick is
  one whole period, and its `sec/kimg` (printed and in stats.jsonl) is the steady-state figure. The
  official loop leaves the maintenance after each tick out of `sec/kimg` itself;
  Its tick clock is read without a device synchronization, and the synchronization in the next
  maintenance is left out, so up to one launch queue of work per tick (a fraction of a minibatch)
  escapes its figure: over a 16-minibatch tick a few percent in its favour at most. gancli's `speed`
  event synchronizes at both ends;
- image grids are not written (`save_image_grid` is replaced by a no-op): maintenance, outside the
  timing, which costs several seconds per 256 px run (reals.png and fakes_init.png are 7680x4096);
- network pickles only with --snapshot, of the mixed-precision run (at tick 0 and at the end), for
  generate.py, calc_metrics.py and `gancli convert`.

Each precision prints one line `RESULT {json}`: the per-tick sec/kimg and peak GPU memory (the
official `gpumem`, max_memory_allocated since the previous tick), their mean over ticks >= 1, whether
its CUDA plugins (bias_act, upfirdn2d) were used or it fell back to its reference ops, and the
warnings it gave (e.g. `conv2d_gradfix not supported on PyTorch 2.x`, which makes it use plain
F.conv2d; on PyTorch 1.7-1.9 it would use its own double-backward-capable convolution).

--prebuild OP compiles (or loads) one of its plugins and exits: gpu_check.sh runs both in the
background while gancli's kernels build, so the official build is not part of its timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_run import official_import  # noqa: E402

_stats_ready = False
PERIOD = 16  # minibatches per lazy-regularization period (D_reg_interval 16, G_reg_interval 4)


def _capture_warnings(store: list[str]) -> None:
    """Print every warning on one line (also in the log) and keep it for the RESULT line."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = f"{category.__name__}: {message}"
        store.append(text[:2000])
        print(f"WARNING {' '.join(text.split())[:600]}", flush=True)

    warnings.showwarning = show
    warnings.simplefilter("default")  # once per place: a warning in a hot loop must not flood the log


def prebuild(op: str) -> dict:
    import torch  # noqa: F401
    from torch_utils import custom_ops

    custom_ops.verbosity = "brief"
    if op == "bias_act":
        from torch_utils.ops import bias_act as module
    elif op == "upfirdn2d":
        from torch_utils.ops import upfirdn2d as module
    else:
        raise SystemExit(f"--prebuild: unknown op {op!r} (bias_act or upfirdn2d)")
    start = time.perf_counter()
    ok = bool(module._init())
    return {"op": op, "plugin": ok, "seconds": round(time.perf_counter() - start, 2)}


def loop_kwargs(args, fp32: bool) -> tuple[str, dict]:
    import train as official_train  # the checkout's train.py (its CLI is not run)

    desc, kwargs = official_train.setup_training_loop_kwargs(
        gpus=1, snap=10**6, metrics=[], seed=0, data=args.data, cond=bool(args.cond), mirror=True,
        cfg=args.cfg, batch=args.batch, aug="noaug", fp32=bool(fp32))
    return desc, kwargs


def run_one(args, precision: str, periods: int, warned: list[str]) -> dict:
    import dnnlib
    import torch
    from torch_utils import training_stats
    from torch_utils.ops import bias_act, upfirdn2d
    from training import training_loop

    fp32 = precision == "fp32"
    desc, kwargs = loop_kwargs(args, fp32)
    batch = kwargs.batch_size
    total_images = batch * (1 + PERIOD * periods)
    kwargs.kimg_per_tick = (PERIOD * batch - 0.5) / 1000  # 16 minibatches per tick after tick 0
    kwargs.total_kimg = (total_images - batch / 2) / 1000  # stop right after minibatch 1 + 16 * periods
    kwargs.image_snapshot_ticks = None
    # tick 0 and the end (0 % N == 0), for the mixed-precision run only: a 256 px pickle is ~0.3 GB
    kwargs.network_snapshot_ticks = 10**6 if args.snapshot and precision == "mixed" else None
    run_dir = Path(args.outdir) / f"{args.cfg}-{precision}"
    run_dir.mkdir(parents=True, exist_ok=True)
    kwargs.run_dir = str(run_dir)
    settings = {"desc": desc, "batch_size": batch, "batch_gpu": kwargs.batch_gpu, "r1_gamma": kwargs.loss_kwargs.r1_gamma,
                "pl_weight": kwargs.loss_kwargs.get("pl_weight", 2), "style_mixing_prob": kwargs.loss_kwargs.get("style_mixing_prob", 0.9),
                "mapping_layers": kwargs.G_kwargs.mapping_kwargs.num_layers,
                "channel_base": kwargs.G_kwargs.synthesis_kwargs.channel_base,
                "channel_max": kwargs.G_kwargs.synthesis_kwargs.channel_max,
                "num_fp16_res": kwargs.G_kwargs.synthesis_kwargs.num_fp16_res,
                "conv_clamp": kwargs.G_kwargs.synthesis_kwargs.conv_clamp,
                "mbstd_group_size": kwargs.D_kwargs.epilogue_kwargs.mbstd_group_size,
                "d_architecture": kwargs.D_kwargs.get("architecture", "resnet"), "ema_kimg": kwargs.ema_kimg,
                "ema_rampup": kwargs.ema_rampup, "lr": kwargs.G_opt_kwargs.lr, "augment": kwargs.get("augment_kwargs"),
                "xflip": kwargs.training_set_kwargs.xflip, "use_labels": kwargs.training_set_kwargs.use_labels,
                "G_reg_interval": 4, "D_reg_interval": 16, "cudnn_benchmark": kwargs.get("cudnn_benchmark", True),
                "allow_tf32": kwargs.get("allow_tf32", False)}
    result = {"code": "official", "cfg": args.cfg, "precision": precision, "periods": periods,
              "images": total_images, "settings": settings}
    if args.dry_run:
        import dnnlib  # noqa: F811

        if args.tiny:  # flag checking on a CPU: small networks
            for k in (kwargs.G_kwargs.synthesis_kwargs, kwargs.D_kwargs):
                k.channel_base, k.channel_max = 256, 16
        ds = dnnlib.util.construct_class_by_name(**kwargs.training_set_kwargs)
        common = dict(c_dim=ds.label_dim, img_resolution=ds.resolution, img_channels=ds.num_channels)
        G = dnnlib.util.construct_class_by_name(**kwargs.G_kwargs, **common)
        D = dnnlib.util.construct_class_by_name(**kwargs.D_kwargs, **common)
        result["dry_run"] = (f"networks built on the CPU: G {sum(p.numel() for p in G.parameters()):,} and "
                             f"D {sum(p.numel() for p in D.parameters()):,} parameters; not trained (needs CUDA)")
        if args.write_pickle:
            import copy
            import pickle

            with open(args.write_pickle, "wb") as f:
                pickle.dump(dict(training_set_kwargs=dict(kwargs.training_set_kwargs), G=G, D=D,
                                 G_ema=copy.deepcopy(G).eval(), augment_pipe=None), f)
            result["pickle"] = args.write_pickle
        return result

    global _stats_ready
    if not _stats_ready:  # once per process: it refuses a second call after the first statistics sync
        training_stats.init_multiprocessing(rank=0, sync_device=None)
        _stats_ready = True
    logger = dnnlib.util.Logger(file_name=str(run_dir / "log.txt"), file_mode="a", should_flush=True)
    before = len(warned)
    training_loop.save_image_grid = lambda *a, **k: None  # see the module docstring
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        training_loop.training_loop(rank=0, **kwargs)
    finally:
        logger.close()
    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    ticks = []
    for line in (run_dir / "stats.jsonl").read_text().splitlines():
        rec = json.loads(line)
        ticks.append({"tick": int(rec["Progress/tick"]["mean"]), "kimg": round(rec["Progress/kimg"]["mean"], 3),
                      "sec_per_kimg": rec["Timing/sec_per_kimg"]["mean"],
                      "peak_gpu_mem_gb": rec["Resources/peak_gpu_mem_gb"]["mean"]})
    steady = [t for t in ticks if t["tick"] >= 1]
    result["ticks"] = ticks
    if steady:
        result["sec_per_kimg"] = round(sum(t["sec_per_kimg"] for t in steady) / len(steady), 4)
        result["peak_gpu_mem_gb"] = round(max(t["peak_gpu_mem_gb"] for t in steady), 3)
    result["plugins"] = {"bias_act": bias_act._plugin is not None, "upfirdn2d": upfirdn2d._plugin is not None}
    result["ops"] = "cuda plugins" if all(result["plugins"].values()) else "REFERENCE ops for " + ", ".join(
        k for k, v in result["plugins"].items() if not v)
    result["warnings"] = sorted({" ".join(w.split())[:300] for w in warned[before:]})
    result["conv2d_gradfix"] = not any("conv2d_gradfix not supported" in w for w in warned)
    pkls = sorted(run_dir.glob("network-snapshot-*.pkl"))
    if pkls:
        result["pickle"] = str(pkls[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--prebuild", choices=["bias_act", "upfirdn2d"])
    parser.add_argument("--data")
    parser.add_argument("--cfg", choices=["paper256", "cifar", "stylegan2", "paper512", "paper1024", "auto"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cond", action="store_true", help="class-conditional (--cond 1; the dataset needs labels)")
    parser.add_argument("--outdir", default="official-runs")
    parser.add_argument("--precisions", default="mixed,fp32", help="mixed (fp16 in the top 4 resolutions, conv_clamp 256) and/or fp32")
    parser.add_argument("--periods", default="2,1", help="measured 16-minibatch periods per precision, in the same order")
    parser.add_argument("--snapshot", action="store_true", help="write network pickles of the mixed run (tick 0 and end)")
    parser.add_argument("--dry-run", action="store_true", help="set up and build the networks on the CPU; train nothing")
    parser.add_argument("--tiny", action="store_true", help="with --dry-run: small networks")
    parser.add_argument("--write-pickle", help="with --dry-run: write the untrained networks as an official pickle")
    args = parser.parse_args()
    official_import(args.repo)
    warned: list[str] = []
    _capture_warnings(warned)
    if args.prebuild:
        print("RESULT " + json.dumps(prebuild(args.prebuild)), flush=True)
        return
    if not args.data or not args.cfg:
        parser.error("--data and --cfg are needed (or --prebuild)")
    precisions = args.precisions.split(",")
    periods = [int(p) for p in args.periods.split(",")]
    periods += [periods[-1]] * (len(precisions) - len(periods))
    failed = False
    for precision, n in zip(precisions, periods):
        try:
            result = run_one(args, precision, n, warned)
        except Exception as e:  # one precision failing must not hide the other
            import traceback

            traceback.print_exc()
            result = {"code": "official", "cfg": args.cfg, "precision": precision, "error": f"{type(e).__name__}: {e}"[:1000]}
            failed = True
        print("RESULT " + json.dumps(result, default=str), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
