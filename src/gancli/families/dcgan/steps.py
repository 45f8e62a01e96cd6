"""The DCGAN family's training step, composed from the shared pieces of the classic GANs.

One training step (`Trainer.state.step`) is one generator update:

1. `train.d_steps` D updates (and with `train.d_loss_threshold` up to `train.d_extra_steps` more while
   the D loss stays above it: `gancli.train.schedules.run_d_steps`), each on its own minibatch of
   `train.batch` reals (so `cur_nimg` grows by `batch` per D update) and as many fresh fakes. The reals
   may get uniform pixel noise (`loss.pixel_noise`), every image D sees the instance noise
   (`loss.instance_noise`, annealed to 0 at `loss.instance_noise_kimg`); the loss is `loss.kind` of
   the zoo (`gancli.losses.adversarial_loss`), plus WGAN-GP's gradient penalty or followed by WGAN's
   weight clipping, plus ACGAN's class term on reals and fakes (`loss.acgan_weight`).
2. One G update on `train.batch` fakes, plus ACGAN's class term on the fakes. The relativistic losses
   compare with D's logits of a fresh minibatch of reals (as the reference code of Jolicoeur-Martineau
   2019 does), which counts in `cur_nimg` like every real image D sees.
3. The EMA of G (`train.ema_decay` from `train.ema_start`, or the `ema_kimg` half-life); batch-norm
   statistics are copied from G.

The learning rates follow `train.lr_schedule` at the step's start (`gancli.train.schedules.lr_factor`
of `cur_nimg`). Every random draw of step k comes from a generator seeded by (train.seed, k), so a
resumed run continues exactly. With several processes, gradients are averaged before each optimizer
step and the D loss of the adaptive rule is the mean over ranks; batch norm and the relativistic means
use each rank's own share.
"""

from __future__ import annotations

import copy

import torch

from gancli.families.base import FamilyTraining
from gancli.losses import (
    LossStats,
    acgan_class_loss,
    clip_weights_,
    gradient_penalty,
    instance_noise,
    uniform_pixel_noise,
)
from gancli.train import distributed
from gancli.train.schedules import d_steps_then_g, ema_beta, lr_scale, make_optimizer
from gancli.train.seeding import step_seed
from gancli.train.updates import sanitize_grads, update_ema


def build_networks(recipe, c_dim: int, img_channels: int = 3):
    """(G, D) of a dcgan recipe, freshly initialised (G first: the order fixes the weights of a seed)."""
    from gancli.families.dcgan.nets import Discriminator, Generator

    m, res = recipe.model, recipe.data.resolution
    G = Generator(z_dim=m.z_dim, c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.g_ch)
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.d_ch, norm=m.d_norm)
    return G, D


def instance_noise_sigma(loss, kimg: float) -> float:
    """loss.instance_noise, annealed linearly to 0 at loss.instance_noise_kimg when that is set."""
    if loss.instance_noise_kimg is None:
        return loss.instance_noise
    return loss.instance_noise * max(0.0, 1.0 - kimg / loss.instance_noise_kimg)


