"""The recipe sections of the PGGAN family (model.kind pggan; docs/pggan.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gancli.errors import UserError
from gancli.families import base
from gancli.train.growing import ProgressiveTrain


@dataclass
class PGGANModel(base.ModelConfig):
    kind: Literal["pggan"] = "pggan"  # Progressive Growing of GANs (Karras et al. 2018)
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512  # upper bound on feature maps per layer
    pixel_norm: bool = True  # pixelwise feature normalization in G (PGGAN Sec. 4.2)
    mbstd_group_size: int = 4  # minibatch standard deviation group size in D (1: off)

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("channel_base", "channel_max", "mbstd_group_size"):
            base._positive(getattr(self, key), f"{where}model.{key}")


@dataclass
class PGGANLoss(base.LossConfig):
    kind: Literal["wgan-gp"] = "wgan-gp"  # WGAN-GP (Gulrajani et al. 2017) with PGGAN's drift term
    gp_lambda: float = 10.0  # gradient penalty weight lambda
    gp_target: float = 1.0  # gradient norm target (the penalty is divided by its square)
    drift: float = 0.001  # epsilon_drift: weight of D(x)^2 on reals (PGGAN appendix A.1)

    def validate(self, where: str) -> None:
        for key in ("gp_lambda", "drift"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        if not self.gp_target > 0:
            raise UserError(f"{where}loss.gp_target: must be > 0, got {self.gp_target}")


@dataclass
class PGGANTrain(ProgressiveTrain):
    pass
