"""Speed of `gancli project`: seconds per optimization step, as one JSON object.

    python bench/project_speed.py [--resolution 256] [--steps 20] [--batch 1] [--space w+] [--device auto]

A StyleGAN2 generator of the 'paper256' sizes (channel_base 16384, channel_max 512, w 512, 8 mapping
layers; random weights: speed does not depend on them) projects `--batch` random targets. The first
two steps are a warm-up; `projected_1000_steps_s` extrapolates the measured steps to a 1000-step run
(plus the one-off w statistics, timed separately). The issue's target: well under a minute on a GPU at 256 px.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--space", default="w+")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from gancli import project as projection
    from gancli.models import build_generator
    from gancli.recipe import load_recipe, parse_override

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    overrides = [f"data.resolution={args.resolution}", "model.channel_base=16384", "model.channel_max=512",
                 "model.z_dim=512", "model.w_dim=512", "model.mapping_layers=8"]
    recipe = load_recipe("quickstart", [parse_override(s) for s in overrides])
    torch.manual_seed(0)
    G = build_generator(recipe, c_dim=0).eval().requires_grad_(False).to(device)
    perceptual = projection.load_perceptual(None, device)
    targets = np.random.RandomState(0).randint(0, 256, (args.batch, args.resolution, args.resolution, 3), dtype=np.uint8)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    projection.w_statistics(G, 10000, 0)
    sync()
    stats_s = time.perf_counter() - start
    times = []

    def on_step(step, images, dist, loss):
        sync()
        times.append(time.perf_counter())

    cfg = projection.ProjectConfig(steps=args.steps, space=args.space, w_avg_samples=16)
    projection.project(G, targets, cfg, perceptual, on_step=on_step)
    per_step = (times[-1] - times[1]) / (len(times) - 2)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(), "resolution": args.resolution, "batch": args.batch,
        "space": args.space, "steps_timed": len(times) - 2, "seconds_per_step": round(per_step, 4),
        "w_statistics_s": round(stats_s, 3), "projected_1000_steps_s": round(1000 * per_step + stats_s, 1),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
