"""The StyleGAN2 family (Karras et al. 2020) and StyleGAN2-ADA (Karras et al. 2020b): model.kind stylegan2.

Networks in `nets.py`, the training step (lazy regularization phases, ADA) in `steps.py`, the recipe
sections in `config.py`.
"""

from __future__ import annotations

from typing import Any

from gancli.errors import UserError
from gancli.families.base import Family
from gancli.families.stylegan2.config import StyleGAN2Loss, StyleGAN2Model, StyleGAN2Train


class StyleGAN2Family(Family):
    name = "stylegan2"
    title = "StyleGAN2"
    kinds = ("stylegan2",)
    model_config = StyleGAN2Model
    loss_config = StyleGAN2Loss
    train_config = StyleGAN2Train
    capabilities = frozenset({"seeds", "w", "noise", "class", "trunc_psi", "project", "ppl"})
    supports_augment = True

    # ----------------------------------------------------------------------------------------------
    # Recipes

    def auto_settings(self, resolution: int, gpus: int) -> dict[str, Any]:
        """The official StyleGAN2-ADA `auto` configuration for a resolution and GPU count.

        batch = max(min(gpus * min(4096 // res, 32), 64), gpus); minibatch-std group min(batch // gpus, 4);
        feature maps x1 from 512 px (else x0.5); lr 0.002 at 1024 px (else 0.0025);
        R1 gamma = 0.0002 * res^2 / batch; EMA half-life batch * 10 / 32 kimg with ramp-up 0.05; 2 mapping layers.
        """
        batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        lr = 0.002 if resolution >= 1024 else 0.0025
        return {
            "model": {"mapping_layers": 2, "channel_base": int((1 if resolution >= 512 else 0.5) * 32768),
                      "channel_max": 512, "mbstd_group_size": min(batch // gpus, 4)},
            "loss": {"r1_gamma": 0.0002 * resolution**2 / batch},
            "train": {"batch": batch, "g_lr": lr, "d_lr": lr, "ema_kimg": batch * 10 / 32, "ema_rampup": 0.05},
        }

    def plan(self, recipe) -> dict[str, str]:
        m, loss, t = recipe.model, recipe.loss, recipe.train
        return {
            "model": f"{m.kind}: G {m.g_architecture}, D {m.d_architecture}, z {m.z_dim}, w {m.w_dim}, "
                     f"{m.mapping_layers} mapping layers",
            "optimizer": f"Adam lr G {t.g_lr:g} / D {t.d_lr:g}, betas {t.betas}, EMA half-life {t.ema_kimg:g} kimg",
            "loss": f"{loss.kind}: R1 gamma {loss.r1_gamma:g} every {loss.r1_interval}, path length "
                    f"{loss.pl_weight:g} every {loss.pl_interval}, mixing {loss.style_mixing_prob:g}",
            "augment_note": f"; FreezeD {t.freeze_d} D layers" if t.freeze_d else "",
        }

    # ----------------------------------------------------------------------------------------------
    # Networks

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.stylegan2.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.stylegan2.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)[0]

    def training(self, trainer):
        from gancli.families.stylegan2.steps import StyleGAN2Training

        return StyleGAN2Training(trainer)

    # ----------------------------------------------------------------------------------------------
    # Seeds -> images: mapping (truncation in W toward w_avg, on the first `cutoff` layers), then synthesis.

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        if cutoff is not None and not 0 < cutoff <= G.num_ws:
            raise UserError(f"--trunc-cutoff {cutoff}: must be in 1..{G.num_ws} (the generator has {G.num_ws} layers of W)")

    def default_truncations(self) -> list[float]:
        return [-1.0 + 0.25 * i for i in range(9)]  # psi -1..1 in W

    def from_z(self, G, z, c, *, trunc=None, cutoff=None, noise_mode="const", noise_seeds=None):
        import torch

        ws = G.mapping(z, c, truncation_psi=1.0 if trunc is None else trunc, truncation_cutoff=cutoff)
        if noise_mode == "random":  # noise seeded by the (first) seed, so an image never depends on the others
            torch.manual_seed(noise_seeds[0] if noise_seeds else 0)
        return G.synthesis(ws, noise_mode=noise_mode)


FAMILY = StyleGAN2Family()
