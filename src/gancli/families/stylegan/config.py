"""The recipe sections of the StyleGAN (v1) family (model.kind stylegan; docs/stylegan.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from gancli.errors import UserError
from gancli.families import base
from gancli.train.growing import ProgressiveTrain


@dataclass
class StyleGANModel(base.ModelConfig):
    kind: Literal["stylegan"] = "stylegan"  # StyleGAN (Karras et al. 2019): AdaIN, noise, progressive growing
    w_dim: int = 512  # intermediate latent (W) size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995  # decay of the tracked average W (for truncation)
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512  # upper bound on feature maps per layer
    mbstd_group_size: int = 4  # minibatch standard deviation group size in D (1: off)
    adain_eps: float = 1e-8  # epsilon of AdaIN's instance normalization (official 1e-8; imported rosinality files 1e-5)
    bias_before_blur: bool = False  # add each block's first bias before the blur (imported rosinality files), not after the noise
    sample_trunc: Optional[float] = None  # `gancli sample` without --trunc: truncation psi in W (StyleGAN 0.7; null: none)
    sample_trunc_cutoff: Optional[int] = None  # with sample_trunc: truncate the first N layers of W (StyleGAN 8; null: all)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.sample_trunc_cutoff is not None:
            base._positive(self.sample_trunc_cutoff, f"{where}model.sample_trunc_cutoff")
        for key in ("w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group_size"):
            base._positive(getattr(self, key), f"{where}model.{key}")
        if not self.adain_eps > 0:
            raise UserError(f"{where}model.adain_eps: must be > 0, got {self.adain_eps}")
        if not 0 <= self.w_avg_beta <= 1 or not self.mapping_lr_multiplier > 0:
            raise UserError(f"{where}model: w_avg_beta must be in [0, 1] and mapping_lr_multiplier > 0")


@dataclass
class StyleGANLoss(base.LossConfig):
    kind: Literal["logistic-r1"] = "logistic-r1"  # non-saturating logistic loss with R1 on reals, every step
    r1_gamma: float = 10.0  # R1 weight gamma (the penalty is gamma / 2 times the squared gradient norm of D on reals)
    style_mixing_prob: float = 0.9  # probability of style mixing regularization

    def validate(self, where: str) -> None:
        if self.r1_gamma < 0:
            raise UserError(f"{where}loss.r1_gamma: must be >= 0, got {self.r1_gamma}")
        if not 0 <= self.style_mixing_prob <= 1:
            raise UserError(f"{where}loss.style_mixing_prob: must be in [0, 1], got {self.style_mixing_prob}")


@dataclass
class StyleGANTrain(ProgressiveTrain):
    start_res: int = 8  # progressive growing: first resolution (StyleGAN starts at 8, official lod_initial_resolution)
