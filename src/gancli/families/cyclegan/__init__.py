"""CycleGAN (Zhu et al. 2017): unpaired translation both ways (model.kind cyclegan; docs/translation.md).
Two ResNet generators with instance norm (G_AB, G_BA), two 70x70 PatchGANs (D_A, D_B), LSGAN, cycle
losses lambda 10 both ways, identity 0.5 lambda, a history pool of 50 fakes per D. Networks and the
pool in `nets.py`, the step in `steps.py`, the recipe sections in `config.py`; data, schedule and
grids in `gancli.families.translation`."""

from __future__ import annotations

from gancli.errors import UserError
from gancli.families.cyclegan.config import CycleGANLoss, CycleGANModel, CycleGANTrain
from gancli.families.translation import TranslationFamily


class CycleGANFamily(TranslationFamily):
    name = "cyclegan"
    title = "CycleGAN"
    kinds = ("cyclegan",)
    model_config = CycleGANModel
    loss_config = CycleGANLoss
    train_config = CycleGANTrain
    modules = ("G_AB", "G_BA", "D_A", "D_B")
    inference_module = "G_AB"
    data_kind = "unpaired"

    def plan(self, recipe) -> dict[str, str]:
        m, loss = recipe.model, recipe.loss
        return {
            "model": (f"cyclegan: two ResNet G ({m.n_blocks} blocks, {m.ngf} base channels, {m.norm} norm), two "
                      f"PatchGAN D ({m.d_layers} layers, {m.ndf} base channels)"),
            "optimizer": self.schedule_plan(recipe),
            "loss": (f"{loss.kind} GAN, cycle x {loss.cycle_weight:g} both ways, identity x "
                     f"{loss.identity_weight * loss.cycle_weight:g}, history pool of {loss.pool_size}"),
        }

    def translation_module(self, recipe, direction):
        trained = recipe.train.direction
        if direction is None:
            return "G_AB"
        if direction not in ("AtoB", "BtoA"):
            raise UserError(f"translate --direction {direction}: use AtoB or BtoA")
        return "G_AB" if direction == trained else "G_BA"

    def build_generator(self, recipe, c_dim: int = 0, img_channels: int = 3):
        from gancli.families.cyclegan.nets import build_generator

        return build_generator(recipe, img_channels)

    def training(self, trainer):
        from gancli.families.cyclegan.steps import CycleGANTraining

        return CycleGANTraining(trainer)


FAMILY = CycleGANFamily()