class DCGANTraining(FamilyTraining):
    """G, G_ema, D, their optimizers and the loss of a DCGAN-family run."""

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.recipe.train
        scale = lr_scale(t)
        self.g_lr, self.d_lr = t.g_lr * scale, t.d_lr * scale
        self.G, self.D = build_networks(trainer.recipe, c_dim=trainer.c_dim, img_channels=trainer.img_channels)
        self.G.train().requires_grad_(False).to(trainer.device)
        self.D.train().requires_grad_(False).to(trainer.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        distributed.broadcast_modules(self.G, self.D, self.G_ema)
        self.opt_G = make_optimizer(self.G.parameters(), self.g_lr, t)
        self.opt_D = make_optimizer(self.D.parameters(), self.d_lr, t)
        self.cfg = trainer.recipe.loss
        self.loss = self.cfg.make()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    # ----------------------------------------------------------------------------------------------

    def _latents(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """z and fake labels for the global batch (the same on every rank); this rank's rows."""
        tr = self.trainer
        rank, world = tr.ddp.rank, tr.ddp.world_size
        z = torch.randn([tr.batch, self.G.z_dim], generator=gen)[rank::world].to(tr.device)
        return z, tr.fake_labels(tr.batch, gen)[rank::world]

    def _noisy(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return instance_noise(images, instance_noise_sigma(self.cfg, self.trainer.state.cur_nimg / 1000), gen)

    def d_step(self, reals: torch.Tensor, real_c: torch.Tensor, gen: torch.Generator, stats: LossStats) -> torch.Tensor:
        """One D update on these reals and as many fresh fakes; returns the D loss (a tensor)."""
        tr, G, D, cfg = self.trainer, self.G, self.D, self.cfg
        reals, real_c = reals.to(tr.device, non_blocking=True), real_c.to(tr.device)
        if cfg.pixel_noise:
            reals = uniform_pixel_noise(reals, gen)
        z, c = self._latents(gen)
        with torch.no_grad():
            fake = G(z, c)
        real_in, fake_in = self._noisy(reals, gen), self._noisy(fake, gen)
        self.opt_D.zero_grad(set_to_none=True)
        D.requires_grad_(True)
        real_logits, real_cls = D.heads(real_in)
        fake_logits, fake_cls = D.heads(fake_in)
        loss_real, loss_fake = self.loss.d_loss(real_logits, fake_logits)
        loss = loss_real.mean() + loss_fake.mean()
        stats.add("loss/D_real", loss_real)
        stats.add("loss/D_fake", loss_fake)
        stats.add("scores/real", real_logits)
        stats.add("scores/fake", fake_logits)
        if self.loss.gp and cfg.gp_weight > 0:
            eps = torch.rand([real_in.shape[0], 1, 1, 1], generator=gen).to(tr.device)
            penalty = gradient_penalty(D, real_in, fake_in, eps)
            stats.add("loss/gp", penalty)
            loss = loss + penalty.mean() * cfg.gp_weight
        if real_cls is not None and cfg.acgan_weight > 0:
            class_loss = acgan_class_loss(real_cls, real_c) + acgan_class_loss(fake_cls, c)
            stats.add("loss/D_class", class_loss)
            loss = loss + class_loss.mean() * cfg.acgan_weight
        loss.backward()
        D.requires_grad_(False)
        distributed.sync_grads(D)
        sanitize_grads(D)
        self.opt_D.step()
        if self.loss.clip:
            clip_weights_(D, cfg.wgan_clip)
        total = loss.detach()
        stats.add("loss/D", total)
        if tr.ddp.world_size > 1:  # every rank must see the same D loss (it decides extra D steps)
            distributed.all_reduce_sum_(total)
            total /= tr.ddp.world_size
        return total

    def g_step(self, gen: torch.Generator, stats: LossStats) -> None:
        tr, G, D, cfg = self.trainer, self.G, self.D, self.cfg
        real_in = None
        if self.loss.needs_real_in_g:  # a fresh real minibatch, with the same noises as in the D update
            reals = tr.next_batch()[0].to(tr.device, non_blocking=True)
            tr.state.cur_nimg += tr.batch
            real_in = self._noisy(uniform_pixel_noise(reals, gen) if cfg.pixel_noise else reals, gen)
        z, c = self._latents(gen)
        self.opt_G.zero_grad(set_to_none=True)
        G.requires_grad_(True)
        fake_logits, fake_cls = D.heads(self._noisy(G(z, c), gen))
        real_logits = D.heads(real_in)[0] if real_in is not None else None
        loss = self.loss.g_loss(fake_logits, real_logits)
        stats.add("loss/G", loss)
        loss = loss.mean()
        if fake_cls is not None and cfg.acgan_weight > 0:
            class_loss = acgan_class_loss(fake_cls, c)
            stats.add("loss/G_class", class_loss)
            loss = loss + class_loss.mean() * cfg.acgan_weight
        loss.backward()
        G.requires_grad_(False)
        distributed.sync_grads(G)
        sanitize_grads(G)
        self.opt_G.step()

    def train_step(self, stats: LossStats) -> None:
        tr = self.trainer
        t = tr.recipe.train
        factor = d_steps_then_g(self, torch.Generator().manual_seed(step_seed(t.seed, tr.state.step)), stats)
        stats.add("train/lr_factor", torch.tensor(factor))

    @torch.no_grad()
    def update_ema(self) -> None:
        tr = self.trainer
        update_ema(self.G_ema, self.G, ema_beta(tr.recipe.train, tr.batch, tr.state.step, tr.state.cur_nimg))
