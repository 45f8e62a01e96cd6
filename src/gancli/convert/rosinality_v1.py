"""Import rosinality/style-based-gan-pytorch (StyleGAN v1) checkpoints, safely: `g_running` of its `.model` files.

His train.py saves `torch.save({'generator', 'discriminator', 'g_optimizer', 'd_optimizer', 'g_running'})`
(older files in torch's legacy format, newer ones as zip); `g_running` is the EMA generator, the one his
generate.py samples. The file is read weights-only (`gancli.convert.rosinality.load_rosinality_file`):
nothing in it runs, and any global other than plain data is refused in one line.

His StyledGenerator is StyleGAN v1 with other names and conventions; the mapping onto gancli's
`stylegan` generator (families/stylegan/nets.py), all checked against his own Generator in
tests/test_rosinality_v1.py:

    style.{2i+1}.linear.weight_orig / bias   -> mapping.fc{i}: his equalized lr has gain sqrt(2) and
                                                no lr multiplier; ours stores weight and bias divided
                                                by the multiplier (0.01)
    progression.0.conv1.input                -> synthesis.const
    progression.k.conv{1,2} (k = log2(res)-2) -> synthesis.b{res}.conv0 / conv1 (k = 0: l4.conv1);
        EqualConv2d weight_orig              -> the same weight (gain sqrt(2) / sqrt(fan_in) in both)
        FusedUpsample weight [in, out, 3, 3] -> flip(weight)^T / 4: his fused op is the transposed
                                                convolution with the kernel's four shifted copies
                                                averaged, i.e. nearest upsampling and a convolution
                                                with the flipped kernel, divided by 4
        conv bias                            -> the layer's bias (noise and bias commute; in the first
                                                layer of a block his bias comes before the blur:
                                                model.bias_before_blur)
    noise{1,2}.weight_orig [1, C, 1, 1]      -> epi{0,1}.noise.weight * sqrt(2 / C) (his equalized lr)
    adain{1,2}.style.linear                  -> epi{0,1}.adain.affine: weight * sqrt(2) (his gain),
                                                bias - 1 on the scale half (he stores gamma, gancli
                                                1 + y_s); his InstanceNorm2d has eps 1e-5 (model.adain_eps)
    to_rgb.k.conv                            -> synthesis.torgb{res}: weight * sqrt(2), bias

His checkpoints hold all nine blocks up to 1024 px whatever resolution they were trained to; the
blocks above it keep their initial noise weights of exactly 0. The resolution is the highest block
with a non-zero noise weight (or `resolution` when given), and the blocks above it are left out.
His noise is one map per block shared by both layers: the constant noise here is drawn likewise (one
map per block from a fixed seed). `w_avg` is the mean of the mapping over numpy RandomState(0).randn(10240,
z_dim), his generate.py's mean_style over 10 x 1024 random z, made deterministic; his generate.py
truncates with 0.7 on every layer, which becomes the recipe's sampling default.
Only `g_running` is converted (the discriminator and optimizers are not): sampling and the latent
commands work, `gancli train --resume` does not.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from gancli.errors import UserError
from gancli.recipe import Recipe

SOURCE_FORMAT = "rosinality-style-based-gan"
W_AVG_SAMPLES = 10240
NOISE_SEED = 0
LR_MULTIPLIER = 0.01
NOT_CONVERTED = ("generator", "discriminator", "g_optimizer", "d_optimizer")

__all__ = ["is_rosinality_v1", "open_rosinality_v1"]


def is_rosinality_v1(obj: Any) -> bool:
    """Whether a loaded torch.save object is a rosinality/style-based-gan-pytorch checkpoint (g_running)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("g_running"), dict):
        return False
    g = obj["g_running"]
    return "generator.progression.0.conv1.input" in g and "style.1.linear.weight_orig" in g


def _blocks(sd: dict[str, Any]) -> int:
    n = 0
    while f"generator.progression.{n}.noise1.weight_orig" in sd:
        n += 1
    return n


