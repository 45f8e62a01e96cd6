"""Import rosinality/stylegan2-pytorch checkpoints (torch.save zip files), safely.

A rosinality checkpoint is a `torch.save` dict holding `g_ema` (the generator's state dict) and,
depending on who wrote it, `latent_avg` (the mean w; written by its `convert_weight.py`), `g`, `d`,
`g_optim`, `d_optim`, `ada_aug_p` and `args` (an `argparse.Namespace`; written by its `train.py`).

The file is read with `torch.load(weights_only=True)`, torch's restricted unpickler, with exactly one
extra allowed global, `argparse.Namespace`, which only ever becomes a plain attribute record. Any
other global in the file is refused with a one-line `UserError` naming it, before anything runs.

rosinality's Generator is the StyleGAN2 config-f generator with other parameter names; the mapping
below turns its `g_ema` into the official NVlabs names and layouts that gancli's Generator uses:

    style.{i}.weight/bias (i = 1..n_mlp)    -> mapping.fc{i-1}.weight/bias   (same lr_mul convention)
    latent_avg                              -> mapping.w_avg
    input.input [1, C, 4, 4]                -> synthesis.b4.const [C, 4, 4]
    conv1, to_rgb1                          -> synthesis.b4.conv1, synthesis.b4.torgb
    convs.{2k}, convs.{2k+1}, to_rgbs.{k}   -> synthesis.b{2^(k+3)}.conv0, .conv1, .torgb
    noises.noise_{j} [1, 1, H, W]           -> the j-th conv layer's noise_const [H, W]
    *.conv.weight [1, O, I, k, k]           -> *.weight [O, I, k, k], not flipped: both run the
                                               upsampling conv as conv_transpose2d with the kernel
                                               as stored (NVlabs passes flip_weight=False for
                                               up=2), so no flip is needed (checked against
                                               rosinality's own Generator in tests/test_rosinality.py;
                                               the flip in rosinality's convert_weight.py is for
                                               TensorFlow's layout)
    *.conv.modulation.weight/bias           -> *.affine.weight/bias
    *.noise.weight [1]                      -> *.noise_strength []
    *.activate.bias, to_rgb*.bias [1,3,1,1] -> *.bias [O]

Equalized-lr scales agree (rosinality multiplies the conv weight by 1/sqrt(fan_in) before the
modulation; NVlabs leaves it out of demodulated convs, where it cancels, and puts it on the toRGB
styles), and so do the blur / upsampling filters ([1, 3, 3, 1]; any other kernel is refused).

Not converted: the discriminator `d`, the non-EMA generator `g` and the optimizer states. Only
`G_ema` is produced, which is all sampling needs; such a file cannot seed `gancli train --resume`.
When the file has no `latent_avg`, `w_avg` is the mean of the mapping network's output over 4096
z drawn from a fixed seed (what rosinality's generate.py computes for truncation).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gancli.errors import UserError
from gancli.recipe import Recipe

SOURCE_FORMAT = "rosinality-stylegan2"
NOT_CONVERTED = ("g", "d", "g_optim", "d_optim")
LATENT_AVG_SAMPLES = 4096
LATENT_AVG_SEED = 0

__all__ = ["load_rosinality_file", "is_rosinality", "open_rosinality"]


# ---------------------------------------------------------------------------------------------------
# Reading the file


def load_rosinality_file(path: str | os.PathLike[str]) -> Any:
    """The object in a torch.save zip, read weights-only (plus argparse.Namespace as a plain record)."""
    import argparse
    import pickle

    import torch

    path = Path(path)
    try:
        # A file object, not a name: torch.load picks a safetensors reader for *.safetensors names.
        with open(path, "rb") as f, torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        m = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*)", text)
        what = f"the global {m.group(1)}" if m else "an object torch's weights-only loader does not allow"
        raise UserError(
            f"{path}: refusing to load this torch.save file: it asks for {what}, which a checkpoint of "
            "weights does not need (only tensors, plain data and argparse.Namespace are read; nothing in "
            "the file is run)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read this torch.save zip file ({' '.join(str(e).split())[:200]})") from None


def is_rosinality(obj: Any) -> bool:
    """Whether a loaded torch.save object looks like a rosinality/stylegan2-pytorch checkpoint."""
    if not isinstance(obj, dict):
        return False
    g = obj.get("g_ema")
    return isinstance(g, dict) and "input.input" in g and "conv1.conv.weight" in g


# ---------------------------------------------------------------------------------------------------
# Architecture from the weights


def _args_dict(args: Any) -> dict[str, Any]:
    """argparse.Namespace (or dict) -> {name: plain value} (other values are left out)."""
    items = vars(args) if hasattr(args, "__dict__") else (args if isinstance(args, dict) else {})
    return {str(k): v for k, v in items.items() if isinstance(v, (bool, int, float, str, type(None)))}


def infer_config(sd: dict[str, Any], args: dict[str, Any], where: str) -> dict[str, Any]:
    """size, style_dim, n_mlp, channels {res: ch}, channel_base, channel_max from a g_ema state dict."""
    try:
        n_mlp = 0
        while f"style.{n_mlp + 1}.weight" in sd:
            n_mlp += 1
        if n_mlp == 0:
            raise KeyError("style.1.weight")
        style_dim = int(sd["style.1.weight"].shape[1])
        n_blocks = 0
        while f"to_rgbs.{n_blocks}.conv.weight" in sd:
            n_blocks += 1
        size = 4 * 2**n_blocks
        channels = {4: int(sd["input.input"].shape[1])}
        for k in range(n_blocks):
            channels[2 ** (k + 3)] = int(sd[f"convs.{2 * k}.conv.weight"].shape[1])
    except (KeyError, AttributeError, IndexError) as e:
        raise UserError(f"{where}: g_ema is not a rosinality StyleGAN2 generator (no {e} weight)") from None
    for key, value in (("size", size), ("latent", style_dim), ("n_mlp", n_mlp)):
        if key in args and args[key] != value:
            raise UserError(f"{where}: args.{key}={args[key]!r} disagrees with the weights ({value}); cannot convert")
    channel_max = max(channels.values())
    candidates = [ch * res for res, ch in channels.items() if ch < channel_max] or [channel_max * size]
    channel_base = candidates[0]
    if any(min(channel_base // res, channel_max) != ch for res, ch in channels.items()):
        raise UserError(
            f"{where}: channel counts per resolution {channels} do not follow min(channel_base // res, "
            "channel_max) (rosinality's layout with a channel_multiplier does); cannot convert"
        )
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels,
                channel_base=channel_base, channel_max=channel_max)


# ---------------------------------------------------------------------------------------------------
# Parameter mapping


def _expected_kernel(factor: int):
    import torch

    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum() * factor**2


def map_state_dict(sd: dict[str, Any], cfg: dict[str, Any], latent_avg: Any, where: str) -> dict[str, Any]:
    """rosinality g_ema state dict -> gancli/NVlabs Generator state dict (without resample_filter buffers)."""
    import torch

    out: dict[str, Any] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in sd:
            raise UserError(f"{where}: g_ema has no weight {name}; not a rosinality StyleGAN2 generator")
        t = sd[name]
        if not isinstance(t, torch.Tensor):
            raise UserError(f"{where}: g_ema.{name} is not a tensor")
        used.add(name)
        return t.detach().to(torch.float32)

    for i in range(1, cfg["n_mlp"] + 1):
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight").clone()
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias").clone()
    out["mapping.w_avg"] = latent_avg.detach().to(torch.float32).reshape(-1).clone()
    out["synthesis.b4.const"] = take("input.input")[0].clone()

    def styled(src: str, dst: str, noise: str, up: bool) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0].clone()
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight").clone()
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias").clone()
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([]).clone()
        out[f"{dst}.bias"] = take(f"{src}.activate.bias").clone()
        out[f"{dst}.noise_const"] = take(noise)[0, 0].clone()
        if up:
            kernel = take(f"{src}.conv.blur.kernel")
            if tuple(kernel.shape) != (4, 4) or not torch.allclose(kernel, _expected_kernel(2)):
                raise UserError(f"{where}: {src} uses a blur kernel other than [1, 3, 3, 1]; cannot convert")

    def torgb(src: str, dst: str, upsample: bool) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0].clone()
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight").clone()
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias").clone()
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1).clone()
        if upsample:
            kernel = take(f"{src}.upsample.kernel")
            if tuple(kernel.shape) != (4, 4) or not torch.allclose(kernel, _expected_kernel(2)):
                raise UserError(f"{where}: {src} uses an upsampling kernel other than [1, 3, 3, 1]; cannot convert")

    styled("conv1", "synthesis.b4.conv1", "noises.noise_0", up=False)
    torgb("to_rgb1", "synthesis.b4.torgb", upsample=False)
    for k in range(cfg["size"].bit_length() - 3):
        res = 2 ** (k + 3)
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noises.noise_{2 * k + 1}", up=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noises.noise_{2 * k + 2}", up=False)
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", upsample=True)
    left = sorted(set(sd) - used)
    if left:
        raise UserError(f"{where}: g_ema has weights gancli does not know where to put ({left[:3]}); cannot convert")
    return out


def _mean_latent(mapping_sd: dict[str, Any], cfg: dict[str, Any]) -> Any:
    """rosinality's mean_latent: the average mapping output over fixed-seed z (for files without latent_avg)."""
    import torch

    from gancli.families.stylegan2.nets import MappingNetwork

    m = MappingNetwork(z_dim=cfg["style_dim"], c_dim=0, w_dim=cfg["style_dim"], num_ws=None,
                       num_layers=cfg["n_mlp"], lr_multiplier=0.01, w_avg_beta=None)
    m.load_state_dict({k[len("mapping."):]: v for k, v in mapping_sd.items() if k.startswith("mapping.fc")})
    gen = torch.Generator().manual_seed(LATENT_AVG_SEED)
    with torch.no_grad():
        return m(torch.randn([LATENT_AVG_SAMPLES, cfg["style_dim"]], generator=gen), None).mean(0)


