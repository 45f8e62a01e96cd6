"""DCGAN networks (Radford et al. 2016, Sec. 3 and Fig. 1).

G: z [N, z_dim] (and a one-hot class, concatenated, for ACGAN) -> a 4x4 map (b x b, b in 4..7, for
sizes b * 2^k that are not powers of two: 6x6 for 48 px) by a transposed convolution, then transposed convolutions of kernel 4 and stride 2 that double the size and halve the
channels, each followed by batch norm and ReLU; the output layer has no batch norm and ends in tanh.
D: strided convolutions (kernel 4, stride 2) with LeakyReLU 0.2, batch norm on every layer but the
first, down to 4x4 (b x b), then a 4x4 (b x b) convolution to one logit (and, for ACGAN, a linear class head on the
same features). Weights are drawn from N(0, 0.02); batch-norm gains from N(1, 0.02) (the reference
code's `weights_init`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.errors import UserError
from gancli.families.base import doubling_base, doubling_sizes


def base_and_levels(img_resolution: int) -> tuple[int, int]:
    """(b, n) with img_resolution = b * 2^n, b in 4..7, n >= 1: G's first map is b x b and D's last (4 for
    the powers of two, as in the paper; 6 for 48 px, 5 for 40, ...)."""
    b = doubling_base(img_resolution)
    if b is None:
        raise UserError(f"data.resolution {img_resolution}: a DCGAN grows from a 4x4 to 7x7 map by doubling "
                        f"(b x 2^k: {', '.join(map(str, doubling_sizes(64)))}, ...)")
    return b, int(round(math.log2(img_resolution // b)))


def dcgan_init_(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions and linear layers, N(1, 0.02) gains and zero biases for norms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100,  # latent size
                 c_dim: int = 0,  # classes (one-hot, concatenated to z); 0: unconditional
                 img_resolution: int = 64,  # output size: b * 2^k with b in 4..7 (4 for powers of two; 48 = 6 * 2^3)
                 img_channels: int = 3,  # output channels
                 ch: int = 64):  # channels of the last hidden layer; doubled per layer toward the b x b map
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, img_resolution, img_channels
        b, n = base_and_levels(img_resolution)
        widths = [ch * 2 ** (n - 1 - i) for i in range(n)]  # b x b ... res/2
        # z as a 1x1 map -> b x b: a transposed convolution of kernel b (the paper's 4x4 projection when b is 4)
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim + c_dim, widths[0], b, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], img_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, **_) -> torch.Tensor:
        if self.c_dim:
            z = torch.cat([z, c.to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, c_dim: int = 0,  # classes of ACGAN's auxiliary classifier head; 0: none
                 img_resolution: int = 64,  # input size: b * 2^k with b in 4..7, as the generator's
                 img_channels: int = 3,  # input channels
                 ch: int = 64,  # channels after the first layer; doubled per layer toward the b x b map
                 norm: str = "batch"):  # 'batch', 'layer' (one group norm group: per-sample), 'none'
        super().__init__()
        self.c_dim, self.img_resolution = c_dim, img_resolution
        b, n = base_and_levels(img_resolution)
        widths = [ch * 2**i for i in range(n)]  # res/2 ... b x b
        layers: list[nn.Module] = [nn.Conv2d(img_channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(cout))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, cout))
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], 1, b, 1, 0, bias=False)  # the b x b map -> one logit (4x4 in the paper)
        self.classifier = nn.Linear(widths[-1] * b * b, c_dim) if c_dim else None
        dcgan_init_(self)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits [N, 1], class logits [N, c_dim] or None) from one pass over the features."""
        h = self.features(x)
        cls = self.classifier(h.flatten(1)) if self.classifier is not None else None
        return self.out(h).flatten(1), cls

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.heads(x)[0]
