"""The StyleGAN (v1) family (Karras et al. 2019): model.kind stylegan (docs/stylegan.md).

The style-based generator (mapping network, AdaIN, noise inputs, constant input) and PGGAN's
discriminator with blur in `nets.py`, the logistic + R1 step with style mixing in `steps.py`, the
recipe sections in `config.py`; progressive growing comes from `gancli.train.growing`.
"""

from __future__ import annotations

from gancli.families.base import Family
from gancli.families.stylegan.config import StyleGANLoss, StyleGANModel, StyleGANTrain


class StyleGANFamily(Family):
    name = "stylegan"
    title = "StyleGAN"
    kinds = ("stylegan",)
    model_config = StyleGANModel
    loss_config = StyleGANLoss
    train_config = StyleGANTrain
    capabilities = frozenset({"seeds", "w", "noise", "trunc_psi", "project", "ppl"})

    def validate(self, recipe, where: str) -> None:
        from gancli.errors import UserError
        from gancli.train.growing import validate_growth

        super().validate(recipe, where)
        validate_growth(recipe, where)
        num_ws = 2 * (recipe.data.resolution.bit_length() - 2)
        cutoff = recipe.model.sample_trunc_cutoff
        if cutoff is not None and cutoff > num_ws:
            raise UserError(f"{where}model.sample_trunc_cutoff: {cutoff} is more than the {num_ws} layers of W at "
                            f"{recipe.data.resolution} px")

    def sampling_truncation(self, recipe):
        m = recipe.model
        return m.sample_trunc, (m.sample_trunc_cutoff if m.sample_trunc is not None else None)

    def plan(self, recipe) -> dict[str, str]:
        from gancli.train.growing import plan_growth

        m, loss, t = recipe.model, recipe.loss, recipe.train
        ema = f"EMA decay {t.ema_decay:g} per step" if t.ema_decay is not None else f"EMA half-life {t.ema_kimg:g} kimg"
        return {
            "model": f"stylegan: grown {t.start_res}->{recipe.data.resolution} px, z {m.z_dim}, w {m.w_dim}, "
                     f"{m.mapping_layers} mapping layers (lr x{m.mapping_lr_multiplier:g}), AdaIN + noise, channels "
                     f"min({m.channel_base}/res, {m.channel_max})",
            "optimizer": f"Adam betas {t.betas}, eps {t.eps:g}, lr by resolution (below), {ema}",
            "loss": f"logistic-r1: R1 gamma {loss.r1_gamma:g} every step, mixing {loss.style_mixing_prob:g}",
            **plan_growth(recipe),
        }

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.stylegan.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        return self.build_networks(recipe, c_dim, img_channels)[0]

    def training(self, trainer):
        from gancli.families.stylegan.steps import StyleGANTraining

        return StyleGANTraining(trainer)

    # Seeds -> images: mapping (truncation in W toward w_avg, on the first `cutoff` layers), then synthesis.

    def check_trunc(self, G, trunc, cutoff) -> None:
        from gancli.errors import UserError

        if cutoff is not None and not 0 < cutoff <= G.num_ws:
            raise UserError(f"--trunc-cutoff {cutoff}: must be in 1..{G.num_ws} (the generator has {G.num_ws} layers of W)")

    def default_truncations(self) -> list[float]:
        return [-1.0 + 0.25 * i for i in range(9)]  # psi -1..1 in W (StyleGAN Fig. 8 uses -1..1)

    def from_z(self, G, z, c, *, trunc=None, cutoff=None, noise_mode="const", noise_seeds=None):
        import torch

        ws = G.mapping(z, c, truncation_psi=1.0 if trunc is None else trunc, truncation_cutoff=cutoff)
        if noise_mode == "random":  # noise seeded by the (first) seed, so an image never depends on the others
            torch.manual_seed(noise_seeds[0] if noise_seeds else 0)
        return G.synthesis(ws, noise_mode=noise_mode)


FAMILY = StyleGANFamily()
