"""StyleGAN2 generator and discriminator (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", CVPR 2020), with the configuration knobs of StyleGAN2-ADA (Karras et al., NeurIPS 2020).

Generator = mapping network (z, c -> w, broadcast to `num_ws` copies) + synthesis network (ws ->
image). The synthesis network starts from a learned 4x4 constant and doubles the resolution per block;
each block has two modulated 3x3 convolutions (the first one upsamples), per-pixel noise inputs and, in
the default 'skip' architecture, a toRGB layer whose output is added to the upsampled image of the
previous block. The discriminator is a residual network that halves the resolution per block and ends
with minibatch standard deviation, a convolution and two dense layers; conditional models use a
projection onto a mapped label embedding.

Constructor arguments, attribute names and parameter/buffer names follow the official StyleGAN2-ADA
PyTorch release, so its networks load with a plain `load_state_dict(strict=True)` and give the same
outputs (proven by tests/test_stylegan2_nets.py against official fixtures).

Precision: blocks in the `num_fp16_res` highest resolutions run in float16 on CUDA only; on CPU
everything is float32. `conv_clamp` is applied everywhere, so results agree across devices.

Speed on CPU (same values, different arithmetic order): the modulated convolutions scale activations
around one shared-weight convolution instead of a per-sample grouped convolution, blocks run in
channels-last memory format, activation gains are folded into weights and biases into convolutions.
bench/bench_nets.py measures it against the official code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gancli.nets.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    modulated_conv2d,
    normalize_2nd_moment,
)
from gancli.ops import bias_act, downsample2d, setup_filter, upsample2d
from gancli.ops.bias_act import activation_spec

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")


def _block_dtype(
    use_fp16: bool, force_fp32: bool, device: torch.device, param_dtype: torch.dtype
) -> torch.dtype:
    """float16 only for fp16 blocks on CUDA (CPU half convolutions are slow and imprecise); otherwise
    the parameters' dtype (float32, or float64 for exact gradient checks)."""
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else param_dtype


def _block_memory_format(
    fp16_channels_last: bool, dtype: torch.dtype, device: torch.device, cpu_channels_last: bool = True
) -> torch.memory_format:
    """channels-last for float16 blocks that ask for it (CUDA) and, unless `cpu_channels_last` is off,
    for every block on CPU: oneDNN's convolutions, and above all the depthwise FIR filters and their
    gradients, are faster in it. Values do not change."""
    if dtype == torch.float16 and fp16_channels_last:
        return torch.channels_last
    if device.type == "cpu" and cpu_channels_last:
        return torch.channels_last
    return torch.contiguous_format


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


# ---------------------------------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z (and label c) -> intermediate latent w: an MLP of equalized-lr dense layers.

    Parameters: `embed.*` (conditional only), `fc0.*` ... `fc{num_layers-1}.*`; buffer `w_avg`
    (the running mean of w, used for truncation) when `num_ws` and `w_avg_beta` are set.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        """
        Args:
            z_dim:          Latent (z) size; 0 = no latent (the discriminator's label mapping).
            c_dim:          Label (c) size; 0 = unconditional.
            w_dim:          Intermediate latent (w) size.
            num_ws:         Number of w copies to output `[N, num_ws, w_dim]`; None = output `[N, w_dim]`.
            num_layers:     Number of dense layers.
            embed_features: Size of the label embedding; None = w_dim.
            layer_features: Size of the hidden layers; None = w_dim.
            activation:     Activation of the dense layers.
            lr_multiplier:  Learning-rate multiplier of the dense layers (0.01: the mapping learns slowly).
            w_avg_beta:     Decay of the running mean of w (`w_avg`); None = do not track it.
        """
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)

        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def _dtype(self) -> torch.dtype:
        """The parameters' dtype (float32 normally; float64 in exact gradient checks)."""
        return next(self.parameters(), torch.empty([])).dtype

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """
        Args:
            z:                 Latents `[N, z_dim]` (ignored when z_dim = 0).
            c:                 Labels `[N, c_dim]` (ignored when c_dim = 0; may be None then).
            truncation_psi:    Truncation: w <- w_avg + psi * (w - w_avg); 1 = none.
            truncation_cutoff: Truncate only the first this-many ws; None = all.
            update_emas:       Update the running mean `w_avg` with this batch (training only).

        Returns:
            `[N, num_ws, w_dim]`, or `[N, w_dim]` when `num_ws` is None.
        """
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else list(z.shape)}")
            x = normalize_2nd_moment(z.to(self._dtype()))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else list(c.shape)}")
            y = normalize_2nd_moment(self.embed(c.to(self._dtype())))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.w_avg_beta is not None and self.num_ws is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).expand(-1, self.num_ws, -1)

        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs w_avg, which this mapping network does not track")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        # A real tensor (not a broadcast view), so callers may edit individual ws (style mixing).
        return x.contiguous()


