"""CUT's networks: the ResNet generator (with anti-aliased resampling) and the PatchGAN of
`gancli.nets.image2image`, and `PatchSampleMLP`, the head that samples patches of G's encoder
features and embeds them for PatchNCE."""

from __future__ import annotations

import torch
from torch import nn

from gancli.nets.image2image import PatchGAN, ResnetGenerator, init_weights


def build_generator(recipe, img_channels: int = 3) -> ResnetGenerator:
    m = recipe.model
    return init_weights(ResnetGenerator(img_channels, img_channels, ngf=m.ngf, n_blocks=m.n_blocks, norm=m.norm,
                                        antialias=m.antialias))


def build_discriminator(recipe, img_channels: int = 3) -> PatchGAN:
    m = recipe.model
    return init_weights(PatchGAN(img_channels, ndf=m.ndf, n_layers=m.d_layers, norm=m.norm))


class PatchSampleMLP(nn.Module):
    """Per feature layer: take the same `num_patches` random locations of every image (one draw per
    layer and step), embed each location's feature vector with Linear-ReLU-Linear (`dim` channels) and
    L2-normalise it (Park et al. 2020, Sec. 3.2; the reference 'mlp_sample' head)."""

    def __init__(self, channels: list[int], dim: int = 256):
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)

    def forward(self, feats: list[torch.Tensor], num_patches: int, patch_ids: list[torch.Tensor] | None = None,
                gen: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Embedded patches [B * P, dim] per layer, and the locations used (pass them back for the queries)."""
        out, ids = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            b, c, h, w = feat.shape
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # [B, HW, C]
            if patch_ids is not None:
                idx = patch_ids[i]
            else:
                idx = torch.randperm(h * w, generator=gen, device=gen.device if gen is not None else "cpu")
                idx = idx[: min(num_patches, h * w)].to(feat.device)
            x = mlp(flat[:, idx, :].flatten(0, 1))
            out.append(x / (x.norm(p=2, dim=1, keepdim=True) + 1e-7))
            ids.append(idx)
        return out, ids
