"""PGGAN's networks (Karras et al. 2018, Table 2 and Sec. 4): a generator and a discriminator that grow.

Both hold every resolution's layers from the start; the growth state (`growth_res`, `growth_alpha`
buffers, `gancli.nets.progressive.Growing`) says how far they run. The generator always returns
`img_resolution` images: below it, its output is upsampled (nearest), so a snapshot taken while it
grows renders at the final size, as the official code feeds full-size images to every level of detail.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.nets.progressive import (
    EqualizedConv2d,
    EqualizedLinear,
    Growing,
    channels,
    downsample2x,
    lrelu,
    minibatch_stddev,
    pixel_norm,
    resize_to,
    upsample2x,
)


class PGGenerator(Growing):
    """z -> image. 4x4: dense (z to 4x4 maps), conv 3x3; each block: upsample, conv 3x3, conv 3x3, all
    with leaky ReLU and pixel norm; toRGB (1x1, linear) at every resolution.

    Parameters: `dense.*`, `conv4.*`, `b{res}.conv0.*`, `b{res}.conv1.*`, `torgb{res}.*`."""

    def __init__(self, z_dim: int = 512, c_dim: int = 0, img_resolution: int = 1024, img_channels: int = 3,
                 channel_base: int = 16384, channel_max: int = 512, start_res: int = 4, use_pixel_norm: bool = True):
        """
        Args:
            z_dim:          latent size (512).
            c_dim:          class labels (0: this family is unconditional; kept for the generator API).
            img_resolution: final output resolution.
            img_channels:   output channels.
            channel_base:   feature maps at resolution r: min(channel_base / r, channel_max).
            channel_max:    upper bound on feature maps.
            start_res:      first resolution of progressive growing (alpha is 1 there).
            use_pixel_norm: pixelwise feature normalization after every conv (Sec. 4.2).
        """
        super().__init__()
        self.z_dim, self.c_dim, self.img_channels = z_dim, c_dim, img_channels
        self.use_pixel_norm = use_pixel_norm
        self._init_growth(img_resolution, start_res)
        nf = lambda r: channels(r, channel_base, channel_max)  # noqa: E731
        # The official 4x4 dense layer uses gain sqrt(2) / 4 (one 4x4 "transposed convolution").
        self.dense = EqualizedLinear(z_dim, nf(4) * 16, gain=math.sqrt(2) / 4)
        self.conv4 = EqualizedConv2d(nf(4), nf(4), 3)
        for res in self._all_res():
            if res > 4:
                setattr(self, f"b{res}", nn.ModuleDict({"conv0": EqualizedConv2d(nf(res // 2), nf(res), 3),
                                                        "conv1": EqualizedConv2d(nf(res), nf(res), 3)}))
            setattr(self, f"torgb{res}", EqualizedConv2d(nf(res), img_channels, 1, gain=1))

    def _all_res(self) -> list[int]:
        return [2**k for k in range(2, int(math.log2(self.img_resolution)) + 1)]

    def _norm(self, x):
        return pixel_norm(x) if self.use_pixel_norm else x

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, upsample: bool = True, **_) -> torch.Tensor:
        """
        Args:
            z:        latents [N, z_dim].
            c:        ignored (unconditional).
            upsample: return `img_resolution` images (nearest upsampling); False: the current resolution.
        """
        res, alpha = self.growth()
        x = self._norm(z)  # "we normalize the latent vectors" (Sec. 4.2)
        x = self._norm(lrelu(self.dense(x).reshape(z.shape[0], -1, 4, 4)))
        x = self._norm(lrelu(self.conv4(x)))
        old = None
        for r in self._all_res()[1:]:
            if r > res:
                break
            if r == res and alpha < 1:
                old = getattr(self, f"torgb{r // 2}")(x)  # the previous output, faded out
            block = getattr(self, f"b{r}")
            x = self._norm(lrelu(block["conv0"](upsample2x(x))))
            x = self._norm(lrelu(block["conv1"](x)))
        img = getattr(self, f"torgb{res}")(x)
        if old is not None:
            img = torch.lerp(upsample2x(old), img, alpha)
        return resize_to(img, self.img_resolution) if upsample else img


class PGDiscriminator(Growing):
    """image -> score. fromRGB (1x1, leaky ReLU) at every resolution; each block: conv 3x3, conv 3x3
    (both leaky ReLU), 2x2 average pool; at 4x4: minibatch stddev, conv 3x3, dense, dense to 1.

    Takes images at any resolution >= its current one (average-pooled down to it), so fakes and reals
    at the final size and at the current one score the same.

    Parameters: `fromrgb{res}.*`, `b{res}.conv0.*`, `b{res}.conv1.*`, `conv4.*`, `fc.*`, `out.*`."""

    def __init__(self, c_dim: int = 0, img_resolution: int = 1024, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, start_res: int = 4, mbstd_group_size: int = 4):
        super().__init__()
        self.c_dim, self.img_channels, self.mbstd_group_size = c_dim, img_channels, mbstd_group_size
        self._init_growth(img_resolution, start_res)
        nf = lambda r: channels(r, channel_base, channel_max)  # noqa: E731
        for res in PGGenerator._all_res(self):
            setattr(self, f"fromrgb{res}", EqualizedConv2d(img_channels, nf(res), 1))
            if res > 4:
                setattr(self, f"b{res}", nn.ModuleDict({"conv0": EqualizedConv2d(nf(res), nf(res), 3),
                                                        "conv1": EqualizedConv2d(nf(res), nf(res // 2), 3)}))
        self.conv4 = EqualizedConv2d(nf(4) + (1 if mbstd_group_size > 1 else 0), nf(4), 3)
        self.fc = EqualizedLinear(nf(4) * 16, nf(4))
        self.out = EqualizedLinear(nf(4), 1, gain=1)

    _all_res = PGGenerator._all_res

    def block(self, r: int, x: torch.Tensor) -> torch.Tensor:
        b = getattr(self, f"b{r}")
        return downsample2x(lrelu(b["conv1"](lrelu(b["conv0"](x)))))

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        res, alpha = self.growth()
        img = resize_to(img, res) if img.shape[-1] > res else img
        if img.shape[-1] != res:
            raise ValueError(f"discriminator at {res} px got {img.shape[-1]} px images")
        x = lrelu(getattr(self, f"fromrgb{res}")(img))
        r = res
        if r > 4:
            x = self.block(r, x)
            if alpha < 1:  # the old fromRGB on the downsampled image, faded out
                x = torch.lerp(lrelu(getattr(self, f"fromrgb{r // 2}")(downsample2x(img))), x, alpha)
            r //= 2
        while r > 4:
            x = self.block(r, x)
            r //= 2
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size)
        x = lrelu(self.conv4(x))
        x = lrelu(self.fc(x.flatten(1)))
        return self.out(x)
