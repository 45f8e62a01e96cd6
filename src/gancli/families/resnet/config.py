"""The recipe sections of the class-conditional ResNet family: model.kind sngan, sagan, biggan (docs/biggan.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from gancli.errors import UserError
from gancli.families import base


@dataclass
class ResNetModel(base.ModelConfig):
    kind: Literal["sngan", "sagan", "biggan"] = "biggan"  # SNGAN (Miyato et al. 2018), SAGAN (Zhang et al. 2019), BigGAN (Brock et al. 2019)
    g_ch: int = 64  # generator base width (block channels = g_ch * multiplier)
    d_ch: int = 64  # discriminator base width
    g_ch_mult: Optional[list[int]] = None  # G width multipliers, block inputs then output (null: paper table)
    d_ch_mult: Optional[list[int]] = None  # D width multipliers per block (null: paper table)
    bottom_width: Optional[int] = None  # size of G's first feature map (resolution = bottom_width * 2^blocks); null: from data.resolution, the b in 4..7 (32 -> 4, 48 -> 6)
    attn_res: list[int] = field(default_factory=list)  # self-attention at these resolutions in G and D (SAGAN)
    shared_dim: int = 0  # BigGAN shared class embedding size (0: per-layer class embeddings)
    hier: bool = False  # BigGAN hierarchical latents (z split across G's blocks)
    g_sn: bool = False  # spectral norm in G too (SAGAN, BigGAN)
    d_sn: bool = True  # spectral norm in D (SNGAN, SAGAN, BigGAN); false: a plain critic (WGAN-GP's ResNet)
    sn_iters: int = 1  # spectral-norm power iterations per training step
    init: Literal["ortho", "xavier", "default"] = "xavier"  # weight init ('ortho': BigGAN)

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("g_ch", "d_ch", "sn_iters"):
            base._positive(getattr(self, key), f"{where}model.{key}")
        if self.bottom_width is not None:
            base._positive(self.bottom_width, f"{where}model.bottom_width")
        for key in ("g_ch_mult", "d_ch_mult"):
            if getattr(self, key) is not None and (not getattr(self, key) or min(getattr(self, key)) < 1):
                raise UserError(f"{where}model.{key}: must be a non-empty list of positive integers or null")
        if self.shared_dim < 0:
            raise UserError(f"{where}model.shared_dim: must be >= 0, got {self.shared_dim}")


@dataclass
class ResNetLoss(base.AdversarialLossConfig):
    kind: base.AdversarialKind = "hinge"  # 'hinge' (SNGAN, SAGAN, BigGAN), 'bce' (non-saturating, with label smoothing), or any loss of the zoo (docs/dcgan.md)
    ortho_reg: float = 0.0  # BigGAN off-diagonal orthogonal regularization of G (1e-4 in the paper)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.ortho_reg < 0:
            raise UserError(f"{where}loss.ortho_reg: must be >= 0, got {self.ortho_reg}")


@dataclass
class ResNetTrain(base.AdversarialTrainConfig):
    standing_stats: int = 0  # batches of standing batch-norm statistics for G_ema at each snapshot (0: off)
    g_batch: Optional[int] = None  # fakes per G update (null: train.batch); SNGAN's reference code uses 2x the batch (n_gen_samples 128 at batch 64)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.standing_stats < 0:
            raise UserError(f"{where}train.standing_stats: must be >= 0, got {self.standing_stats}")
        if self.g_batch is not None and self.g_batch < 1:
            raise UserError(f"{where}train.g_batch: must be a whole number >= 1 or null (train.batch), got {self.g_batch}")
        if self.precision == "mixed":
            raise UserError(f"{where}train.precision: 'mixed' is not implemented for the ResNet family (sngan, sagan, "
                            "biggan); use auto or fp32 (they train in float32)")


def bottom_width_of(model: ResNetModel, resolution: int) -> int:
    """G's first feature-map size: model.bottom_width, or (null) the b in 4..7 with resolution = b * 2^k
    (4 for the power-of-two sizes, 6 for SNGAN's 48 px STL-10 model). Recipes are validated first, so
    a resolution without such a b does not reach here; 4 is the fallback of old checkpoints."""
    if model.bottom_width is not None:
        return model.bottom_width
    return base.doubling_base(resolution) or 4
