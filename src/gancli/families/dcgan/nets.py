"""DCGAN networks (Radford et al. 2016, Sec. 3 and Fig. 1).

G: z [N, z_dim] (and a one-hot class, concatenated, for ACGAN) -> a 4x4 map by a transposed
convolution, then transposed convolutions of kernel 4 and stride 2 that double the size and halve the
channels, each followed by batch norm and ReLU; the output layer has no batch norm and ends in tanh.
D: strided convolutions (kernel 4, stride 2) with LeakyReLU 0.2, batch norm on every layer but the
first, down to 4x4, then a 4x4 convolution to one logit (and, for ACGAN, a linear class head on the
same features). Weights are drawn from N(0, 0.02); batch-norm gains from N(1, 0.02) (the reference
code's `weights_init`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.errors import UserError


def _levels(img_resolution: int) -> int:
    n = int(round(math.log2(img_resolution / 4)))
    if n < 1 or 4 * 2**n != img_resolution:
        raise UserError(f"data.resolution {img_resolution}: a DCGAN grows from 4x4 by doubling (8, 16, 32, 64, ...)")
    return n


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
                 img_resolution: int = 64,  # output size: 4 * 2^k
                 img_channels: int = 3,
                 ch: int = 64):  # channels of the last hidden layer; doubled per layer toward 4x4
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, img_resolution, img_channels
        n = _levels(img_resolution)
        widths = [ch * 2 ** (n - 1 - i) for i in range(n)]  # 4x4 ... res/2
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim + c_dim, widths[0], 4, 1, 0, bias=False),
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
                 img_resolution: int = 64,
                 img_channels: int = 3,
                 ch: int = 64,  # channels after the first layer; doubled per layer toward 4x4
                 norm: str = "batch"):  # 'batch', 'layer' (one group norm group: per-sample), 'none'
        super().__init__()
        self.c_dim, self.img_resolution = c_dim, img_resolution
        n = _levels(img_resolution)
        widths = [ch * 2**i for i in range(n)]  # res/2 ... 4x4
        layers: list[nn.Module] = [nn.Conv2d(img_channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(cout))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, cout))
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)
        self.classifier = nn.Linear(widths[-1] * 16, c_dim) if c_dim else None
        dcgan_init_(self)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits [N, 1], class logits [N, c_dim] or None) from one pass over the features."""
        h = self.features(x)
        cls = self.classifier(h.flatten(1)) if self.classifier is not None else None
        return self.out(h).flatten(1), cls

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.heads(x)[0]
