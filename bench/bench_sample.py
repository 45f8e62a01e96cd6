"""`gancli sample --batch N` throughput and how far batched images drift from single ones, as JSON.

    python bench/bench_sample.py [--device cpu] [--threads 2] [--seconds 4] [--batches 1,8,64]

On the quick-start generator (StyleGAN2 32x32, 128-d z/w, 2 mapping layers; random weights: speed and
rounding do not depend on training). For each batch size: images/s through `explore.sample_batched`
(mapping + synthesis, const noise, psi 0.7), and against batch 1 the largest float difference, the
largest uint8 difference and the share of uint8 values that differ, over 128 seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--seeds", type=int, default=128)
    args = parser.parse_args()
    import torch

    from gancli import explore
    from gancli.models import LoadedGenerator, build_networks
    from gancli.recipe import load_recipe
    from gancli.render import to_uint8

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G, _ = build_networks(load_recipe("quickstart"), c_dim=0)
    G = G.eval().requires_grad_(False).to(args.device)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    loaded = LoadedGenerator(G, None, {}, Path("quickstart-random.safetensors"))
    seeds = list(range(args.seeds))
    reference = explore.sample_batched(loaded, seeds, 1, psi=0.7)
    ref_u8 = to_uint8(reference).astype(int)
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        images = explore.sample_batched(loaded, seeds, batch, psi=0.7)
        u8 = to_uint8(images).astype(int)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds or done < batch:  # at least one full batch
            explore.sample_batched(loaded, seeds[:batch], batch, psi=0.7)
            done += batch
        if args.device == "cuda":
            torch.cuda.synchronize()
        rate = done / (time.perf_counter() - start)
        results[str(batch)] = {"img_s": round(rate, 2), "max_abs_float_diff_vs_batch1": float((images - reference).abs().max()),
                               "max_uint8_diff_vs_batch1": int(abs(u8 - ref_u8).max()),
                               "uint8_values_differing": round(float((u8 != ref_u8).mean()), 6)}
    print(json.dumps({"generator": "quickstart (StyleGAN2 32x32, random weights)", "device": args.device,
                      "threads": args.threads, "seeds_compared": args.seeds, "batches": results}))


if __name__ == "__main__":
    main()
