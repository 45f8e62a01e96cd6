"""pix2pix (Isola et al. 2017): image-to-image translation on aligned pairs (model.kind pix2pix;
docs/translation.md). A U-Net G with batch norm and dropout, a 70x70 PatchGAN on (input, output), the
vanilla GAN loss plus L1 x 100. Networks in `nets.py` (shared blocks: `gancli.nets.image2image`), the
step in `steps.py`, the recipe sections in `config.py`; data, schedule and grids in
`gancli.families.translation`."""

from __future__ import annotations

from gancli.families.pix2pix.config import Pix2PixLoss, Pix2PixModel, Pix2PixTrain
from gancli.families.translation import TranslationFamily


class Pix2PixFamily(TranslationFamily):
    name = "pix2pix"
    title = "pix2pix"
    kinds = ("pix2pix",)
    model_config = Pix2PixModel
    loss_config = Pix2PixLoss
    train_config = Pix2PixTrain
    modules = ("G", "D")
    inference_module = "G"
    data_kind = "pairs"

    def downsampling(self, recipe) -> tuple[int, str]:
        n = recipe.model.num_downs  # 8 halvings: 256 px down to 1x1 ('unet_256'); 512 px would end at 2x2
        return 2**n, f"a U-Net of {n} halvings (model.num_downs)"

    def plan(self, recipe) -> dict[str, str]:
        m, loss = recipe.model, recipe.loss
        return {
            "model": (f"pix2pix: U-Net G ({m.num_downs} halvings, {m.ngf} base channels, {m.norm} norm"
                      + (f", dropout 0.5 in {m.num_downs - 5} levels" if m.dropout and m.num_downs > 5 else "") + f"), PatchGAN D on (input, output) ({m.d_layers} layers, "
                      f"{m.ndf} base channels)"),
            "optimizer": self.schedule_plan(recipe),
            "loss": f"{loss.kind} GAN + L1 x {loss.l1_weight:g}",
        }

    def build_generator(self, recipe, c_dim: int = 0, img_channels: int = 3):
        from gancli.families.pix2pix.nets import build_generator

        return build_generator(recipe, img_channels)

    def training(self, trainer):
        from gancli.families.pix2pix.steps import Pix2PixTraining

        return Pix2PixTraining(trainer)


FAMILY = Pix2PixFamily()
