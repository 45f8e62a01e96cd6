"""The pix2pix training step (Isola et al. 2017, Sec. 3 and 6.2; the reference `pix2pix_model.py`):

1. fake = G(x);
2. D on (x, fake) against 'fake' and on (x, y) against 'real', the sum halved ("we divide the
   objective by 2 while optimizing D, which slows down the rate at which D learns");
3. G: the adversarial loss of D(x, fake) against 'real' plus l1_weight * |y - fake|.
"""

from __future__ import annotations

import torch

from gancli.families.pix2pix.nets import build_discriminator, build_generator
from gancli.families.translation_steps import TranslationTraining
from gancli.losses import gan_target_loss


class Pix2PixTraining(TranslationTraining):
    def __init__(self, trainer):
        super().__init__(trainer)
        r, t = trainer.recipe, trainer.recipe.train
        self.G = build_generator(r, trainer.img_channels).train().to(trainer.device)
        self.D = build_discriminator(r, trainer.img_channels).train().to(trainer.device)
        self.optimizer_lrs = {"G": t.g_lr, "D": t.d_lr}
        self.opt = {"G": torch.optim.Adam(self.G.parameters(), lr=t.g_lr, betas=tuple(t.betas), eps=t.eps),
                    "D": torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=tuple(t.betas), eps=t.eps)}
        self.loss = r.loss

    def modules(self):
        return {"G": self.G, "D": self.D}

    def optimizers(self):
        return self.opt

    def step(self, stats, gen) -> None:
        x, y = self.trainer.next_batch()
        kind = self.loss.kind
        fake = self.G(x)
        self.D.requires_grad_(True)
        loss_D = 0.5 * (gan_target_loss(self.D(torch.cat([x, fake.detach()], 1)), False, kind)
                        + gan_target_loss(self.D(torch.cat([x, y], 1)), True, kind))
        self.update(self.opt["D"], loss_D, self.D)
        self.D.requires_grad_(False)
        loss_gan = gan_target_loss(self.D(torch.cat([x, fake], 1)), True, kind)
        loss_l1 = torch.nn.functional.l1_loss(fake, y)
        self.update(self.opt["G"], loss_gan + self.loss.l1_weight * loss_l1, self.G)
        stats.add("loss/D", loss_D)
        stats.add("loss/G", loss_gan)
        stats.add("loss/G_L1", loss_l1)
