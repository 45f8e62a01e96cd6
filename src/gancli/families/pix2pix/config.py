"""The recipe sections of pix2pix (Isola et al. 2017): model.kind pix2pix (docs/translation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gancli.errors import UserError
from gancli.families import base
from gancli.families.translation import TranslationModel, TranslationTrain


@dataclass
class Pix2PixModel(TranslationModel):
    kind: Literal["pix2pix"] = "pix2pix"  # pix2pix: conditional GAN on aligned pairs (Isola et al. 2017)
    num_downs: int = 8  # U-Net halvings down to 1x1 (8: 'unet_256' for 256 px; resolution must be 2^num_downs)
    norm: Literal["batch", "instance", "none"] = "batch"  # normalization in G and D (paper: batch norm)
    dropout: bool = True  # dropout 0.5 in the inner decoder levels: the generator's noise (paper Sec. 3.1)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.num_downs < 5:
            raise UserError(f"{where}model.num_downs: the U-Net needs at least 5 halvings, got {self.num_downs}")


@dataclass
class Pix2PixLoss(base.LossConfig):
    kind: Literal["vanilla", "lsgan"] = "vanilla"  # adversarial loss: 'vanilla' (sigmoid cross-entropy, the paper) or 'lsgan'
    l1_weight: float = 100.0  # lambda of the L1 term |y - G(x)| (paper Eq. 4: 100)

    def validate(self, where: str) -> None:
        if self.l1_weight < 0:
            raise UserError(f"{where}loss.l1_weight: must be >= 0, got {self.l1_weight}")


@dataclass
class Pix2PixTrain(TranslationTrain):
    pass
