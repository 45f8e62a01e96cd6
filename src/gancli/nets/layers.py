"""Building blocks shared by the style-based networks (StyleGAN2 and relatives).

Every trainable layer uses the *equalized learning rate* of Karras et al. (2018): weights are stored
with unit variance and scaled by `1 / sqrt(fan_in)` (times a learning-rate multiplier) at run time, so
that Adam's per-parameter step sizes act alike on every layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gancli.ops import bias_act, conv2d_resample, setup_filter
from gancli.ops.bias_act import activation_spec


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` to unit mean square along `dim` (the "pixel norm" applied to z and to embedded labels).

    Args:
        x:   Input tensor.
        dim: Axis to normalise over.
        eps: Added to the mean square to avoid division by zero.
    """
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate, bias and activation.

    Parameters: `weight [out_features, in_features]`, `bias [out_features]` (when `bias`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ):
        """
        Args:
            in_features:   Number of input features.
            out_features:  Number of output features.
            bias:          Add a learned bias before the activation.
            activation:    Activation name ('linear', 'lrelu', ... see `gancli.ops.ACTIVATIONS`).
            lr_multiplier: Learning-rate multiplier: the weights are stored divided by it and used
                           multiplied by it, so their effective learning rate is scaled by it (0.01 in
                           the StyleGAN mapping network).
            bias_init:     Initial value of the bias (1 for the style affines, so styles start at 1).
        """
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        activation_spec(activation)  # fail early on an unknown name
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear":
            return torch.nn.functional.linear(x, w, b)
        return bias_act(torch.nn.functional.linear(x, w), b, act=self.activation)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
        )


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR up/downsampling, bias and activation.

    Parameters: `weight [out, in, k, k]`, `bias [out]` (when `bias`); buffer `resample_filter`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ):
        """
        Args:
            in_channels:     Number of input channels.
            out_channels:    Number of output channels.
            kernel_size:     Width and height of the (square) kernel; padding keeps the size "same".
            bias:            Add a learned bias before the activation.
            activation:      Activation name ('linear', 'lrelu', ...).
            up:              Integer upsampling factor (FIR upsampling around the convolution).
            down:            Integer downsampling factor.
            resample_filter: Taps of the low-pass filter used for resampling.
            conv_clamp:      Clamp the output to +-this value (None = no clamping).
            channels_last:   Store the weight in channels-last memory format.
            trainable:       False = weight and bias are buffers (frozen layers, e.g. Freeze-D).
        """
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = activation_spec(activation).gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).contiguous(
            memory_format=memory_format
        )
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            if bias_value is not None:
                self.register_buffer("bias", bias_value)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """
        Args:
            x:    Input `[batch, in_channels, height, width]`.
            gain: Extra output gain (also scales the clamp), e.g. sqrt(0.5) in residual blocks.
        """
        act_gain = self.act_gain * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        spec = activation_spec(self.activation)
        # act(x) * g == act(g * x) for linear/relu/lrelu: scale the weight and bias rather than the
        # activations, and let the convolution add the bias. Other activations take the general path.
        out_gain, post_gain = (act_gain, 1.0) if spec.homogeneous else (1.0, act_gain)
        w = (self.weight * (self.weight_gain * out_gain)).to(x.dtype)
        b = self.bias
        if b is not None:
            b = (b * out_gain if out_gain != 1 else b).to(x.dtype)
        x = conv2d_resample(
            x,
            w,
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),  # with upsampling, a true convolution avoids flipping the weight
            bias=b,
        )
        return bias_act(x, None, act=self.activation, gain=post_gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
            f"up={self.up}, down={self.down}"
        )


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    bias: torch.Tensor | None = None,
    gain: float = 1,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution (Karras et al. 2020, section 2.2).

    Each sample `n` convolves with its own weight `w'[n,o,i] = w[o,i] * s[n,i]`; with demodulation the
    weight is then rescaled to unit L2 norm per output channel, `w''[n,o] = w'[n,o] / ||w'[n,o]||`,
    which replaces AdaIN's instance normalisation without its droplet artefacts. The result is
    `gain * (conv(x, w'') + noise + bias)`.

    Args:
        x:               Input `[batch, in_channels, height, width]`.
        weight:          Shared weight `[out_channels, in_channels, kh, kw]` (equalized-lr gain included).
        styles:          Per-sample modulation `[batch, in_channels]`.
        noise:           Optional tensor added to the convolution output (broadcast).
        up:              Integer upsampling factor.
        down:            Integer downsampling factor.
        padding:         Padding of the (upsampled) input, see `conv2d_resample`.
        resample_filter: FIR filter for up/downsampling (from `setup_filter`).
        demodulate:      Apply weight demodulation.
        flip_weight:     True = correlation (like `conv2d`), False = convolution.
        fused_modconv:   True = fold the batch into the groups of one grouped convolution with
                         per-sample weights (the paper's implementation). False = scale the
                         activations before and after one shared-weight convolution, which computes
                         the same values and is much faster on CPU for batches above one.
        bias:            Optional `[out_channels]` added after the noise.
        gain:            Overall output gain (folded into the per-sample scales, so it costs nothing).

    Returns:
        `[batch, out_channels, out_height, out_width]`.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must be [{batch}, {in_channels}], got {list(styles.shape)}")

    # In float16, keep the intermediate products in range: demodulation undoes these scales anyway.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1 / np.sqrt(in_channels * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    # Per-sample output scale [N, O]: demodulation ||w[o] * s[n]||^-1, computed without building the
    # per-sample weights: ||w[o] * s[n]||^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2.
    out_scale = None
    if demodulate:
        out_scale = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        if gain != 1:
            out_scale = out_scale * gain
    if bias is not None and gain != 1:
        bias = bias * gain
    if noise is not None and gain != 1:
        noise = noise * gain

    if fused_modconv:
        # One grouped convolution, group n = sample n with its own weight.
        scale = styles.reshape(batch, 1, in_channels, 1, 1)
        if out_scale is not None:
            scale = scale * out_scale.reshape(batch, out_channels, 1, 1, 1)
        elif gain != 1:
            scale = scale * gain
        w = (weight.unsqueeze(0) * scale).reshape(batch * out_channels, in_channels, kh, kw)
        b = bias.to(x.dtype).repeat(batch) if bias is not None else None
        x = x.reshape(1, batch * in_channels, *x.shape[2:])
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            groups=batch,
            flip_weight=flip_weight,
            bias=b,
        )
        x = x.reshape(batch, out_channels, *x.shape[2:])
    else:
        # Modulate the activations, convolve with the shared weight, demodulate the output.
        x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
        x = conv2d_resample(
            x,
            weight.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            flip_weight=flip_weight,
        )
        if out_scale is None and gain != 1:
            out_scale = torch.full([batch, out_channels], float(gain), dtype=x.dtype, device=x.device)
        if out_scale is not None and bias is not None:
            x = torch.addcmul(
                bias.to(x.dtype).reshape(1, -1, 1, 1), x, out_scale.to(x.dtype).reshape(batch, -1, 1, 1)
            )
        elif out_scale is not None:
            x = x * out_scale.to(x.dtype).reshape(batch, -1, 1, 1)
        elif bias is not None:
            x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    if noise is not None:
        x = x.add_(noise.to(x.dtype))  # x is a fresh tensor that autograd does not need
    return x


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): append the average per-feature standard
    deviation over a small group of samples as extra channels, so the discriminator can see variety."""

    def __init__(self, group_size: int | None, num_channels: int = 1):
        """
        Args:
            group_size:   Samples per group (the batch must divide into groups; None = whole batch).
                          Capped at the batch size.
            num_channels: Number of statistics channels to append (channels are split into this many
                          groups, one statistic each).
        """
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        f = self.num_channels
        if n % g != 0:
            raise ValueError(f"minibatch std: batch {n} is not a multiple of the group size {g}")
        y = x.reshape(g, n // g, f, c // f, h, w)  # sample index = i_group_member * (n // g) + i_group
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # std over each group [n/g, F, c/F, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # [n/g, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # back to [N, F, H, W], same sample order
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
