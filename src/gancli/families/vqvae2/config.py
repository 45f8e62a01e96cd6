"""The recipe sections of the VQ-VAE-2 family (model.kind vqvae2; docs/vqvae2.md).

One family, two stages chosen by `model.stage`: 1 trains the two-level VQ-VAE (encoders, EMA
codebooks, decoder); 2 trains the two autoregressive priors over the codes of a frozen stage-1
network (`gancli train vqvae2-emoji-prior --init STAGE1_RUN`). The `model` section holds both stages'
sizes, so a stage-2 recipe is its stage-1 recipe (`base:`) with `model.stage: 2` and its own `train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gancli.errors import UserError
from gancli.families import base


@dataclass
class VQVAE2Model(base.ModelConfig):
    kind: Literal["vqvae2"] = "vqvae2"  # VQ-VAE-2 (Razavi et al. 2019): two-level VQ-VAE + autoregressive priors
    z_dim: int = 1  # not used: VQ-VAE-2 has no z (a seed drives the priors' sampling instead; docs/vqvae2.md)
    stage: Literal[1, 2] = 1  # 1: train the VQ-VAE; 2: train the priors on the codes of a stage-1 network (--init)
    channels: int = 128  # encoder/decoder width
    res_blocks: int = 2  # residual blocks per encoder and decoder
    res_channels: int = 32  # hidden width of those residual blocks
    embed_dim: int = 64  # codebook vector size (both levels)
    n_embed: int = 512  # codebook entries per level
    codebook_decay: float = 0.99  # EMA decay of the codebooks
    prior_channels: int = 256  # width of both priors
    prior_layers: int = 16  # gated PixelCNN layers per prior
    prior_kernel: int = 5  # causal convolution size (odd)
    prior_attention: int = 4  # causal self-attention blocks in the top prior (spread over its layers); 0: none
    prior_heads: int = 8  # attention heads
    prior_dropout: float = 0.1  # dropout in the gated layers of both priors
    cond_res_blocks: int = 3  # residual blocks of the bottom prior's conditioning stack (the top codes)

    def validate(self, where: str) -> None:  # z_dim is not used, so not checked
        for key in ("channels", "res_blocks", "res_channels", "embed_dim", "prior_channels", "prior_layers",
                    "prior_heads"):
            base._positive(getattr(self, key), f"{where}model.{key}")
        if self.n_embed < 2:
            raise UserError(f"{where}model.n_embed: needs at least 2 codebook entries, got {self.n_embed}")
        if not 0 < self.codebook_decay < 1:
            raise UserError(f"{where}model.codebook_decay: must be in (0, 1), got {self.codebook_decay}")
        if self.prior_kernel < 3 or self.prior_kernel % 2 == 0:
            raise UserError(f"{where}model.prior_kernel: must be an odd number >= 3, got {self.prior_kernel}")
        if not 0 <= self.prior_attention <= self.prior_layers:
            raise UserError(f"{where}model.prior_attention: must be in 0..prior_layers ({self.prior_layers}), "
                            f"got {self.prior_attention}")
        if self.prior_attention and self.prior_channels % self.prior_heads:
            raise UserError(f"{where}model.prior_heads: {self.prior_heads} does not divide prior_channels "
                            f"{self.prior_channels}")
        if not 0 <= self.prior_dropout < 1:
            raise UserError(f"{where}model.prior_dropout: must be in [0, 1), got {self.prior_dropout}")
        if self.cond_res_blocks < 0:
            raise UserError(f"{where}model.cond_res_blocks: must be >= 0, got {self.cond_res_blocks}")


@dataclass
class VQVAE2Loss(base.LossConfig):
    kind: Literal["vq"] = "vq"  # stage 1: pixel MSE + beta * commitment; stage 2: cross-entropy of the codes
    beta: float = 0.25  # commitment loss weight

    def validate(self, where: str) -> None:
        if self.beta < 0:
            raise UserError(f"{where}loss.beta: must be >= 0, got {self.beta}")


@dataclass
class VQVAE2Train(base.TrainConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam betas (torch's defaults, as the reference code)
    lr: float = 3e-4  # Adam learning rate of the stage's networks (g_lr, d_lr and the EMA keys are not used)
    dead_code_threshold: float = 0.0  # stage 1: restart codes whose EMA count falls below this at encoder outputs, from step 1/(1-codebook_decay) on (0: off)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.lr <= 0:
            raise UserError(f"{where}train.lr: must be > 0, got {self.lr}")
        if self.dead_code_threshold < 0:
            raise UserError(f"{where}train.dead_code_threshold: must be >= 0, got {self.dead_code_threshold}")
