"""CycleGAN's networks: two ResNet generators (G_AB: A -> B, G_BA: B -> A) and two PatchGANs (D_A judges
domain A, D_B domain B); the shared blocks of `gancli.nets.image2image`, and the image history pool."""

from __future__ import annotations

import torch

from gancli.nets.image2image import PatchGAN, ResnetGenerator, init_weights


def build_generator(recipe, img_channels: int = 3) -> ResnetGenerator:
    m = recipe.model
    return init_weights(ResnetGenerator(img_channels, img_channels, ngf=m.ngf, n_blocks=m.n_blocks, norm=m.norm))


def build_discriminator(recipe, img_channels: int = 3) -> PatchGAN:
    m = recipe.model
    return init_weights(PatchGAN(img_channels, ndf=m.ndf, n_layers=m.d_layers, norm=m.norm))


class ImagePool:
    """The history of generated images D learns from (Shrivastava et al. 2017; CycleGAN Sec. 4).

    While the pool holds fewer than `size` images, each query image is stored and returned. Once full,
    each query image is, with probability 1/2, stored in place of a uniformly chosen pooled image, which
    is returned instead; otherwise it is returned as it is. Every image draws one uniform u and one slot
    index from `gen` (both drawn even when unused, so the stream of draws is fixed). `images` is
    training state (saved for an exact resume).
    """

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            u = float(torch.rand((), generator=gen, device=gen.device))
            slot = int(torch.randint(self.size, (), generator=gen, device=gen.device))
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif u > 0.5:
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"images": torch.stack(self.images).cpu() if self.images else torch.zeros(0)}

    def load_state_dict(self, state: dict, device) -> None:
        images = state["images"]
        self.images = [im.to(device) for im in images] if images.numel() else []