# ---------------------------------------------------------------------------------------------------
# Whole-file entry points


def open_rosinality(
    path: str | os.PathLike[str], obj: Any = None
) -> tuple[dict[str, dict[str, Any]], Recipe, dict[str, Any]]:
    """(modules {'G_ema': state_dict}, recipe, meta) for a rosinality/stylegan2-pytorch checkpoint."""
    import torch

    from gancli.models import build_networks  # the recipe is model.kind stylegan2: its family builds them

    path = Path(path)
    where = str(path)
    if obj is None:
        obj = load_rosinality_file(path)
    if not is_rosinality(obj):
        raise UserError(f"{path}: is a torch.save zip checkpoint but not a rosinality/stylegan2-pytorch one (no g_ema generator)")
    sd = obj["g_ema"]
    args = _args_dict(obj.get("args"))
    cfg = infer_config(sd, args, where)
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != cfg["style_dim"]:
            raise UserError(f"{path}: latent_avg is not a tensor of {cfg['style_dim']} values")
        w_avg_source = "latent_avg"
    else:
        latent_avg = torch.zeros([cfg["style_dim"]])
        w_avg_source = f"mean of the mapping output over {LATENT_AVG_SAMPLES} z (seed {LATENT_AVG_SEED})"
    state = map_state_dict(sd, cfg, latent_avg, where)
    if obj.get("latent_avg") is None:
        state["mapping.w_avg"] = _mean_latent(state, cfg)

    recipe = Recipe.from_dict({
        "name": path.stem,
        "description": f"converted from a rosinality/stylegan2-pytorch checkpoint ({path.name})",
        "source": "rosinality/stylegan2-pytorch torch.save checkpoint",
        "data": {"resolution": cfg["size"]},
        "model": dict(
            kind="stylegan2", z_dim=cfg["style_dim"], w_dim=cfg["style_dim"], mapping_layers=cfg["n_mlp"],
            mapping_lr_multiplier=0.01, channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
            num_fp16_res=0, conv_clamp=None, g_architecture="skip",
        ),
    }, origin=where)
    G, _ = build_networks(recipe, c_dim=0, img_channels=3)
    mine = G.state_dict()
    for name, t in mine.items():  # constant buffers (resample filters) the file does not hold
        if name not in state and name.endswith("resample_filter"):
            state[name] = t.clone()
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or unexpected:
        raise UserError(f"{path}: g_ema does not map onto a StyleGAN2 generator (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, t in state.items():
        if tuple(mine[name].shape) != tuple(t.shape):
            raise UserError(f"{path}: g_ema weight for {name} has shape {list(t.shape)}, expected {list(mine[name].shape)}")
    G.load_state_dict(state, strict=True)
    meta = {
        "c_dim": 0,
        "img_channels": 3,
        "resolution": cfg["size"],
        "converted_from": path.name,
        "source_format": SOURCE_FORMAT,
        "source_kwargs": {"G_ema": {"size": cfg["size"], "style_dim": cfg["style_dim"], "n_mlp": cfg["n_mlp"],
                                    "lr_mlp": 0.01, "channels": {str(r): c for r, c in cfg["channels"].items()}},
                          "args": args},
        "w_avg_from": w_avg_source,
        "not_converted": [k for k in NOT_CONVERTED if k in obj],
        "buffers": {"G_ema": sorted(n for n, _ in G.named_buffers())},
    }
    return {"G_ema": state}, recipe, meta
