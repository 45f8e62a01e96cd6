"""The CUT / FastCUT training step (Park et al. 2020, Sec. 3 and Appendix; the reference `cut_model.py`):

1. x = real A; with the identity term (CUT), G runs on cat(A, B) and gives G(A) and the identity G(B);
   with flip-equivariance (FastCUT) the input is mirrored with probability 1/2;
2. D (LSGAN) on real B against 'real' and on G(A) against 'fake', halved;
3. G and the MLP head: gan_weight x LSGAN(D(G(A)), 'real') + PatchNCE(A, G(A)), averaged with
   PatchNCE(B, G(B)) for CUT. PatchNCE(src, out): G's encoder features of the output are the queries,
   those of the source the keys, at the same `nce_patches` locations per layer, each layer's mean
   loss times nce_weight, averaged over the layers.
"""

from __future__ import annotations

import itertools

import torch

from gancli.families.cut.nets import PatchSampleMLP, build_discriminator, build_generator
from gancli.families.translation_steps import TranslationTraining
from gancli.losses import gan_target_loss, patch_nce_loss


class CUTTraining(TranslationTraining):
    def __init__(self, trainer):
        super().__init__(trainer)
        r, t, dev = trainer.recipe, trainer.recipe.train, trainer.device
        self.G = build_generator(r, trainer.img_channels).train().to(dev)
        self.D = build_discriminator(r, trainer.img_channels).train().to(dev)
        self.layers = list(r.model.nce_layers)
        self.F = PatchSampleMLP(self.G.feature_channels(self.layers), r.model.mlp_dim).train().to(dev)
        from gancli.nets.image2image import init_weights

        init_weights(self.F)
        self.optimizer_lrs = {"G": t.g_lr, "D": t.d_lr}
        adam = dict(betas=tuple(t.betas), eps=t.eps)
        self.opt = {"G": torch.optim.Adam(itertools.chain(self.G.parameters(), self.F.parameters()), lr=t.g_lr, **adam),
                    "D": torch.optim.Adam(self.D.parameters(), lr=t.d_lr, **adam)}
        self.loss = r.loss

    def modules(self):
        return {"G": self.G, "D": self.D, "F": self.F}

    def optimizers(self):
        return self.opt

    def nce(self, src: torch.Tensor, out: torch.Tensor, flipped: bool, gen: torch.Generator) -> torch.Tensor:
        L = self.loss
        feat_q = self.G(out, self.layers)
        if flipped:
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        feat_k = self.G(src, self.layers)
        k, ids = self.F(feat_k, L.nce_patches, gen=gen)
        q, _ = self.F(feat_q, L.nce_patches, ids)
        total = sum(patch_nce_loss(fq, fk, src.shape[0], L.nce_tau).mean() * L.nce_weight for fq, fk in zip(q, k))
        return total / len(self.layers)

    def step(self, stats, gen) -> None:
        a, b = self.trainer.next_batch()
        L = self.loss
        real = torch.cat([a, b]) if L.nce_identity else a
        flipped = L.flip_equivariance and float(torch.rand((), generator=gen, device=gen.device)) < 0.5
        if flipped:
            real = torch.flip(real, [3])
        fake = self.G(real)
        fake_B, idt_B = fake[: len(a)], (fake[len(a):] if L.nce_identity else None)

        self.D.requires_grad_(True)
        loss_D = 0.5 * (gan_target_loss(self.D(fake_B.detach()), False, L.kind) + gan_target_loss(self.D(b), True, L.kind))
        self.update(self.opt["D"], loss_D, self.D)
        self.D.requires_grad_(False)

        loss_gan = gan_target_loss(self.D(fake_B), True, L.kind) * L.gan_weight
        loss_nce = self.nce(a, fake_B, flipped, gen) if L.nce_weight > 0 else torch.zeros((), device=a.device)
        if L.nce_identity and L.nce_weight > 0:
            loss_nce_y = self.nce(b, idt_B, flipped, gen)
            stats.add("loss/NCE_Y", loss_nce_y)
            loss_nce = 0.5 * (loss_nce + loss_nce_y)
        self.update(self.opt["G"], loss_gan + loss_nce, self.G, self.F)
        stats.add("loss/D", loss_D)
        stats.add("loss/G", loss_gan)
        stats.add("loss/NCE", loss_nce)

    def grid_columns(self, A, B):
        """input A | G(A) | a domain-B image (unpaired: not A's counterpart) | G(B) (the identity)."""
        return [A, self.G(A), B, self.G(B)]
