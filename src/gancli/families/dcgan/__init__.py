"""The DCGAN family (model.kind dcgan; docs/dcgan.md): DCGAN's networks trained with any loss of the
zoo (nonsat, minimax, wgan, wgan-gp, lsgan, hinge, rasgan, rals, rahinge), ACGAN's auxiliary classifier
as an option, label smoothing, instance and pixel noise, EMA, adaptive D steps and lr schedules.

Networks in `nets.py`, the training step in `steps.py`, the recipe sections in `config.py`; the loss
functions live in `gancli.losses` and the optimizer, schedule, EMA and D-steps rules in
`gancli.train.schedules`, shared with the ResNet family.
"""

from __future__ import annotations

from gancli.errors import UserError
from gancli.families.base import Family, require_doubling
from gancli.families.dcgan.config import DCGANLoss, DCGANModel, DCGANTrain


class DCGANFamily(Family):
    name = "dcgan"
    title = "DCGAN"
    kinds = ("dcgan",)
    model_config = DCGANModel
    loss_config = DCGANLoss
    train_config = DCGANTrain
    capabilities = frozenset({"seeds", "class"})

    def check_resolution(self, recipe, where: str) -> None:
        """G grows from a b x b map by doubling and D halves down to it: b * 2^k, b in 4..7, k >= 1."""
        require_doubling(recipe.data.resolution, where, "a DCGAN")

    def validate(self, recipe, where: str) -> None:
        super().validate(recipe, where)
        t, loss = recipe.train, recipe.loss
        per_process = t.batch // max(1, recipe.distributed.gpus)
        if t.batch_gpu is not None and t.batch_gpu != per_process:
            raise UserError(f"{where}train.batch_gpu: the DCGAN family takes each batch in one round (batch norm and the "
                            f"relativistic means see the whole batch); remove batch_gpu or set it to {per_process}")
        if recipe.data.use_labels and loss.acgan_weight <= 0:
            raise UserError(f"{where}data.use_labels: a class-conditional DCGAN is an ACGAN; set loss.acgan_weight > 0 "
                            "(Odena et al. 2017 use 1)")
        if loss.acgan_weight > 0 and not recipe.data.use_labels:
            raise UserError(f"{where}loss.acgan_weight: the auxiliary classifier needs class labels (data.use_labels: true)")

    def plan(self, recipe) -> dict[str, str]:
        from gancli.train.schedules import optimizer_line, steps_line

        m, loss, t = recipe.model, recipe.loss, recipe.train
        from gancli.families.dcgan.nets import base_and_levels

        b, levels = base_and_levels(recipe.data.resolution)
        if t.ema_decay == 0:
            ema = "no EMA (G_ema is a copy of G)"
        elif t.ema_decay is not None:
            ema = f"EMA decay {t.ema_decay:g} from step {t.ema_start}"
        else:
            ema = f"EMA half-life {t.ema_kimg:g} kimg"
        extras = []
        if loss.acgan_weight:
            extras.append(f"ACGAN class term x {loss.acgan_weight:g}")
        if loss.instance_noise:
            extras.append(f"instance noise {loss.instance_noise:g}"
                          + (f" to 0 at {loss.instance_noise_kimg:g} kimg" if loss.instance_noise_kimg else ""))
        if loss.pixel_noise:
            extras.append("uniform pixel noise on reals")
        return {
            "model": (f"dcgan: G {m.g_ch * 2 ** (levels - 1)} channels at {b}x{b} down to {m.g_ch}, D {m.d_ch} up to "
                      f"{m.d_ch * 2 ** (levels - 1)} ({m.d_norm} norm), z {m.z_dim}"),
            "steps": steps_line(t, loss.kind),
            "optimizer": optimizer_line(t, ema),
            "loss": ", ".join([loss.describe(), *extras]),
        }

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.dcgan.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        return self.build_networks(recipe, c_dim, img_channels)[0]

    def training(self, trainer):
        from gancli.families.dcgan.steps import DCGANTraining

        return DCGANTraining(trainer)

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        if cutoff is not None:
            raise UserError("--trunc-cutoff: a dcgan generator has no truncation (no W and no layers of styles)")
        if trunc is not None and trunc != 1.0:  # 1 is the commands' "none" (interpolate's default psi)
            raise UserError(f"--trunc {trunc:g}: a dcgan generator has no truncation (no W and no resampling of z); "
                            "leave --trunc out")


FAMILY = DCGANFamily()
