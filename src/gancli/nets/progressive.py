"""Layers of the progressively grown networks (PGGAN, Karras et al. 2018; StyleGAN, Karras et al. 2019).

Written as the PGGAN paper (Sec. 4.1) describes them: weights are drawn from N(0, 1) and scaled at run
time by He's constant `gain / sqrt(fan_in)` (equalized learning rate; the gain sits in the weight
scale, before the bias and the activation, as in the official code), nearest-neighbour upsampling,
2x2 average-pool downsampling, and the [1, 2, 1] blur of StyleGAN (Sec. 2 and appendix C).

A grown network carries its growth state in two buffers, so a snapshot renders as it trained:
`growth_res` (the current output resolution) and `growth_alpha` (the fade-in weight of the newest
block, 1 = fully in).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PGGAN's pixelwise feature vector normalization (Sec. 4.2): x / sqrt(mean_c x^2 + eps)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def upsample2x(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor (each pixel becomes a factor x factor block)."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def downsample2x(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling over factor x factor blocks (the box filter of PGGAN's lower-resolution data)."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor)


def resize_to(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Nearest upsampling or average-pool downsampling to `resolution` (powers of two apart)."""
    size = x.shape[-1]
    if size < resolution:
        return upsample2x(x, resolution // size)
    return downsample2x(x, size // resolution)


class Blur(nn.Module):
    """StyleGAN's low-pass filter: the separable [1, 2, 1] kernel, normalized to sum 1, per channel."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = k[:, None] * k[None, :]
        self.register_buffer("kernel", (k / k.sum())[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel.expand(c, 1, 3, 3), padding=1, groups=c)


class EqualizedLinear(nn.Module):
    """Dense layer with equalized learning rate: y = x (W * gain * lr_mul / sqrt(in))^T + b * lr_mul."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2), lr_multiplier: float = 1.0,
                 bias: bool = True, bias_init: float = 0.0):
        """
        Args:
            in_features, out_features: sizes.
            gain:          He's gain (sqrt(2) before a leaky ReLU, 1 for the output layers).
            lr_multiplier: learning-rate multiplier (0.01 in StyleGAN's mapping network): weights are
                           stored divided by it and used multiplied by it.
            bias:          add a learned bias.
            bias_init:     the bias's initial value.
        """
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.bias_gain if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_gain, b)


class EqualizedConv2d(nn.Module):
    """Square "same" convolution with equalized learning rate (weight scale gain / sqrt(in * k * k))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = math.sqrt(2),
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with slope 0.2 (both papers)."""
    return F.leaky_relu(x, 0.2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """PGGAN's minibatch standard deviation (Sec. 3): per group of `group_size` samples, the standard
    deviation of every feature over the group, averaged into one value, appended as one channel."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch std: batch {n} is not a multiple of the group size {g}")
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, c, h, w]
    y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # sample i_member * (n/g) + i_group
    return torch.cat([x, y], dim=1)


def channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: min(channel_base / resolution, channel_max) (both papers' fmap_base
    8192 with nf(log2(res) - 1), i.e. channel_base 16384: 512 up to 32 px, then halving to 16 at 1024 px)."""
    return max(1, min(channel_base // resolution, channel_max))


class Growing(nn.Module):
    """The growth state of a progressively grown network, as buffers (saved with the weights)."""

    def _init_growth(self, img_resolution: int, start_res: int) -> None:
        self.img_resolution = img_resolution
        self.start_res = start_res
        self.register_buffer("growth_res", torch.tensor(img_resolution, dtype=torch.int64))
        self.register_buffer("growth_alpha", torch.tensor(1.0))

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Grow (or shrink) to `resolution` with the newest block faded in by `alpha` in [0, 1]."""
        if resolution not in self.resolutions() or not 0 <= alpha <= 1:
            raise ValueError(f"growth state {resolution} px, alpha {alpha}: resolution must be one of "
                             f"{self.resolutions()} and alpha in [0, 1]")
        self.growth_res.fill_(int(resolution))
        self.growth_alpha.fill_(float(alpha))

    def growth(self) -> tuple[int, float]:
        """(resolution, alpha); alpha is 1 at the first resolution (nothing to fade from)."""
        res = int(self.growth_res)
        alpha = float(self.growth_alpha)
        return res, (1.0 if res <= self.start_res else alpha)

    def resolutions(self) -> list[int]:
        return [2**k for k in range(int(math.log2(self.start_res)), int(math.log2(self.img_resolution)) + 1)]
