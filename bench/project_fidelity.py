"""Fidelity of `gancli project`: how well projection reconstructs images, as one JSON object.

    python bench/project_fidelity.py CKPT [--seeds 0-7] [--real 8] [--steps 300] [--spaces w,w+] [--out f.json]

- `generated`: images the model made itself from seeds (noise_mode const, so an exact W latent and
  noise exist), projected in each space; PSNR (dB, uint8) and perceptual distance of proj vs target.
- `true_w_other_noise`: PSNR of each generated image against its own latent rendered with a fresh
  noise draw: what a projection that finds w exactly but not the noise realization would reach.
- `real`: `--real` images of the model's training data (its recipe's `data.source`; evenly spaced
  indices), projected in each space.
Medians are over targets. Everything uses the library functions the `gancli project` command uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def run(loaded, targets, space: str, args) -> dict:
    from gancli.project import ProjectConfig, load_perceptual, project, psnr, to_float
    from gancli.render import to_uint8

    device = next(loaded.G.parameters()).device
    perceptual = load_perceptual(None, device, min_size=args.perceptual_min)
    cfg = ProjectConfig(steps=args.steps, space=space, seed=args.seed, lr=args.lr, mse=args.mse, noise_reg=args.noise_reg,
                        noise_init=args.noise_init)
    start = time.perf_counter()
    result = project(loaded.G, targets, cfg, perceptual)
    seconds = time.perf_counter() - start
    fits = to_uint8(result.images)
    dist = perceptual.distance(perceptual.features(to_float(fits, device)), perceptual.features(to_float(targets, device)))
    psnrs = [psnr(f, t) for f, t in zip(fits, targets)]
    return {
        "space": space, "steps": args.steps, "lr": args.lr, "mse": args.mse, "noise_reg": args.noise_reg,
        "noise_init": args.noise_init, "seconds": round(seconds, 1),
        "psnr_db": [round(p, 2) for p in psnrs], "stlpips": [round(float(d), 4) for d in dist],
        "median_psnr_db": round(statistics.median(psnrs), 2),
        "median_stlpips": round(statistics.median(float(d) for d in dist), 4),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--real", type=int, default=8, help="training images to project (0: none)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--spaces", default="w,w+")
    parser.add_argument("--seed", type=int, default=303)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--mse", type=float, default=0.0)
    parser.add_argument("--noise-reg", type=float, default=1e5)
    parser.add_argument("--noise-init", default="random", help="random (the paper) or const (the network's noise)")
    parser.add_argument("--perceptual-min", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from gancli import explore
    from gancli.data import open_dataset
    from gancli.latent import parse_seeds
    from gancli.models import load_generator
    from gancli.project import psnr
    from gancli.render import to_uint8

    loaded = load_generator(args.ckpt, device="cuda" if torch.cuda.is_available() else "cpu")
    spaces = args.spaces.split(",")
    report: dict = {"ckpt": args.ckpt, "torch_threads": torch.get_num_threads(), "perceptual_min": args.perceptual_min,
                    "generated": [], "real": []}
    seeds = parse_seeds(args.seeds)
    generated = to_uint8(explore.sample(loaded, seeds))
    # The bound set by the noise inputs: the true latent rendered with another noise draw.
    redrawn = to_uint8(explore.sample(loaded, seeds, noise_mode="random"))
    bound = [psnr(a, b) for a, b in zip(redrawn, generated)]
    report["true_w_other_noise"] = {"psnr_db": [round(p, 2) for p in bound], "median_psnr_db": round(statistics.median(bound), 2)}
    for space in spaces:
        report["generated"].append(run(loaded, generated, space, args))
        print(json.dumps(report["generated"][-1]), file=sys.stderr)
    if args.real:
        data = open_dataset(loaded.recipe.data.source, loaded.G.img_resolution)
        index = np.linspace(0, len(data.images) - 1, args.real).round().astype(int)
        report["real_indices"] = index.tolist()
        real = np.ascontiguousarray(data.images[index].transpose(0, 2, 3, 1))
        for space in spaces:
            report["real"].append(run(loaded, real, space, args))
            print(json.dumps(report["real"][-1]), file=sys.stderr)
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
