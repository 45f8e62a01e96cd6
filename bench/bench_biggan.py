"""Throughput of the ResNet-family networks (SNGAN, SAGAN, BigGAN) on CPU or GPU: prints one JSON object.

    python bench/bench_biggan.py                         # biggan-cifar10 and sngan-cifar10 networks, batch 16
    python bench/bench_biggan.py --recipes biggan-dogs64 --batch 8 --seconds 10

Measured per recipe (its networks at full width, c_dim 10, float32):
- `g_forward_img_s`: `G(z, c)` in eval mode under `torch.no_grad()`.
- `train_step_img_s`: one ResNet-family training step as `train/resnet.py` runs it, with the recipe's
  `d_steps` D updates (hinge loss) and one G update (+ orthogonal regularization when the recipe has
  it), counted in real images shown to D per second. Median over timed iterations after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def timed(fn, seconds: float) -> float:
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, batch: int, seconds: float, device: str) -> dict:
    from gancli.losses import HingeLoss, add_orthogonal_grad
    from gancli.models import build_networks
    from gancli.recipe import load_recipe

    recipe = load_recipe(name)
    c_dim = 10
    G, D = build_networks(recipe, c_dim=c_dim)
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.0, 0.999))
    res = recipe.data.resolution
    reals = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    c = torch.eye(c_dim, device=device)[torch.arange(batch) % c_dim]
    loss = HingeLoss()
    ortho = [p for n, p in G.named_parameters() if p.ndim >= 2 and not n.startswith("shared.")]

    def forward():
        G.eval()
        with torch.no_grad():
            G(torch.randn(batch, G.z_dim, device=device), c)

    def step():
        G.train()
        for _ in range(recipe.train.d_steps):
            with torch.no_grad():
                fake = G(torch.randn(batch, G.z_dim, device=device), c)
            l_real, l_fake = loss.d_loss(D(reals, c), D(fake, c))
            opt_d.zero_grad(set_to_none=True)
            (l_real.mean() + l_fake.mean()).backward()
            opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        loss.g_loss(D(G(torch.randn(batch, G.z_dim, device=device), c), c)).mean().backward()
        if recipe.loss.ortho_reg:
            add_orthogonal_grad(ortho, recipe.loss.ortho_reg)
        opt_g.step()

    t_fwd = timed(forward, seconds)
    t_step = timed(step, seconds)
    return {
        "recipe": name, "resolution": res, "batch": batch, "d_steps": recipe.train.d_steps,
        "g_params": sum(p.numel() for p in G.parameters()), "d_params": sum(p.numel() for p in D.parameters()),
        "g_forward_img_s": round(batch / t_fwd, 2), "train_step_img_s": round(batch * recipe.train.d_steps / t_step, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="biggan-cifar10,sngan-cifar10")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = [bench(name, args.batch, args.seconds, args.device) for name in args.recipes.split(",")]
    print(json.dumps({"device": args.device, "threads": args.threads, "torch": torch.__version__,
                      "machine": platform.machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