# ---------------------------------------------------------------------------------------------------
# Synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling) + noise input + bias + activation.

    Parameters: `affine.*` (w -> styles), `weight [out, in, k, k]`, `bias [out]`, `noise_strength []`;
    buffers `resample_filter`, `noise_const [res, res]` (the fixed noise of noise_mode='const').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        """
        Args:
            in_channels:     Number of input channels.
            out_channels:    Number of output channels.
            w_dim:           Intermediate latent (w) size.
            resolution:      Output resolution of this layer.
            kernel_size:     Convolution kernel size.
            up:              Integer upsampling factor (2 for the first layer of a block).
            use_noise:       Add per-pixel noise scaled by a learned strength.
            activation:      Activation name.
            resample_filter: Taps of the upsampling low-pass filter.
            conv_clamp:      Clamp the output to +-this value (None = no clamping).
            channels_last:   Store the weight in channels-last memory format.
        """
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = activation_spec(activation).gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).contiguous(
                memory_format=memory_format
            )
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: bool = True,
        gain: float = 1,
    ) -> torch.Tensor:
        """
        Args:
            x:             Input `[N, in_channels, resolution / up, resolution / up]`.
            w:             Latent `[N, w_dim]` for this layer.
            noise_mode:    'const' (the stored noise_const), 'random' (fresh noise) or 'none'.
            fused_modconv: Use the grouped-convolution form of the modulated convolution.
            gain:          Extra output gain (also scales the clamp).
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
                * self.noise_strength
            )
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        # Fold the activation gain into the convolution when the activation allows it (lrelu does).
        act_gain = self.act_gain * gain
        out_gain, post_gain = (
            (act_gain, 1.0) if activation_spec(self.activation).homogeneous else (1.0, act_gain)
        )
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),  # with upsampling, a true convolution avoids flipping the weight
            fused_modconv=fused_modconv,
            bias=self.bias,
            gain=out_gain,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, None, act=self.activation, gain=post_gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
            f"up={self.up}, activation={self.activation}"
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation.

    Parameters: `affine.*`, `weight [img_channels, in, 1, 1]`, `bias [img_channels]`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        """
        Args:
            in_channels:   Number of feature channels.
            out_channels:  Number of image channels.
            w_dim:         Intermediate latent (w) size.
            kernel_size:   Kernel size (1 in StyleGAN2).
            conv_clamp:    Clamp the output to +-this value (None = no clamping).
            channels_last: Store the weight in channels-last memory format.
        """
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).contiguous(
                memory_format=memory_format
            )
        )
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(
            x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, bias=self.bias
        )
        return bias_act(x, None, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | upsampling conv0) + conv1 (+ toRGB, + skip).

    Submodules: `const` (first block), `conv0`, `conv1`, `torgb` (last block or 'skip'), `skip`
    ('resnet'); buffer `resample_filter`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str | None = None,
        cpu_channels_last: bool = True,
        **layer_kwargs,
    ):
        """
        Args:
            in_channels:        Input channels; 0 = first block (starts from the learned constant).
            out_channels:       Output channels.
            w_dim:              Intermediate latent (w) size.
            resolution:         Resolution of this block.
            img_channels:       Number of image channels.
            is_last:            Is this the last (highest-resolution) block?
            architecture:       'orig' (toRGB at the end only), 'skip' (toRGB per block, images
                                upsampled and summed) or 'resnet' (residual blocks).
            resample_filter:    Taps of the upsampling low-pass filter.
            conv_clamp:         Clamp convolution outputs to +-this value (None = no clamping).
            use_fp16:           Run this block in float16 (CUDA only).
            fp16_channels_last: Use channels-last memory format when running in float16.
            cpu_channels_last:  Run the block in channels-last memory format on CPU (faster; same values).
            fused_modconv_default: Default form of the modulated convolution on CUDA: True, False,
                                'inference_only', or None = decide by speed (see
                                `_prefer_fused_modconv`). Accepted for the networks of NVlabs
                                stylegan3's StyleGAN2 port; both forms give the same values, and
                                on CPU the faster shared-weight form is always the default.
            **layer_kwargs:     Passed to `SynthesisLayer` (e.g. `use_noise`, `activation`).
        """
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.cpu_channels_last = cpu_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1

        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1

        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1

        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise_mode: str = "const",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x:             Features from the previous block `[N, in_channels, res/2, res/2]` (None first).
            img:           Image so far `[N, img_channels, res/2, res/2]` (None first / in 'orig').
            ws:            `[N, num_conv + num_torgb, w_dim]`, the ws of this block's layers.
            force_fp32:    Run in float32 even if this is a float16 block.
            fused_modconv: Grouped-convolution modulation; None = decide by speed (see
                           `_prefer_fused_modconv`).
            noise_mode:    'const', 'random' or 'none'.

        Returns:
            (features, image) for the next block; the image is float32.
        """
        device = ws.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device, self.conv1.weight.dtype)
        memory_format = _block_memory_format(self.channels_last, dtype, device, self.cpu_channels_last)
        batch = ws.shape[0]
        if fused_modconv is None and device.type == "cuda" and self.fused_modconv_default is not None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        if fused_modconv is None:
            fused_modconv = _prefer_fused_modconv(self.training, dtype, batch, device)
        w_iter = iter(ws.unbind(dim=1))

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).expand(batch, -1, -1, -1)
            x = x.contiguous(memory_format=memory_format)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(
                x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv, gain=np.sqrt(0.5)
            )
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=ws.dtype, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img


