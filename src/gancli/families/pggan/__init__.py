"""The PGGAN family (Karras et al. 2018, Progressive Growing of GANs): model.kind pggan (docs/pggan.md).

Networks in `nets.py`, the WGAN-GP step in `steps.py`, the recipe sections in `config.py`; the growth
schedule, the faded reals and the shared training object in `gancli.train.growing`.
"""

from __future__ import annotations

from gancli.families.base import Family
from gancli.families.pggan.config import PGGANLoss, PGGANModel, PGGANTrain


class PGGANFamily(Family):
    name = "pggan"
    title = "PGGAN"
    kinds = ("pggan",)
    model_config = PGGANModel
    loss_config = PGGANLoss
    train_config = PGGANTrain
    capabilities = frozenset({"seeds"})

    def validate(self, recipe, where: str) -> None:
        from gancli.train.growing import validate_growth

        super().validate(recipe, where)
        validate_growth(recipe, where)

    def plan(self, recipe) -> dict[str, str]:
        from gancli.train.growing import plan_growth

        m, loss, t = recipe.model, recipe.loss, recipe.train
        ema = f"EMA decay {t.ema_decay:g} per step" if t.ema_decay is not None else f"EMA half-life {t.ema_kimg:g} kimg"
        return {
            "model": f"pggan: grown {t.start_res}->{recipe.data.resolution} px, z {m.z_dim}, channels "
                     f"min({m.channel_base}/res, {m.channel_max}), pixel norm {'on' if m.pixel_norm else 'off'}, "
                     f"minibatch std group {m.mbstd_group_size}",
            "optimizer": f"Adam betas {t.betas}, eps {t.eps:g}, lr by resolution (below), {ema}",
            "loss": f"wgan-gp: lambda {loss.gp_lambda:g}, target {loss.gp_target:g}, drift {loss.drift:g}",
            **plan_growth(recipe),
        }

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.pggan.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        return self.build_networks(recipe, c_dim, img_channels)[0]

    def training(self, trainer):
        from gancli.families.pggan.steps import PGGANTraining

        return PGGANTraining(trainer)

    def check_trunc(self, G, trunc, cutoff) -> None:
        from gancli.errors import UserError

        if trunc is not None or cutoff is not None:
            raise UserError("--trunc: a pggan generator has no truncation (no mapping network, no W)")

    def from_z(self, G, z, c, *, trunc=None, cutoff=None, noise_mode="const", noise_seeds=None):
        return G(z, c)


FAMILY = PGGANFamily()
