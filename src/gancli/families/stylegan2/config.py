"""The recipe sections of the StyleGAN2 family (model.kind stylegan2; StyleGAN2 and StyleGAN2-ADA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from gancli.errors import UserError
from gancli.families import base


@dataclass
class StyleGAN2Model(base.ModelConfig):
    kind: Literal["stylegan2"] = "stylegan2"  # StyleGAN2 (Karras et al. 2020)
    w_dim: int = 512  # intermediate latent (W) size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995  # decay of the tracked average W (for truncation), as official StyleGAN2
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512  # upper bound on feature maps per layer
    num_fp16_res: int = 4  # run the N highest resolutions in float16 (GPU only; float32 on CPU)
    conv_clamp: Optional[float] = 256  # clamp convolution outputs to +-conv_clamp (null: off)
    g_architecture: Literal["orig", "skip", "resnet"] = "skip"  # generator: toRGB skips (StyleGAN2 default)
    d_architecture: Literal["orig", "skip", "resnet"] = "resnet"  # discriminator: residual blocks (default)
    mbstd_group_size: int = 4  # minibatch standard deviation group size
    mbstd_num_channels: int = 1  # minibatch standard deviation features (0: off)

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("w_dim", "channel_base", "channel_max", "mbstd_group_size"):
            base._positive(getattr(self, key), f"{where}model.{key}")
        if self.mapping_layers < 1:
            raise UserError(f"{where}model.mapping_layers: must be at least 1, got {self.mapping_layers}")
        if self.num_fp16_res < 0 or self.mbstd_num_channels < 0:
            raise UserError(f"{where}model: num_fp16_res and mbstd_num_channels must be >= 0")


@dataclass
class StyleGAN2Loss(base.LossConfig):
    kind: Literal["stylegan2"] = "stylegan2"  # non-saturating logistic loss + R1 and path-length regularization
    r1_gamma: float = 10.0  # R1 regularization weight (gamma); 0 disables
    r1_interval: int = 16  # lazy regularization: R1 every N minibatches (0 or 1: every step)
    pl_weight: float = 2.0  # path length regularization weight; 0 disables
    pl_decay: float = 0.01  # decay of the running path-length mean
    pl_batch_shrink: int = 2  # path length penalty on batch / shrink images
    pl_interval: int = 4  # lazy regularization: path length every N minibatches
    style_mixing_prob: float = 0.9  # probability of style mixing regularization

    def validate(self, where: str) -> None:
        if not 0 <= self.style_mixing_prob <= 1:
            raise UserError(f"{where}loss.style_mixing_prob: must be in [0, 1], got {self.style_mixing_prob}")
        for key in ("r1_gamma", "pl_weight", "pl_decay", "r1_interval", "pl_interval"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        base._positive(self.pl_batch_shrink, f"{where}loss.pl_batch_shrink")


@dataclass
class StyleGAN2Train(base.TrainConfig):
    freeze_d: int = 0  # FreezeD: freeze the first N layers of D, counted from the highest resolution

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.freeze_d < 0:
            raise UserError(f"{where}train.freeze_d: must be >= 0, got {self.freeze_d}")
        if self.d_steps != 1:
            raise UserError(f"{where}train.d_steps: StyleGAN2 trains with one D step per G step, got {self.d_steps}")
