"""Training steps of the class-conditional ResNet family (SNGAN, SAGAN, BigGAN).

One training step (`Trainer.state.step`) is one generator update:

1. `train.d_steps` discriminator updates, each on its own minibatch of `train.batch` real images (so
   `cur_nimg` grows by `d_steps * batch` per step) and as many fakes from G (batch norm in training
   mode, no gradient), with the hinge or BCE loss; with `train.d_loss_threshold`, up to
   `train.d_extra_steps` more D updates while the last D loss stays above the threshold (each again
   on fresh reals).
2. One generator update on `train.batch` fakes (the relativistic losses also read a fresh real minibatch),
   plus BigGAN's orthogonal regularization, whose closed
   form gradient is added after the adversarial gradient (`losses.add_orthogonal_grad`).
3. The EMA of G: BigGAN's per-step decay with a start step (`train.ema_decay`, `train.ema_start`;
   weights are copied before it), or the half-life in images (`train.ema_kimg`) shared with StyleGAN2.
   Buffers (batch-norm statistics, spectral-norm vectors) are copied from G.

With several processes (`gancli.train.distributed`) each rank takes its share of the reals and of the
global batch's latents, gradients are averaged over the ranks before every optimizer step, and the D
loss that decides SAGAN's extra steps is the mean over ranks, so all ranks take the same steps; batch
norm uses each rank's own statistics (as BigGAN's unsynchronized batch norm).

Each update accumulates gradients over `batch / batch_gpu` rounds, each weighted by its share of the
batch, so the step equals one on the whole batch (up to G's batch-norm statistics, which are those of
each round, as in BigGAN's accumulation). Every random draw of step k comes from a generator seeded by
(train.seed, k), so a resumed run continues exactly.
"""

from __future__ import annotations

import copy

import torch

from gancli.errors import UserError
from gancli.families.base import FamilyTraining
from gancli.families.resnet.config import bottom_width_of
from gancli.losses import LossStats, add_orthogonal_grad, clip_weights_, gradient_penalty
from gancli.train import distributed
from gancli.train.schedules import d_steps_then_g, ema_beta, lr_scale, make_optimizer
from gancli.train.seeding import step_seed
from gancli.train.updates import sanitize_grads, update_ema


def build_networks(recipe, c_dim: int, img_channels: int = 3):
    """(G, D) for a sngan/sagan/biggan recipe, freshly initialised (G first: the order fixes the weights of a seed)."""
    from gancli.families.resnet.nets import Discriminator, Generator

    m = recipe.model
    res, attn = recipe.data.resolution, tuple(m.attn_res)
    bottom = bottom_width_of(m, res)
    G = Generator(z_dim=m.z_dim, c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.g_ch,
                  ch_mult=m.g_ch_mult, bottom_width=bottom, attn_res=attn, shared_dim=m.shared_dim,
                  hier=m.hier, sn=m.g_sn, sn_iters=m.sn_iters, init=m.init)
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, ch=m.d_ch, ch_mult=m.d_ch_mult,
                      bottom_width=bottom, attn_res=attn, sn_iters=m.sn_iters, init=m.init,
                      sn=m.d_sn)
    return G, D


