"""Throughput of the StyleGAN2 networks on CPU (or GPU): prints one JSON object.

    python bench/bench_nets.py                       # configs A and B, 2 threads
    python bench/bench_nets.py --configs A --threads 2 --seconds 10
    python bench/bench_nets.py --official ~/src/stylegan2-ada-pytorch   # same runs on the official code

Measured per config:
- `g_forward_img_s`: `G(z, c)` in eval mode under `torch.no_grad()` (noise_mode 'const').
- `g_d_train_img_s`: one training-style step: `D(G(z, c))` in train mode with random noise, softplus
  loss, backward to the parameters of both networks.

`--official PATH` imports the official StyleGAN2-ADA networks from a checkout (for comparison only; its
code is never copied into gancli) and times them the same way, on float32 with its reference ops.
Each figure is the median over timed iterations after warm-up; `best` is the fastest iteration. With
`--official`, the two implementations are timed in alternating rounds so that load from other processes
hits both alike; `speedup` is gancli / official.
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

CONFIGS = {
    # 32 px, small: 4 synthesis blocks, 256 channels max.
    "A": dict(res=32, channel_base=4096, channel_max=256, z_dim=128, w_dim=128, map_layers=2, batch=32),
    # 64 px, paper-like widths: 512 channels, 8 mapping layers.
    "B": dict(res=64, channel_base=16384, channel_max=512, z_dim=512, w_dim=512, map_layers=8, batch=8),
}


def build_kwargs(cfg: dict) -> tuple[dict, dict]:
    g_kwargs = dict(
        z_dim=cfg["z_dim"],
        c_dim=0,
        w_dim=cfg["w_dim"],
        img_resolution=cfg["res"],
        img_channels=3,
        mapping_kwargs=dict(num_layers=cfg["map_layers"]),
        synthesis_kwargs=dict(
            channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], num_fp16_res=0, conv_clamp=None
        ),
    )
    d_kwargs = dict(
        c_dim=0,
        img_resolution=cfg["res"],
        img_channels=3,
        channel_base=cfg["channel_base"],
        channel_max=cfg["channel_max"],
        num_fp16_res=0,
        conv_clamp=None,
    )
    return g_kwargs, d_kwargs


def load_networks(impl: str, official: Path | None):
    if impl == "official":
        sys.path.insert(0, str(official))
        # dnnlib imports `requests` for downloads the networks never do; stand in for it if missing.
        import types  # noqa: PLC0415

        sys.modules.setdefault("requests", types.ModuleType("requests"))
        from training import networks  # type: ignore  # noqa: PLC0415

        return networks.Generator, networks.Discriminator
    from gancli.families.stylegan2.nets import Discriminator, Generator  # noqa: PLC0415

    return Generator, Discriminator


def make_runs(name: str, impl: str, official: Path | None, device: torch.device) -> dict:
    """The two timed closures for one config and implementation."""
    cfg = CONFIGS[name]
    Generator, Discriminator = load_networks(impl, official)
    g_kwargs, d_kwargs = build_kwargs(cfg)
    torch.manual_seed(0)
    G = Generator(**g_kwargs).to(device)
    D = Discriminator(**d_kwargs).to(device)
    batch = cfg["batch"]
    z = torch.randn(batch, cfg["z_dim"], device=device)
    c = torch.zeros(batch, 0, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def g_forward():
        G.eval()
        with torch.no_grad():
            G(z, c, noise_mode="const")
        sync()

    def g_d_train():
        G.train()
        D.train()
        img = G(z, c, noise_mode="random")
        loss = torch.nn.functional.softplus(-D(img, c)).sum()
        loss.backward()
        sync()

    return dict(g_forward=g_forward, g_d_train=g_d_train)


def bench_config(
    name: str, impls: list[str], official: Path | None, seconds: float, device: torch.device
) -> dict:
    """Time every implementation in alternating rounds, so that load from other processes on a shared
    machine hits them alike. Reports img/s from the median and from the best iteration."""
    batch = CONFIGS[name]["batch"]
    runs = {impl: make_runs(name, impl, official, device) for impl in impls}
    times: dict = {(impl, kind): [] for impl in impls for kind in ("g_forward", "g_d_train")}
    for impl in impls:  # warm-up
        for fn in runs[impl].values():
            fn()
            fn()
    start = time.perf_counter()
    rounds = 0
    while rounds < 3 or time.perf_counter() - start < seconds * len(impls):
        for impl in impls:
            for kind, fn in runs[impl].items():
                t0 = time.perf_counter()
                fn()
                times[(impl, kind)].append(time.perf_counter() - t0)
        rounds += 1
    out: dict = {}
    for impl in impls:
        res = dict(config=dict(CONFIGS[name]), iterations=rounds)
        for kind in ("g_forward", "g_d_train"):
            ts = times[(impl, kind)]
            res[f"{kind}_img_s"] = round(batch / statistics.median(ts), 2)
            res[f"{kind}_img_s_best"] = round(batch / min(ts), 2)
        out[impl] = res
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="A,B", help="comma-separated config names (A, B)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum timed seconds per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--official", type=Path, default=None, help="also time the official networks from this checkout"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    impls = ["gancli"] + (["official"] if args.official else [])
    result: dict = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=str(device),
        machine=platform.processor() or platform.machine(),
        results={},
    )
    for name in args.configs.split(","):
        per_impl = bench_config(name, impls, args.official, args.seconds, device)
        for impl, res in per_impl.items():
            result["results"][f"{name}/{impl}"] = res
        if args.official:
            ours, theirs = per_impl["gancli"], per_impl["official"]
            result["results"][f"{name}/speedup"] = {
                f"{key}{tail}": round(ours[f"{key}_img_s{tail}"] / theirs[f"{key}_img_s{tail}"], 2)
                for key in ("g_forward", "g_d_train")
                for tail in ("", "_best")
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
