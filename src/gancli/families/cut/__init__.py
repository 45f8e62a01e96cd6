"""CUT and FastCUT (Park et al. 2020): one-way unpaired translation with patchwise contrastive learning
(model.kind cut; docs/translation.md). A ResNet generator with instance norm and anti-aliased
resampling, a 70x70 PatchGAN, LSGAN, PatchNCE on G's encoder layers 0, 4, 8, 12, 16 (256 patches,
tau 0.07, a 2-layer MLP head of 256). CUT: lambda_NCE 1 plus the identity term; FastCUT (recipes
fastcut-*): lambda_NCE 10, no identity term, flip-equivariance. Networks and the head in `nets.py`,
the step in `steps.py`, the recipe sections in `config.py`."""

from __future__ import annotations

from gancli.families.cut.config import CUTLoss, CUTModel, CUTTrain
from gancli.families.translation import TranslationFamily


class CUTFamily(TranslationFamily):
    name = "cut"
    title = "CUT"
    kinds = ("cut",)
    model_config = CUTModel
    loss_config = CUTLoss
    train_config = CUTTrain
    modules = ("G", "D", "F")
    inference_module = "G"
    data_kind = "unpaired"

    def plan(self, recipe) -> dict[str, str]:
        m, loss = recipe.model, recipe.loss
        variant = "CUT" if loss.nce_identity else "FastCUT" if loss.flip_equivariance else "CUT without identity NCE"
        return {
            "model": (f"cut ({variant}): ResNet G ({m.n_blocks} blocks, {m.ngf} base channels, {m.norm} norm"
                      + (", anti-aliased" if m.antialias else "") + f"), PatchGAN D ({m.d_layers} layers, {m.ndf} base "
                      f"channels), MLP head {m.mlp_dim} on layers {m.nce_layers}"),
            "optimizer": self.schedule_plan(recipe),
            "loss": (f"{loss.kind} GAN x {loss.gan_weight:g}, PatchNCE x {loss.nce_weight:g} ({loss.nce_patches} patches, "
                     f"tau {loss.nce_tau:g})" + (" + identity PatchNCE" if loss.nce_identity else "")
                     + (", flip-equivariance" if loss.flip_equivariance else "")),
        }

    def build_generator(self, recipe, c_dim: int = 0, img_channels: int = 3):
        from gancli.families.cut.nets import build_generator

        return build_generator(recipe, img_channels)

    def training(self, trainer):
        from gancli.families.cut.steps import CUTTraining

        return CUTTraining(trainer)


FAMILY = CUTFamily()
