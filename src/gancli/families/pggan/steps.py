"""The PGGAN training step: WGAN-GP with the drift term, one D and one G update per minibatch
(PGGAN appendix A.1; the official `D_wgangp_acgan` with n_critic 1), on top of the shared
progressive-growing schedule (`gancli.train.growing`)."""

from __future__ import annotations

import torch

from gancli.train.growing import ProgressiveTraining


def build_networks(recipe, c_dim: int, img_channels: int = 3):
    """(G, D) for a pggan recipe, freshly initialised (G first: the order fixes the weights of a seed)."""
    from gancli.families.pggan.nets import PGDiscriminator, PGGenerator

    m, res = recipe.model, recipe.data.resolution
    start = recipe.train.start_res
    G = PGGenerator(z_dim=m.z_dim, c_dim=c_dim, img_resolution=res, img_channels=img_channels,
                    channel_base=m.channel_base, channel_max=m.channel_max, start_res=start, use_pixel_norm=m.pixel_norm)
    D = PGDiscriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, channel_base=m.channel_base,
                        channel_max=m.channel_max, start_res=start, mbstd_group_size=m.mbstd_group_size)
    return G, D


def wgan_gp_d_loss(D, reals: torch.Tensor, fakes: torch.Tensor, *, gp_lambda: float, gp_target: float, drift: float,
                   stats=None) -> torch.Tensor:
    """Mean over the batch of D(fake) - D(real) + lambda / target^2 (||grad D(x_hat)|| - target)^2
    + drift D(real)^2, with x_hat = lerp(real, fake, u), u ~ U(0, 1) per sample (torch's global RNG)."""
    real_scores = D(reals)
    fake_scores = D(fakes)
    loss = fake_scores - real_scores
    u = torch.rand([reals.shape[0], 1, 1, 1], device=reals.device, dtype=reals.dtype)
    mixed = torch.lerp(reals, fakes, u).requires_grad_(True)
    (grads,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
    norms = grads.flatten(1).norm(dim=1, keepdim=True)
    penalty = (norms - gp_target).square()
    loss = loss + penalty * (gp_lambda / gp_target**2) + real_scores.square() * drift
    if stats is not None:
        stats.add("loss/D", loss)
        stats.add("loss/gp", penalty)
        stats.add("scores/real", real_scores)
        stats.add("scores/fake", fake_scores)
    return loss.mean()


class PGGANTraining(ProgressiveTraining):
    def build_networks(self):
        tr = self.trainer
        return build_networks(tr.recipe, tr.c_dim, tr.img_channels)

    def generate_fakes(self, z):
        return self.G(z, upsample=False)

    def d_loss(self, reals, fakes, stats):
        loss = self.trainer.recipe.loss
        return wgan_gp_d_loss(self.D, reals, fakes, gp_lambda=loss.gp_lambda, gp_target=loss.gp_target,
                              drift=loss.drift, stats=stats)

    def g_loss(self, z, stats):
        scores = self.D(self.G(z, upsample=False))
        stats.add("loss/G", -scores)
        return -scores.mean()
