"""The CycleGAN training step (Zhu et al. 2017, Sec. 3-4 and 7.1; the reference `cycle_gan_model.py`):

1. fake_B = G_AB(a), rec_A = G_BA(fake_B), fake_A = G_BA(b), rec_B = G_AB(fake_A);
2. the generators (D frozen): LSGAN loss of D_B(fake_B) and D_A(fake_A) against 'real', cycle losses
   lambda |rec_A - a| + lambda |rec_B - b|, identity losses 0.5 lambda (|G_AB(b) - b| + |G_BA(a) - a|);
3. each D on reals against 'real' and on a fake from its history pool against 'fake', halved.
"""

from __future__ import annotations

import itertools

import torch

from gancli.families.cyclegan.nets import ImagePool, build_discriminator, build_generator
from gancli.families.translation_steps import TranslationTraining
from gancli.losses import gan_target_loss


class CycleGANTraining(TranslationTraining):
    def __init__(self, trainer):
        super().__init__(trainer)
        r, t, dev = trainer.recipe, trainer.recipe.train, trainer.device
        c = trainer.img_channels
        self.G_AB, self.G_BA = (build_generator(r, c).train().to(dev) for _ in range(2))
        self.D_A, self.D_B = (build_discriminator(r, c).train().to(dev) for _ in range(2))
        self.optimizer_lrs = {"G": t.g_lr, "D": t.d_lr}
        adam = dict(betas=tuple(t.betas), eps=t.eps)
        self.opt = {"G": torch.optim.Adam(itertools.chain(self.G_AB.parameters(), self.G_BA.parameters()), lr=t.g_lr, **adam),
                    "D": torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr=t.d_lr, **adam)}
        self.loss = r.loss
        self.pool_A, self.pool_B = ImagePool(r.loss.pool_size), ImagePool(r.loss.pool_size)

    def modules(self):
        return {"G_AB": self.G_AB, "G_BA": self.G_BA, "D_A": self.D_A, "D_B": self.D_B}

    def optimizers(self):
        return self.opt

    def state_dict(self):
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_state_dict(self, state):
        self.pool_A.load_state_dict(state["pool_A"], self.trainer.device)
        self.pool_B.load_state_dict(state["pool_B"], self.trainer.device)

    def step(self, stats, gen) -> None:
        a, b = self.trainer.next_batch()
        L, kind = self.loss, self.loss.kind
        lam, idt = L.cycle_weight, L.identity_weight * L.cycle_weight
        l1 = torch.nn.functional.l1_loss
        fake_B = self.G_AB(a)
        rec_A = self.G_BA(fake_B)
        fake_A = self.G_BA(b)
        rec_B = self.G_AB(fake_A)

        for D in (self.D_A, self.D_B):
            D.requires_grad_(False)
        loss_idt = torch.zeros((), device=a.device)
        if idt > 0:
            loss_idt = l1(self.G_AB(b), b) * idt + l1(self.G_BA(a), a) * idt
        loss_gan = gan_target_loss(self.D_B(fake_B), True, kind) + gan_target_loss(self.D_A(fake_A), True, kind)
        loss_cycle = l1(rec_A, a) * lam + l1(rec_B, b) * lam
        self.update(self.opt["G"], loss_gan + loss_cycle + loss_idt, self.G_AB, self.G_BA)

        for D in (self.D_A, self.D_B):
            D.requires_grad_(True)
        past_B, past_A = self.pool_B.query(fake_B, gen), self.pool_A.query(fake_A, gen)
        loss_D_B = 0.5 * (gan_target_loss(self.D_B(b), True, kind) + gan_target_loss(self.D_B(past_B), False, kind))
        loss_D_A = 0.5 * (gan_target_loss(self.D_A(a), True, kind) + gan_target_loss(self.D_A(past_A), False, kind))
        self.update(self.opt["D"], loss_D_A + loss_D_B, self.D_A, self.D_B)
        stats.add("loss/G", loss_gan)
        stats.add("loss/D", loss_D_A + loss_D_B)
        stats.add("loss/cycle", loss_cycle)
        stats.add("loss/identity", loss_idt)

    def grid_columns(self, A, B):
        """input A | G_AB(A) | G_BA(G_AB(A)) (the reconstruction), then B | G_BA(B) | G_AB(G_BA(B))."""
        fake_B, fake_A = self.G_AB(A), self.G_BA(B)
        return [A, fake_B, self.G_BA(fake_B), B, fake_A, self.G_AB(fake_A)]
