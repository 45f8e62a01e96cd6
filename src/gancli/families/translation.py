"""What the image-to-image families (pix2pix, CycleGAN, CUT) share: the recipe keys of the common
schedule, the data hooks (aligned pairs or unpaired domains), translation through `gancli translate`,
the epoch and learning-rate schedule, and the training grid of input | output | target.

The common schedule (pix2pix Sec. 6.2, CycleGAN Sec. 7.1, CUT Sec. 4 / Appendix): Adam lr 2e-4,
betas (0.5, 0.999), batch 1; the lr is constant for `train.epochs` epochs, then decays linearly over
`train.epochs_decay` more, per epoch, with the reference code's rule
`lr = lr0 * (1 - max(0, epoch + 1 - epochs) / (epochs_decay + 1))` (epoch counted from 0). An epoch
is `dataset.num_images` images (the pairs, or the larger of the two unpaired domains, as the
reference counts it). The epoch and the schedule position are functions of `cur_nimg`, which the
checkpoint restores, so a resumed run continues mid-schedule (the reference code restarts both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gancli.errors import UserError
from gancli.families import base
from gancli.families.base import require_multiple


@dataclass
class TranslationModel(base.ModelConfig):
    z_dim: int = 0  # no latent: translators take images (must be 0)
    ngf: int = 64  # generator base channels
    ndf: int = 64  # discriminator base channels
    d_layers: int = 3  # PatchGAN stride-2 layers (3: the 70x70 PatchGAN)

    def validate(self, where: str) -> None:
        if self.z_dim != 0:
            raise UserError(f"{where}model.z_dim: a translator has no latent; use 0, got {self.z_dim}")
        for key in ("ngf", "ndf", "d_layers"):
            base._positive(getattr(self, key), f"{where}model.{key}")


@dataclass
class TranslationTrain(base.TrainConfig):
    batch: int = 1  # global minibatch (1 in all three papers)
    total_kimg: float = 80  # training length in thousands of images (recipes: (epochs + epochs_decay) x dataset size)
    g_lr: float = 0.0002  # generator learning rate (also CUT's MLP head)
    d_lr: float = 0.0002  # discriminator learning rate
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas
    ema_kimg: float = 0.0  # no generator EMA in these papers (must be 0)
    snapshot_kimg: float = 10  # write a checkpoint every N kimg (and at the end)
    image_kimg: float = 2  # write an input | output | target grid every N kimg
    epochs: int = 100  # epochs at the initial learning rate
    epochs_decay: int = 100  # epochs of linear decay toward 0 after them
    load_size: int = 286  # images are resized to this, then randomly cropped to data.resolution
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # which domain of the data is the input

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.ema_kimg != 0:
            raise UserError(f"{where}train.ema_kimg: these translators keep no generator EMA; use 0")
        if self.epochs < 0 or self.epochs_decay < 0 or self.epochs + self.epochs_decay < 1:
            raise UserError(f"{where}train.epochs, train.epochs_decay: must be >= 0 with a positive sum, "
                            f"got {self.epochs} and {self.epochs_decay}")
        if self.precision == "mixed":
            raise UserError(f"{where}train.precision: 'mixed' is not implemented for the translation families; use auto or fp32")


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """The learning-rate multiplier during epoch `epoch` (from 0): 1 for `epochs` epochs, then linear
    toward 0 over `epochs_decay` more (the reference's rule: 1 / (epochs_decay + 1) in the last epoch of
    the decay; 0 after it, if training goes on)."""
    return max(0.0, 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1))


def patchgan_min_resolution(n_layers: int) -> int:
    """The smallest power-of-two input that leaves a PatchGAN of `n_layers` at least one output: each
    stride-2 4x4 conv (padding 1) halves the size, the two stride-1 4x4 convs take 1 each."""
    res = 2
    while (res >> n_layers) - 2 < 1:
        res *= 2
    return res


class TranslationFamily(base.Family):
    """The part of pix2pix, CycleGAN and CUT that is the same: data, translation, validation."""

    capabilities = frozenset({"image_in"})
    data_kind = "pairs"
    non_square = True  # fully convolutional G and D: H x W crops (data.width)
    directions: tuple[str, ...] = ("trained",)  # 'trained': only the recipe's direction; CycleGAN: both

    def downsampling(self, recipe) -> tuple[int, str]:
        """(total downsampling factor of the generator, what it is): the crop must be a multiple of it, so
        that every decoder level meets its encoder level at the same size. Default: the ResNet
        generator's two stride-2 halvings (CycleGAN, CUT)."""
        return 4, f"the {self.title} ResNet generator (two halvings)"

    def check_resolution(self, recipe, where: str) -> None:
        """Any crop the generator's halvings divide and the PatchGAN (fully convolutional) can score:
        not only powers of two, and not only squares (data.width: e.g. 256 x 512)."""
        factor, what = self.downsampling(recipe)
        require_multiple(recipe.data.resolution, where, factor, what)
        if recipe.data.width is not None:
            require_multiple(recipe.data.width, where, factor, what, key="data.width")

    def load_shape(self, recipe) -> tuple[int, int]:
        """(height, width) the images are resized to before the random crop: train.load_size high, and as
        wide as keeps the crop's aspect (load 286 for a 256 x 512 crop: 286 x 572)."""
        h, w = recipe.data.shape
        load = recipe.train.load_size
        return load, load if w == h else int(round(load * w / h))

    def validate(self, recipe, where: str) -> None:
        super().validate(recipe, where)
        d, t, m = recipe.data, recipe.train, recipe.model
        if d.use_labels:
            raise UserError(f"{where}data.use_labels: the {self.title} family is not class-conditional; use false")
        if t.load_size < d.resolution:
            raise UserError(f"{where}train.load_size: {t.load_size} is smaller than the crop data.resolution {d.resolution}")
        from gancli.data.translation import BUILTIN_PAIRS, BUILTIN_UNPAIRED, check_source_kind

        check_source_kind(d.source, self.data_kind == "pairs", where)
        if d.width is not None and d.source in BUILTIN_PAIRS + BUILTIN_UNPAIRED:
            raise UserError(f"{where}data.width: the built-in {d.source} images are square; train non-square crops on "
                            "a folder of your own images, or remove data.width")
        need = patchgan_min_resolution(m.d_layers)
        for key, size in (("data.resolution", d.resolution), ("data.width", d.shape[1])):
            if size < need:
                raise UserError(f"{where}{key}: {size} px is too small for a PatchGAN of {m.d_layers} "
                                f"layers (needs >= {need}); lower model.d_layers")
        if recipe.distributed.gpus != 1:
            raise UserError(f"{where}distributed.gpus: the {self.title} family trains in one process (batch 1 in the papers)")

    # ----------------------------------------------------------------------------------------------
    # Data

    def open_dataset(self, recipe, split: str = "train"):
        """The `split` ('train', 'test') of the recipe's data; data.max_size cuts the training split only."""
        from gancli.data.translation import open_translation_data

        d = recipe.data
        return open_translation_data(d.source, self.load_shape(recipe), paired=self.data_kind == "pairs", split=split,
                                     direction=recipe.train.direction, max_size=d.max_size if split == "train" else None)

    def data_plan(self, recipe):
        return None  # aligned pairs / unpaired domains: memory-mapped from the dataset cache (gancli.data.translation)

    def data_stream(self, recipe, dataset, batch_rank, *, start_index, rank, world_size):
        from gancli.data.translation import TranslationStream

        return TranslationStream(dataset, recipe.data.shape, recipe.data.xflip, seed=recipe.train.seed,
                                 start_index=start_index, rank=rank, world_size=world_size)

    # ----------------------------------------------------------------------------------------------
    # Translation

    def translation_module(self, recipe, direction: str | None) -> str:
        trained = recipe.train.direction
        if direction is None or direction == trained:
            return self.inference_module
        raise UserError(f"translate --direction {direction}: a {recipe.model.kind} generator translates one way only "
                        f"(it was trained {trained})")

    def translate(self, G, images):
        import torch

        with torch.no_grad():
            return G(images)

    def schedule_plan(self, recipe) -> str:
        t = recipe.train
        return (f"Adam lr G {t.g_lr:g} / D {t.d_lr:g}, betas {t.betas}; constant for {t.epochs} epochs, then linear "
                f"toward 0 over {t.epochs_decay} (an epoch: every pair, or the larger domain, once); load "
                f"{_size(self.load_shape(recipe))}, random crop {_size(recipe.data.shape)}"
                + (", random flips" if recipe.data.xflip else ""))


def _size(shape: tuple[int, int]) -> str:
    """'256' for a square, '256x512' (height x width) otherwise."""
    h, w = shape
    return str(h) if h == w else f"{h}x{w}"
