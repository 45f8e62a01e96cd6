"""The StyleGAN (v1) training step: non-saturating logistic loss, R1 on reals every step (no lazy
regularization in the v1 paper), style mixing regularization (Sec. 3.1), the running average W, on
top of the shared progressive-growing schedule (`gancli.train.growing`)."""

from __future__ import annotations

import torch

from gancli.losses import d_logistic_fake, d_logistic_real, g_nonsaturating, r1_penalty
from gancli.train.growing import ProgressiveTraining


def build_networks(recipe, c_dim: int, img_channels: int = 3):
    """(G, D) for a stylegan recipe, freshly initialised (G first: the order fixes the weights of a seed)."""
    from gancli.families.stylegan.nets import StyleDiscriminator, StyleGenerator

    m, res, start = recipe.model, recipe.data.resolution, recipe.train.start_res
    G = StyleGenerator(z_dim=m.z_dim, c_dim=c_dim, w_dim=m.w_dim, img_resolution=res, img_channels=img_channels,
                       mapping_layers=m.mapping_layers, mapping_lr_multiplier=m.mapping_lr_multiplier,
                       w_avg_beta=m.w_avg_beta, channel_base=m.channel_base, channel_max=m.channel_max, start_res=start,
                       adain_eps=m.adain_eps, bias_before_blur=m.bias_before_blur)
    D = StyleDiscriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, channel_base=m.channel_base,
                           channel_max=m.channel_max, start_res=start, mbstd_group_size=m.mbstd_group_size)
    return G, D


def mixed_ws(G, z: torch.Tensor, res: int, prob: float, update_emas: bool) -> torch.Tensor:
    """ws for z with style mixing: with probability `prob` the layers from a cutoff drawn uniformly in
    [1, layers in use) take the w of a second latent (official: cutoff over the current resolution's
    layers; torch's global RNG)."""
    ws = G.mapping(z, update_emas=update_emas)
    layers = 2 * (int(res).bit_length() - 2)  # layers of W in use at this resolution
    if prob > 0 and layers > 1:
        cutoff = int(torch.randint(1, layers, []))
        if float(torch.rand([])) < prob:
            other = G.mapping(torch.randn_like(z))
            ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
    return ws


class StyleGANTraining(ProgressiveTraining):
    def build_networks(self):
        tr = self.trainer
        return build_networks(tr.recipe, tr.c_dim, tr.img_channels)

    def _fakes(self, z, update_emas):
        res, _ = self.G.growth()
        ws = mixed_ws(self.G, z, res, self.trainer.recipe.loss.style_mixing_prob, update_emas)
        return self.G.synthesis(ws, noise_mode="random", upsample=False)

    def generate_fakes(self, z):
        return self._fakes(z, update_emas=False)

    def d_loss(self, reals, fakes, stats):
        gamma = self.trainer.recipe.loss.r1_gamma
        fake_logits = self.D(fakes)
        reals = reals.detach().requires_grad_(gamma > 0)
        real_logits = self.D(reals)
        loss = d_logistic_fake(fake_logits) + d_logistic_real(real_logits)
        stats.add("loss/D", loss)
        stats.add("scores/real", real_logits)
        stats.add("scores/fake", fake_logits)
        if gamma > 0:
            penalty = r1_penalty(real_logits, reals)
            stats.add("loss/r1_penalty", penalty)
            loss = loss + penalty[:, None] * (gamma / 2)
        return loss.mean()

    def g_loss(self, z, stats):
        loss = g_nonsaturating(self.D(self._fakes(z, update_emas=True)))
        stats.add("loss/G", loss)
        return loss.mean()