def infer_config(sd: dict[str, Any], where: str, resolution: int | None = None) -> dict[str, Any]:
    """z_dim, n_mlp, channels {res: ch}, channel_base, channel_max, the trained resolution, fused blocks."""
    import torch

    try:
        mlp = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.linear\.weight_orig", k)))
        if mlp != list(range(1, 2 * len(mlp), 2)):
            raise KeyError("style.1.linear.weight_orig")
        z_dim = int(sd["style.1.linear.weight_orig"].shape[1])
        n = _blocks(sd)
        channels = {4 * 2**k: int(sd[f"generator.progression.{k}.noise1.weight_orig"].shape[1]) for k in range(n)}
        fused = {4 * 2**k: f"generator.progression.{k}.conv1.0.weight" in sd for k in range(1, n)}
        trained = [4 * 2**k for k in range(n)
                   if any(bool(torch.count_nonzero(sd[f"generator.progression.{k}.noise{j}.weight_orig"]))
                          for j in (1, 2))]
    except (KeyError, AttributeError, IndexError, TypeError) as e:
        raise UserError(f"{where}: g_running is not a rosinality StyleGAN (v1) generator (no {e} weight)") from None
    if resolution is None:
        resolution = max(trained) if trained else 4
    if resolution not in channels:
        raise UserError(f"{where}: resolution {resolution} is not one of the file's blocks ({', '.join(map(str, channels))} px)")
    channels = {r: c for r, c in channels.items() if r <= resolution}
    channel_max = max(channels.values())
    candidates = [ch * r for r, ch in channels.items() if ch < channel_max] or [channel_max * resolution]
    channel_base = candidates[0]
    if any(min(channel_base // r, channel_max) != ch for r, ch in channels.items()):
        raise UserError(f"{where}: channel counts per resolution {channels} do not follow min(channel_base // res, "
                        "channel_max); cannot convert")
    return dict(z_dim=z_dim, n_mlp=len(mlp), channels=channels, channel_base=channel_base, channel_max=channel_max,
                resolution=resolution, fused=fused, trained=trained)


def map_state_dict(sd: dict[str, Any], cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """rosinality g_running state dict -> gancli stylegan generator state dict (without buffers)."""
    import torch

    out: dict[str, Any] = {}
    s2 = math.sqrt(2)
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        t = sd.get(name)
        if not isinstance(t, torch.Tensor):
            raise UserError(f"{where}: g_running has no tensor {name}; not a rosinality StyleGAN (v1) generator")
        used.add(name)
        return t.detach().to(torch.float32).clone()

    for i in range(cfg["n_mlp"]):
        out[f"mapping.fc{i}.weight"] = take(f"style.{2 * i + 1}.linear.weight_orig") / LR_MULTIPLIER
        out[f"mapping.fc{i}.bias"] = take(f"style.{2 * i + 1}.linear.bias") / LR_MULTIPLIER
    out["synthesis.const"] = take("generator.progression.0.conv1.input")

    def epilogue(src: str, dst: str, bias: torch.Tensor) -> None:
        noise = take(f"{src}.weight_orig")
        c = noise.numel()
        out[f"{dst}.noise.weight"] = noise.reshape(-1) * math.sqrt(2 / c)
        style = src.replace("noise", "adain")
        out[f"{dst}.adain.affine.weight"] = take(f"{style}.style.linear.weight_orig") * s2
        b = take(f"{style}.style.linear.bias")
        b[:c] -= 1
        out[f"{dst}.adain.affine.bias"] = b
        out[f"{dst}.bias"] = bias

    for k, res in enumerate(sorted(cfg["channels"])):
        p = f"generator.progression.{k}"
        if k == 0:
            dst0, dst1, conv1 = "synthesis.l4.epi0", "synthesis.l4.epi1", "synthesis.l4.conv1"
            epilogue(f"{p}.noise1", dst0, torch.zeros(cfg["channels"][4]))
        else:
            b = f"synthesis.b{res}"
            dst0, dst1, conv1 = f"{b}.epi0", f"{b}.epi1", f"{b}.conv1"
            if cfg["fused"][res]:
                w = take(f"{p}.conv1.0.weight")  # [in, out, 3, 3] of a transposed convolution
                out[f"{b}.conv0.weight"] = w.flip([2, 3]).transpose(0, 1).contiguous() / 4
                bias = take(f"{p}.conv1.0.bias")
            else:
                out[f"{b}.conv0.weight"] = take(f"{p}.conv1.1.conv.weight_orig")
                bias = take(f"{p}.conv1.1.conv.bias")
            epilogue(f"{p}.noise1", dst0, bias)
        out[f"{conv1}.weight"] = take(f"{p}.conv2.conv.weight_orig")
        epilogue(f"{p}.noise2", dst1, take(f"{p}.conv2.conv.bias"))
        out[f"synthesis.torgb{res}.weight"] = take(f"generator.to_rgb.{k}.conv.weight_orig") * s2
        out[f"synthesis.torgb{res}.bias"] = take(f"generator.to_rgb.{k}.conv.bias")
    blur = torch.tensor([1.0, 2.0, 1.0])
    blur = (blur[:, None] * blur[None, :]) / 16
    n_in = len(cfg["channels"])
    for name in sorted(set(sd) - used):
        m = re.match(r"generator\.(?:progression|to_rgb)\.(\d+)\.", name)
        if m and int(m.group(1)) >= n_in:
            continue  # a block above the converted resolution
        if re.fullmatch(r"generator\.progression\.\d+\.conv1\.[12]\.weight(_flip)?", name):
            kernel = sd[name]
            if not isinstance(kernel, torch.Tensor) or kernel.ndim != 4 or tuple(kernel.shape[1:]) != (1, 3, 3) \
                    or not torch.allclose(kernel.float(), blur.expand_as(kernel)):
                raise UserError(f"{where}: {name} is not the [1, 2, 1] blur; cannot convert")
            continue
        raise UserError(f"{where}: g_running has weights gancli does not know where to put ({name}); cannot convert")
    return out


def load_torch_file(path: Path) -> Any:
    from gancli.convert.rosinality import load_rosinality_file

    return load_rosinality_file(path)


def open_rosinality_v1(path: str | os.PathLike[str], obj: Any = None,
                       resolution: int | None = None) -> tuple[dict[str, dict[str, Any]], Recipe, dict[str, Any]]:
    """(modules {'G_ema': state_dict}, recipe, meta) for a rosinality/style-based-gan-pytorch checkpoint."""
    import numpy as np
    import torch

    from gancli.families.stylegan.steps import build_networks

    path = Path(path)
    where = str(path)
    if obj is None:
        obj = load_torch_file(path)
    if not is_rosinality_v1(obj):
        raise UserError(f"{path}: is not a rosinality/style-based-gan-pytorch checkpoint (no g_running generator)")
    sd = obj["g_running"]
    cfg = infer_config(sd, where, resolution)
    state = map_state_dict(sd, cfg, where)
    res = cfg["resolution"]
    recipe = Recipe.from_dict({
        "name": path.stem,
        "description": f"converted from a rosinality/style-based-gan-pytorch checkpoint ({path.name})",
        "source": "rosinality/style-based-gan-pytorch .model checkpoint (g_running)",
        "data": {"resolution": res},
        "model": dict(kind="stylegan", z_dim=cfg["z_dim"], w_dim=cfg["z_dim"], mapping_layers=cfg["n_mlp"],
                      mapping_lr_multiplier=LR_MULTIPLIER, channel_base=cfg["channel_base"],
                      channel_max=cfg["channel_max"], adain_eps=1e-5, bias_before_blur=True, sample_trunc=0.7),
        "train": {"start_res": min(8, res)},
    }, origin=where)
    G, _ = build_networks(recipe, c_dim=0, img_channels=3)
    mine = G.state_dict()
    gen = torch.Generator().manual_seed(NOISE_SEED)
    for r in sorted(cfg["channels"]):  # constant noise: one map per block, shared by its two layers (as his)
        noise = torch.randn([r, r], generator=gen)
        for layer in (("l4.epi0", "l4.epi1") if r == 4 else (f"b{r}.epi0", f"b{r}.epi1")):
            state[f"synthesis.{layer}.noise.noise_const"] = noise.clone()
    for name, t in mine.items():  # the other buffers: blur kernel, growth state (final resolution, alpha 1)
        if name not in state and ("kernel" in name or "growth" in name):
            state[name] = t.clone()
    state["mapping.w_avg"] = torch.zeros_like(mine["mapping.w_avg"])
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or unexpected:
        raise UserError(f"{path}: g_running does not map onto a StyleGAN generator (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    for name, t in state.items():
        if tuple(mine[name].shape) != tuple(t.shape):
            raise UserError(f"{path}: g_running weight for {name} has shape {list(t.shape)}, expected {list(mine[name].shape)}")
    G.load_state_dict(state, strict=True)
    z = torch.from_numpy(np.random.RandomState(0).randn(W_AVG_SAMPLES, cfg["z_dim"]).astype(np.float32))
    with torch.no_grad():
        state["mapping.w_avg"] = G.mapping(z, None)[:, 0].mean(0)
    meta = {
        "c_dim": 0, "img_channels": 3, "resolution": res, "converted_from": path.name, "source_format": SOURCE_FORMAT,
        "source_kwargs": {"G_ema": {"code_dim": cfg["z_dim"], "n_mlp": cfg["n_mlp"],
                                    "channels": {str(r): c for r, c in cfg["channels"].items()},
                                    "fused": [r for r, f in cfg["fused"].items() if f and r <= res],
                                    "trained_resolutions": cfg["trained"]}},
        "w_avg_from": f"mean of the mapping over numpy RandomState(0).randn({W_AVG_SAMPLES}, z_dim)",
        "not_converted": [k for k in NOT_CONVERTED if k in obj],
        "buffers": {"G_ema": sorted(n for n, _ in G.named_buffers())},
        "num_ws": G.num_ws,
    }
    return {"G_ema": state}, recipe, meta
