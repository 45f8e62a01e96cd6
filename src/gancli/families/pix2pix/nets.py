"""pix2pix's networks: a U-Net generator and a PatchGAN on the concatenated (input, output) pair.
Both are the shared blocks of `gancli.nets.image2image` (also used by CycleGAN and CUT)."""

from __future__ import annotations

from gancli.nets.image2image import PatchGAN, UNetGenerator, init_weights


def build_generator(recipe, img_channels: int = 3) -> UNetGenerator:
    m = recipe.model
    return init_weights(UNetGenerator(img_channels, img_channels, num_downs=m.num_downs, ngf=m.ngf, norm=m.norm,
                                      dropout=m.dropout))


def build_discriminator(recipe, img_channels: int = 3) -> PatchGAN:
    m = recipe.model
    return init_weights(PatchGAN(2 * img_channels, ndf=m.ndf, n_layers=m.d_layers, norm=m.norm))