def _prefer_fused_modconv(training: bool, dtype: torch.dtype, batch: int, device: torch.device) -> bool:
    """Default form of the modulated convolution when the caller does not choose.

    Both forms compute the same values. The grouped ("fused") form builds one weight per sample and runs
    one grouped convolution; the other scales the activations around one shared-weight convolution.
    On CUDA the grouped form is used for float32 inference and for single samples (the official choice;
    its weight gradient is slow, so training uses the other form). On CPU the shared-weight form is
    faster at every batch size we measured (3x at batch 32), so it is always used there.
    """
    if device.type != "cuda":
        return False
    return (not training) and (dtype == torch.float32 or batch == 1)


class SynthesisNetwork(nn.Module):
    """ws -> image: one `SynthesisBlock` per resolution from 4x4 to `img_resolution`.

    Submodules `b4`, `b8`, ..., `b{img_resolution}`.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs,
    ):
        """
        Args:
            w_dim:          Intermediate latent (w) size.
            img_resolution: Output resolution (a power of two, >= 4).
            img_channels:   Number of image channels.
            channel_base:   Channels at resolution r are `min(channel_base // r, channel_max)`.
            channel_max:    Maximum number of channels in any block.
            num_fp16_res:   Run the blocks of this many highest resolutions in float16 (CUDA only;
                            never below 8x8).
            **block_kwargs: Passed to `SynthesisBlock` (architecture, conv_clamp, resample_filter,
                            fp16_channels_last, use_noise, activation, ...).
        """
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=(res == img_resolution),
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str | dict[int, str] = "const", **block_kwargs) -> torch.Tensor:
        """
        Args:
            ws:             `[N, num_ws, w_dim]`.
            noise_mode:     'const' (fixed noise, deterministic), 'random' or 'none'; or a dict
                            {resolution: mode} choosing per block (missing resolutions: 'none'), which
                            shows what the noise of coarse or fine layers does (StyleGAN, Fig. 5).
            **block_kwargs: `force_fp32`, `fused_modconv` (see `SynthesisBlock.forward`).

        Returns:
            Images `[N, img_channels, img_resolution, img_resolution]`, float32, about [-1, 1].
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(self.b4.conv1.weight.dtype)  # float32 (the parameters' dtype)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # A block's toRGB shares its w with the next block's first convolution.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            mode = noise_mode.get(res, "none") if isinstance(noise_mode, dict) else noise_mode
            x, img = block(x, img, block_ws, noise_mode=mode, **block_kwargs)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: `G(z, c) -> images`, with `G.mapping` and `G.synthesis` (see module doc)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ):
        """
        Args:
            z_dim:            Latent (z) size.
            c_dim:            Label (c) size, 0 = unconditional.
            w_dim:            Intermediate latent (w) size.
            img_resolution:   Output resolution.
            img_channels:     Number of image channels.
            mapping_kwargs:   Passed to `MappingNetwork` (num_layers, embed_features, layer_features,
                              activation, lr_multiplier, w_avg_beta).
            synthesis_kwargs: Passed to `SynthesisNetwork` (channel_base, channel_max, num_fp16_res,
                              conv_clamp, architecture, resample_filter, use_noise, ...).
        """
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **(synthesis_kwargs or {})
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    @property
    def w_avg(self) -> torch.Tensor:
        """Running mean of w (`[w_dim]`), the centre of truncation (lives in `mapping.w_avg`)."""
        return self.mapping.w_avg

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        update_emas: bool = False,
        **synthesis_kwargs,
    ) -> torch.Tensor:
        """
        Args:
            z:                  Latents `[N, z_dim]`.
            c:                  One-hot labels `[N, c_dim]` (None or `[N, 0]` when unconditional).
            truncation_psi:     Truncation strength (1 = none, 0 = the average image).
            truncation_cutoff:  Truncate only the first this-many ws (None = all).
            noise_mode:         'const', 'random' or 'none'.
            update_emas:        Update `w_avg` from this batch (training).
            **synthesis_kwargs: `force_fp32`, `fused_modconv`.

        Returns:
            Images `[N, img_channels, img_resolution, img_resolution]`, float32, about [-1, 1].
        """
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)


