"""The recipe sections of CUT and FastCUT (Park et al. 2020): model.kind cut (docs/translation.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gancli.errors import UserError
from gancli.families import base
from gancli.families.translation import TranslationModel, TranslationTrain


@dataclass
class CUTModel(TranslationModel):
    kind: Literal["cut"] = "cut"  # CUT / FastCUT: one-way unpaired translation with PatchNCE (Park et al. 2020)
    n_blocks: int = 9  # residual blocks of the ResNet generator
    norm: Literal["instance", "batch", "none"] = "instance"  # normalization in G and D (paper: instance norm)
    antialias: bool = True  # blurred down/upsampling in G (the reference default; false: strided convs as CycleGAN)
    nce_layers: list[int] = field(default_factory=lambda: [0, 4, 8, 12, 16])  # G layers PatchNCE reads (reference indices: input, 2 downsamplings, res blocks 1 and 5)
    mlp_dim: int = 256  # channels of the 2-layer MLP head on each layer's patches

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("n_blocks", "mlp_dim"):
            base._positive(getattr(self, key), f"{where}model.{key}")
        encoder = 12 + self.n_blocks if self.antialias else 10 + self.n_blocks
        bad = [i for i in self.nce_layers if not 0 <= i < encoder]
        if not self.nce_layers or bad:
            raise UserError(f"{where}model.nce_layers: must be encoder layers 0..{encoder - 1} of this generator "
                            f"({self.n_blocks} blocks), got {self.nce_layers}")


@dataclass
class CUTLoss(base.LossConfig):
    kind: Literal["lsgan", "vanilla"] = "lsgan"  # adversarial loss: 'lsgan' (the paper) or 'vanilla'
    gan_weight: float = 1.0  # weight of the adversarial loss of G
    nce_weight: float = 1.0  # lambda_X of PatchNCE(X, G(X)) (CUT 1, FastCUT 10)
    nce_identity: bool = True  # also PatchNCE(Y, G(Y)) (lambda_Y = lambda_X; CUT yes, FastCUT no), averaged with the first
    nce_patches: int = 256  # patches sampled per layer and image
    nce_tau: float = 0.07  # temperature of PatchNCE
    flip_equivariance: bool = False  # FastCUT: flip the input at random, and G's features back, for PatchNCE

    def validate(self, where: str) -> None:
        for key in ("gan_weight", "nce_weight"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        base._positive(self.nce_patches, f"{where}loss.nce_patches")
        if self.nce_tau <= 0:
            raise UserError(f"{where}loss.nce_tau: must be > 0, got {self.nce_tau}")


@dataclass
class CUTTrain(TranslationTrain):
    pass