class ResNetTraining(FamilyTraining):
    """G, G_ema, D, their optimizers and losses, the D and G updates and the EMA of a ResNet-family run."""

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.recipe.train
        if t.g_batch is not None and t.g_batch % trainer.ddp.world_size:
            raise UserError(f"train.g_batch ({t.g_batch}) must be divisible by the number of processes "
                            f"({trainer.ddp.world_size})")
        scale = lr_scale(t)  # linear scaling rule (SAGAN option)
        self.g_lr, self.d_lr = t.g_lr * scale, t.d_lr * scale
        self.G, self.D = build_networks(trainer.recipe, c_dim=trainer.c_dim, img_channels=trainer.img_channels)
        self.G.train().requires_grad_(False).to(trainer.device)
        self.D.train().requires_grad_(False).to(trainer.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        distributed.broadcast_modules(self.G, self.D, self.G_ema)
        G, D = self.G, self.D
        self.opt_G = make_optimizer(G.parameters(), self.g_lr, t)
        self.opt_D = make_optimizer(D.parameters(), self.d_lr, t)
        loss = trainer.recipe.loss
        self.loss_config = loss
        self.loss = loss.make()  # the loss zoo (gancli.losses.adversarial_loss)
        self.ortho_reg = loss.ortho_reg
        # BigGAN leaves the shared class embedding out of the orthogonal regularization.
        self.ortho_params = [p for n, p in G.named_parameters() if p.ndim >= 2 and not n.startswith("shared.")]

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    # ----------------------------------------------------------------------------------------------

    def _rounds(self, *tensors: torch.Tensor):
        size = self.trainer.batch_gpu
        n = tensors[0].shape[0]
        return [(len(parts[0]) / n, *parts) for parts in zip(*(x.split(size) for x in tensors))]

    def d_step(self, reals: torch.Tensor, real_c: torch.Tensor, gen: torch.Generator, stats: LossStats) -> torch.Tensor:
        """One D update on these reals and as many fresh fakes; returns the D loss (a tensor)."""
        tr = self.trainer
        G, D = self.G, self.D
        reals, real_c = reals.to(tr.device, non_blocking=True), real_c.to(tr.device)
        z, c = self._latents(gen)
        self.opt_D.zero_grad(set_to_none=True)
        D.requires_grad_(True)
        total = torch.zeros([], device=tr.device)
        for share, real_r, real_c_r, z_r, c_r in self._rounds(reals, real_c, z, c):
            with torch.no_grad():
                fake = G(z_r, c_r)
            real_logits, fake_logits = D(real_r, real_c_r), D(fake, c_r)
            loss_real, loss_fake = self.loss.d_loss(real_logits, fake_logits)
            loss = loss_real.mean() + loss_fake.mean()
            if self.loss.gp and self.loss_config.gp_weight > 0:
                eps = torch.rand([real_r.shape[0], 1, 1, 1], generator=gen).to(tr.device)
                penalty = gradient_penalty(D, real_r, fake, eps, c_r)
                stats.add("loss/gp", penalty)
                loss = loss + penalty.mean() * self.loss_config.gp_weight
            stats.add("loss/D_real", loss_real)
            stats.add("loss/D_fake", loss_fake)
            stats.add("scores/real", real_logits)
            stats.add("scores/fake", fake_logits)
            loss.mul(share).backward()
            total = total + loss.detach() * share
        D.requires_grad_(False)
        distributed.sync_grads(D)
        sanitize_grads(D)
        self.opt_D.step()
        if self.loss.clip:
            clip_weights_(D, self.loss_config.wgan_clip)
        stats.add("loss/D", total)
        if tr.ddp.world_size > 1:  # every rank must see the same D loss (it decides extra D steps)
            distributed.all_reduce_sum_(total)
            total /= tr.ddp.world_size
        return total

    def _latents(self, gen: torch.Generator, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z and fake labels for a global batch of n (default train.batch; the same on every rank); this
        rank's rows."""
        tr = self.trainer
        n = tr.batch if n is None else n
        rank, world = tr.ddp.rank, tr.ddp.world_size
        z = torch.randn([n, self.G.z_dim], generator=gen)[rank::world].to(tr.device)
        return z, tr.fake_labels(n, gen)[rank::world]

    def g_step(self, gen: torch.Generator, stats: LossStats) -> None:
        """One G update on train.g_batch fakes (default train.batch)."""
        G, D = self.G, self.D
        tr = self.trainer
        n = tr.recipe.train.g_batch or tr.batch
        z, c = self._latents(gen, n)
        self.opt_G.zero_grad(set_to_none=True)
        G.requires_grad_(True)
        if self.loss.needs_real_in_g:  # relativistic: D's logits of as many fresh reals (counted in cur_nimg)
            reals, real_c = tr.next_batch(n)
            reals, real_c = reals.to(tr.device, non_blocking=True), real_c.to(tr.device)
            tr.state.cur_nimg += n
            for share, z_r, c_r, real_r, real_c_r in self._rounds(z, c, reals, real_c):
                loss = self.loss.g_loss(D(G(z_r, c_r), c_r), D(real_r, real_c_r))
                stats.add("loss/G", loss)
                loss.mean().mul(share).backward()
        else:
            for share, z_r, c_r in self._rounds(z, c):
                loss = self.loss.g_loss(D(G(z_r, c_r), c_r))
                stats.add("loss/G", loss)
                loss.mean().mul(share).backward()
        if self.ortho_reg > 0:
            stats.add("loss/ortho", add_orthogonal_grad(self.ortho_params, self.ortho_reg))
        G.requires_grad_(False)
        distributed.sync_grads(G)
        sanitize_grads(G)
        self.opt_G.step()

    def train_step(self, stats: LossStats) -> None:
        """d_steps (+ extra) D updates, each on its own reals, then one G update and the EMA."""
        tr = self.trainer
        t = tr.recipe.train
        step = tr.state.step
        torch.manual_seed(step_seed(t.seed, step))
        d_steps_then_g(self, torch.Generator().manual_seed(step_seed(t.seed + 1, step)), stats)

    @torch.no_grad()
    def update_ema(self) -> None:
        tr = self.trainer
        update_ema(self.G_ema, self.G, ema_beta(tr.recipe.train, tr.batch, tr.state.step, tr.state.cur_nimg))

    def before_snapshot(self) -> None:
        """Standing batch-norm statistics for G_ema (train.standing_stats batches), from their own generator."""
        from gancli.families.resnet.nets import standing_statistics

        tr = self.trainer
        t = tr.recipe.train
        if t.standing_stats > 0:
            gen = torch.Generator().manual_seed(step_seed(t.seed + 2, tr.state.step))
            standing_statistics(self.G_ema, t.standing_stats, tr.batch_gpu, gen, tr.device, tr.real_labels)

