"""From recipe to networks, and from checkpoint to a ready generator.

Commands never reach into a paper's module: they call `load_generator` and use the generator API
(`G(z, c)`, and for style-based generators `mapping`, `synthesis`, `num_ws`, `w_avg`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gancli.errors import UserError
from gancli.recipe import Recipe


def build_networks(recipe: Recipe, c_dim: int, img_channels: int = 3):
    """(G, D) for the recipe's model kind, resolution and label count. Weights are freshly initialised."""
    m = recipe.model
    # float16 runs only on CUDA (the networks keep float32 elsewhere); 'fp32' turns it off everywhere.
    fp16_res = 0 if recipe.train.precision == "fp32" else m.num_fp16_res
    if m.kind == "stylegan2":
        from gancli.nets.stylegan2 import Discriminator, Generator

        G = Generator(
            z_dim=m.z_dim, c_dim=c_dim, w_dim=m.w_dim, img_resolution=recipe.data.resolution,
            img_channels=img_channels,
            mapping_kwargs=dict(num_layers=m.mapping_layers, lr_multiplier=m.mapping_lr_multiplier, w_avg_beta=m.w_avg_beta),
            synthesis_kwargs=dict(channel_base=m.channel_base, channel_max=m.channel_max, num_fp16_res=fp16_res,
                                  conv_clamp=m.conv_clamp, architecture=m.g_architecture),
        )
        D = Discriminator(
            c_dim=c_dim, img_resolution=recipe.data.resolution, img_channels=img_channels,
            architecture=m.d_architecture, channel_base=m.channel_base, channel_max=m.channel_max,
            num_fp16_res=fp16_res, conv_clamp=m.conv_clamp,
            block_kwargs=dict(freeze_layers=recipe.train.freeze_d),  # FreezeD: frozen layers are buffers
            epilogue_kwargs=dict(mbstd_group_size=m.mbstd_group_size, mbstd_num_channels=m.mbstd_num_channels),
        )
        return G, D
    if m.kind in ("sngan", "sagan", "biggan"):  # the class-conditional ResNet family (docs/biggan.md)
        from gancli.nets.biggan import Discriminator, Generator

        res, attn = recipe.data.resolution, tuple(m.attn_res)
        G = Generator(z_dim=m.z_dim, c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.g_ch,
                      ch_mult=m.g_ch_mult, bottom_width=m.bottom_width, attn_res=attn, shared_dim=m.shared_dim,
                      hier=m.hier, sn=m.g_sn, sn_iters=m.sn_iters, init=m.init)
        D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.d_ch, ch_mult=m.d_ch_mult,
                          bottom_width=m.bottom_width, attn_res=attn, sn_iters=m.sn_iters, init=m.init)
        return G, D
    raise UserError(f"model.kind: {m.kind!r} is not available in this gancli")


def build_generator(recipe: Recipe, c_dim: int, img_channels: int = 3):
    return build_networks(recipe, c_dim, img_channels)[0]


@dataclass
class LoadedGenerator:
    G: Any  # torch.nn.Module with the generator API, in eval mode
    recipe: Recipe
    meta: dict
    path: Path

    @property
    def is_style_based(self) -> bool:
        return hasattr(self.G, "mapping") and hasattr(self.G, "synthesis")


def load_generator(spec: str | Path, device: str = "cpu", which: str = "G_ema") -> LoadedGenerator:
    """Build the generator a network file describes and load its weights (EMA weights by default).

    `spec` is a gancli snapshot, a run directory (its newest snapshot) or an official StyleGAN2-ADA
    network pickle, read without running any code from it (`gancli.convert`).
    """
    from gancli.convert import open_network
    from gancli.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(spec).snapshot
    modules, recipe, meta = open_network(path)
    G = build_generator(recipe, c_dim=int(meta.get("c_dim", 0)), img_channels=int(meta.get("img_channels", 3)))
    state = modules.get(which)
    if state is None:
        raise UserError(f"{path}: has no {which} weights (it holds {', '.join(sorted(modules))})")
    missing, unexpected = G.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: {which} weights do not match the embedded recipe "
                        f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G=G, recipe=recipe, meta=meta, path=path)
