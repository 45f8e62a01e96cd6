"""The recipe sections of CycleGAN (Zhu et al. 2017): model.kind cyclegan (docs/translation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gancli.errors import UserError
from gancli.families import base
from gancli.families.translation import TranslationModel, TranslationTrain


@dataclass
class CycleGANModel(TranslationModel):
    kind: Literal["cyclegan"] = "cyclegan"  # CycleGAN: two translators tied by cycle consistency (Zhu et al. 2017)
    n_blocks: int = 9  # residual blocks of each ResNet generator (9 for 256 px, 6 for 128 px: Appendix 7.2)
    norm: Literal["instance", "batch", "none"] = "instance"  # normalization in G and D (paper: instance norm)

    def validate(self, where: str) -> None:
        super().validate(where)
        base._positive(self.n_blocks, f"{where}model.n_blocks")


@dataclass
class CycleGANLoss(base.LossConfig):
    kind: Literal["lsgan", "vanilla"] = "lsgan"  # adversarial loss: 'lsgan' (least squares, the paper Sec. 4) or 'vanilla'
    cycle_weight: float = 10.0  # lambda of the cycle losses |F(G(x)) - x| and |G(F(y)) - y| (both ways; Sec. 3.3)
    identity_weight: float = 0.5  # identity loss weight as a fraction of cycle_weight (0.5 x lambda; Sec. 5.2), 0: off
    pool_size: int = 50  # generated images kept for D's history pool (Sec. 4, after Shrivastava et al.), 0: none

    def validate(self, where: str) -> None:
        for key in ("cycle_weight", "identity_weight"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        if self.pool_size < 0:
            raise UserError(f"{where}loss.pool_size: must be >= 0, got {self.pool_size}")


@dataclass
class CycleGANTrain(TranslationTrain):
    pass
