"""Networks shared by the image-to-image families (pix2pix, CycleGAN, CUT).

- `UNetGenerator`: pix2pix's U-Net (Isola et al. 2017, Sec. 3.2.1 and Appendix 6.1.1): an encoder of
  stride-2 4x4 convolutions down to 1x1, a mirrored decoder, and a skip connection from every encoder
  level to the decoder level of the same size (concatenated channels).
- `PatchGAN`: the "70x70 PatchGAN" (pix2pix Sec. 3.2.2, Appendix 6.1.2; used unchanged by CycleGAN
  and CUT): C64-C128-C256-C512 then a 1-channel convolution; each output scores one 70x70 patch.
- `ResnetGenerator`: Johnson et al.'s residual translator as CycleGAN uses it (Zhu et al. 2017,
  Appendix 7.2: c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3) with instance norm and reflection
  padding; with `antialias` the down- and up-sampling are blurred (CUT's default, Park et al. 2020,
  after Zhang 2019), and `forward(x, layers=...)` returns the encoder features PatchNCE reads.

The layer lists follow the reference implementations' `nn.Sequential` order, so layer indices such as
CUT's `nce_layers: [0, 4, 8, 12, 16]` mean the same features: 0 is the reflection-padded input, 4 and
8 the two downsampling convolutions, 12 and 16 the outputs of the first and fifth residual blocks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def norm_layer(norm: str, channels: int) -> nn.Module:
    """'batch' (learned affine, running statistics), 'instance' (no affine, no running statistics: the
    reference default), or 'none'."""
    layers = {"batch": lambda: nn.BatchNorm2d(channels, affine=True, track_running_stats=True),
              "instance": lambda: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False),
              "none": nn.Identity}
    if norm not in layers:
        raise ValueError(f"unknown norm {norm!r}")
    return layers[norm]()


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Gaussian init N(0, 0.02) of convolutions and linear layers, N(1, 0.02) of batch-norm scales, zero
    biases (pix2pix Appendix 6.2, CycleGAN Appendix 7.1). Draws from torch's global generator."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


# --------------------------------------------------------------------------------------------------
# U-Net


class UNetBlock(nn.Module):
    """One level of the U-Net: down (conv 4x4 stride 2), the inner levels, up (transposed conv), and
    the skip: a non-outermost level returns cat([its input, its decoded output]) on channels."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None, submodule: nn.Module | None = None,
                 *, outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False,
                 out_channels: int | None = None):
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        bias = norm != "batch"  # batch norm has its own shift
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, out_channels or outer, 4, stride=2, padding=1)
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), submodule, nn.ReLU(True), up,
                      norm_layer(norm, outer)] + ([nn.Dropout(0.5)] if dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # the skip connection


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: `num_downs` halvings (8 for 256 px: 'unet_256'), channels ngf, 2ngf, 4ngf, then
    8ngf; dropout 0.5 in the decoder levels of 8ngf below the innermost (three of them at 256 px),
    which is the generator's noise (pix2pix Sec. 3.1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError("the U-Net needs at least 5 downsamplings")
        self.num_downs, self.in_channels, self.out_channels = num_downs, in_channels, out_channels
        block = UNetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UNetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UNetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UNetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UNetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UNetBlock(ngf, ngf, in_channels=in_channels, submodule=block, outermost=True, norm=norm,
                               out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------------
# PatchGAN


class PatchGAN(nn.Module):
    """Markovian discriminator: `n_layers` stride-2 4x4 convolutions (ndf, 2ndf, 4ndf, capped at 8ndf),
    one stride-1 4x4 convolution, and a 1-channel stride-1 4x4 output, all with padding 1. Raw scores
    (no sigmoid): the loss decides. With n_layers 3 every output sees a 70x70 patch."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def receptive_field(self) -> int:
        """Input pixels on a side that one output sees: 1 + sum_i (k_i - 1) * prod_{j<i} s_j."""
        size, jump = 1, 1
        for m in self.model:
            if isinstance(m, nn.Conv2d):
                size += (m.kernel_size[0] - 1) * jump
                jump *= m.stride[0]
        return size


# --------------------------------------------------------------------------------------------------
# ResNet generator


class BlurDown(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 1, blur [1,2,1] x [1,2,1] / 16, keep every other
    pixel (CUT's `Downsample`)."""

    def __init__(self, channels: int):
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("filt", (f[:, None] * f[None, :] / 16).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class BlurUp(nn.Module):
    """Anti-aliased 2x upsampling: replicate-pad 1, transposed convolution with the [1,3,3,1] x [1,3,3,1]
    filter scaled to sum 4 (each output is a blur of the zero-stuffed input), cropped to 2H x 2W
    (CUT's `Upsample`)."""

    def __init__(self, channels: int):
        super().__init__()
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        filt = f[:, None] * f[None, :]
        self.register_buffer("filt", (filt / filt.sum() * 4).expand(channels, 1, 4, 4).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), self.filt, stride=2, padding=2,
                               groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]


class ResnetBlock(nn.Module):
    """x + (reflect-pad, conv 3x3, norm, ReLU, reflect-pad, conv 3x3, norm)(x)."""

    def __init__(self, dim: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
                                   nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias),
                                   norm_layer(norm, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two downsamplings (to 2ngf, 4ngf), `n_blocks` residual blocks, two upsamplings, c7s1-3,
    tanh. Without `antialias` (CycleGAN) the resampling is a stride-2 conv / transposed conv; with it
    (CUT) a stride-1 conv followed by `BlurDown`, and `BlurUp` followed by a stride-1 conv."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", antialias: bool = False):
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf),
                                   nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            if antialias:
                layers += [nn.Conv2d(c, c * 2, 3, stride=1, padding=1, bias=bias), norm_layer(norm, c * 2), nn.ReLU(True),
                           BlurDown(c * 2)]
            else:
                layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), norm_layer(norm, c * 2), nn.ReLU(True)]
        self.encoder_end = len(layers) + n_blocks  # layers [0, encoder_end) are the encoder PatchNCE may read
        layers += [ResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            if antialias:
                layers += [BlurUp(c), nn.Conv2d(c, c // 2, 3, stride=1, padding=1, bias=bias), norm_layer(norm, c // 2),
                           nn.ReLU(True)]
            else:
                layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                           norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
        """The translated image; with `layers`, the features after those layers (encoder only)."""
        if layers is None:
            return self.model(x)
        feats, last = [], max(layers)
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
            if i == last:
                break
        return feats

    def feature_channels(self, layers: list[int]) -> list[int]:
        """Channels of the features at `layers` (no forward pass)."""
        out, c = [], self.in_channels
        for i, layer in enumerate(self.model):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                c = layer.out_channels
            if i in layers:
                out.append(c)
        return out