# ---------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB) + conv0 + downsampling conv1 (+ residual skip).

    Submodules: `fromrgb` (first block or 'skip'), `conv0`, `conv1`, `skip` ('resnet'); buffer
    `resample_filter`.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
        cpu_channels_last: bool = True,
    ):
        """
        Args:
            in_channels:        Input channels; 0 = first block (reads the image through fromRGB).
            tmp_channels:       Channels inside the block.
            out_channels:       Output channels (at half the resolution).
            resolution:         Input resolution of this block.
            img_channels:       Number of image channels.
            first_layer_idx:    Index of this block's first layer in the whole network (for Freeze-D).
            architecture:       'orig', 'skip' (fromRGB per block on a downsampled image) or 'resnet'.
            activation:         Activation name.
            resample_filter:    Taps of the downsampling low-pass filter.
            conv_clamp:         Clamp convolution outputs to +-this value (None = no clamping).
            use_fp16:           Run this block in float16 (CUDA only).
            fp16_channels_last: Use channels-last memory format when running in float16.
            cpu_channels_last:  Run the block in channels-last memory format on CPU (faster; same values).
            freeze_layers:      Freeze-D: layers with an index below this are not trainable.
        """
        _check_architecture(architecture)
        if in_channels not in (0, tmp_channels):
            raise ValueError("in_channels must be 0 (first block) or equal to tmp_channels")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.cpu_channels_last = cpu_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))

        self.num_layers = 0

        def trainable() -> bool:
            layer_idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return layer_idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            resample_filter=resample_filter,
            trainable=trainable(),
            **common,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                resample_filter=resample_filter,
                trainable=trainable(),
                channels_last=self.channels_last,
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x:          Features `[N, in_channels, res, res]` (None for the first block).
            img:        Image at this resolution (first block, or every block in 'skip').
            force_fp32: Run in float32 even if this is a float16 block.

        Returns:
            (features at res/2, image at res/2 for 'skip' else None).
        """
        device = (x if x is not None else img).device
        dtype = _block_dtype(self.use_fp16, force_fp32, device, self.conv0.weight.dtype)
        memory_format = _block_memory_format(self.channels_last, dtype, device, self.cpu_channels_last)

        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: (fromRGB) + minibatch std + conv + dense + output (projection with the label map).

    Submodules: `fromrgb` ('skip'), `mbstd`, `conv`, `fc`, `out`.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        """
        Args:
            in_channels:        Input channels.
            cmap_dim:           Size of the mapped label for projection conditioning, 0 = unconditional.
            resolution:         Resolution of the head (4).
            img_channels:       Number of image channels.
            architecture:       'orig', 'skip' or 'resnet'.
            mbstd_group_size:   Group size of minibatch std (None = the whole batch).
            mbstd_num_channels: Number of minibatch-std channels, 0 = no minibatch std.
            activation:         Activation name.
            conv_clamp:         Clamp the convolution output to +-this value (None = no clamping).
        """
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None, force_fp32: bool = False
    ):
        dtype = self.conv.weight.dtype  # float32 (the parameters' dtype): the head never runs in float16
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=dtype, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            # Projection discriminator (Miyato & Koyama 2018): score = <features, embedded label>.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: `D(img, c) -> logits [N, 1]`.

    Submodules `b{img_resolution}` ... `b8` (`DiscriminatorBlock`), `mapping` (label mapping,
    conditional only) and `b4` (`DiscriminatorEpilogue`).
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ):
        """
        Args:
            c_dim:           Label size, 0 = unconditional.
            img_resolution:  Input resolution (a power of two, >= 8).
            img_channels:    Number of image channels.
            architecture:    'resnet' (default), 'orig' or 'skip'.
            channel_base:    Channels at resolution r are `min(channel_base // r, channel_max)`.
            channel_max:     Maximum number of channels.
            num_fp16_res:    Run the blocks of this many highest resolutions in float16 (CUDA only).
            conv_clamp:      Clamp convolution outputs to +-this value (None = no clamping).
            cmap_dim:        Size of the mapped label; None = the channels at 4x4.
            block_kwargs:    Passed to `DiscriminatorBlock` (activation, resample_filter,
                             fp16_channels_last, freeze_layers).
            mapping_kwargs:  Passed to the label `MappingNetwork` (num_layers, ...).
            epilogue_kwargs: Passed to `DiscriminatorEpilogue` (mbstd_group_size, mbstd_num_channels).
        """
        _check_architecture(architecture)
        if img_resolution < 8 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_resolution),
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def forward(
        self,
        img: torch.Tensor,
        c: torch.Tensor | None = None,
        update_emas: bool = False,
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """
        Args:
            img:         Images `[N, img_channels, img_resolution, img_resolution]` in about [-1, 1].
            c:           One-hot labels `[N, c_dim]` (None or `[N, 0]` when unconditional).
            update_emas: Accepted for interface symmetry with the generator; unused.
            force_fp32:  Run every block in float32.

        Returns:
            Logits `[N, 1]` (float32).
        """
        del update_emas
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(
                f"img must be [N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}], got {list(img.shape)}"
            )
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
