"""The recipe sections of the DCGAN family (model.kind dcgan; docs/dcgan.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from gancli.errors import UserError
from gancli.families import base


@dataclass
class DCGANModel(base.ModelConfig):
    kind: Literal["dcgan"] = "dcgan"  # DCGAN (Radford et al. 2016): transposed-conv G with batch norm, strided-conv D
    z_dim: int = 100  # input latent size (DCGAN: 100)
    g_ch: int = 64  # G channels before the output layer; x2 per layer toward 4x4 (DCGAN 64 px: 1024 at 4x4 with 128)
    d_ch: int = 64  # D channels after its first layer; x2 per layer toward 4x4
    d_norm: Literal["batch", "layer", "none"] = "batch"  # D normalization after its first layer ('layer': WGAN-GP, Sec. 4)

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("g_ch", "d_ch"):
            base._positive(getattr(self, key), f"{where}model.{key}")


@dataclass
class DCGANLoss(base.AdversarialLossConfig):
    kind: base.AdversarialKind = "nonsat"  # adversarial loss (the zoo: docs/dcgan.md)
    acgan_weight: float = 0.0  # ACGAN auxiliary classifier term weight (Odena et al. 2017); > 0 needs data.use_labels
    instance_noise: float = 0.0  # std of Gaussian noise added to every image D sees (reals and fakes); 0: off
    instance_noise_kimg: Optional[float] = None  # anneal instance_noise linearly to 0 at this kimg (null: constant)
    pixel_noise: bool = False  # add U[0, 2/255) to the real pixels (one 8-bit level: dequantization)

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("acgan_weight", "instance_noise"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        if self.instance_noise_kimg is not None and self.instance_noise_kimg <= 0:
            raise UserError(f"{where}loss.instance_noise_kimg: must be > 0 or null, got {self.instance_noise_kimg}")


@dataclass
class DCGANTrain(base.AdversarialTrainConfig):
    batch: int = 128  # global minibatch size (DCGAN: 128)
    g_lr: float = 0.0002  # generator learning rate (DCGAN: 2e-4)
    d_lr: float = 0.0002  # discriminator learning rate (DCGAN: 2e-4)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas (DCGAN: beta1 0.5)
    ema_decay: Optional[float] = 0.0  # EMA decay per G step; 0: no EMA (G_ema is G), null: the ema_kimg half-life

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.precision == "mixed":
            raise UserError(f"{where}train.precision: 'mixed' is not implemented for the DCGAN family; use auto or fp32")
