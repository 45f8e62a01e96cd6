"""StyleGAN's networks (Karras et al. 2019, "A Style-Based Generator Architecture for GANs").

Generator (Sec. 2, Fig. 1b): a mapping network f (8 dense layers, lr multiplier 0.01) turns z into w;
the synthesis network starts from a learned constant 4x4 input and, per layer, adds per-pixel noise
scaled by a learned per-channel factor, then the bias, the leaky ReLU, and AdaIN with the layer's
style y = A(w): AdaIN(x, y) = y_s * (x - mu(x)) / sigma(x) + y_b (Eq. 1; y_s is stored as 1 + the
affine output, as the official code). Each block upsamples (nearest), convolves, blurs with [1, 2, 1]
(Sec. 2 and appendix C), and has two such layers; toRGB at every resolution for progressive growing.
The discriminator is PGGAN's with the blur before each downsampling convolution.

The generator offers the style-based generator API: `mapping(z, c, truncation_psi, truncation_cutoff)
-> ws [N, num_ws, w_dim]`, `synthesis(ws, noise_mode)`, `num_ws`, `w_avg`. `noise_mode` is 'const'
(the stored `noise_const` maps), 'random', 'none', or a dict {resolution: mode} (missing: 'none').
Like the PGGAN generator, it returns `img_resolution` images at every stage of growing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.families.pggan.nets import PGDiscriminator
from gancli.nets.progressive import (
    Blur,
    EqualizedConv2d,
    EqualizedLinear,
    Growing,
    channels,
    downsample2x,
    lrelu,
    pixel_norm,
    resize_to,
    upsample2x,
)

NOISE_MODES = ("const", "random", "none")


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per sample and channel: (x - mean over H, W) / sqrt(mean square of that + eps)."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


class AdaIN(nn.Module):
    """Adaptive instance normalization with a learned affine style A: w -> (y_s - 1, y_b)."""

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-8):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, channels * 2, gain=1.0)
        self.eps = eps

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w).reshape(w.shape[0], 2, -1, 1, 1)
        return instance_norm(x, self.eps) * (style[:, 0] + 1) + style[:, 1]


class NoiseInput(nn.Module):
    """Per-pixel noise, one map [N, 1, H, W] broadcast over channels, scaled by a learned per-channel
    factor (initialised to 0). Buffer `noise_const` [res, res]: the fixed noise of noise_mode 'const'."""

    use_noise = True  # gancli.project finds the noise inputs by this

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.weight = nn.Parameter(torch.zeros([channels]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.reshape(-1, 1, self.resolution, self.resolution).to(x.dtype)
        return x + noise * self.weight.reshape(1, -1, 1, 1)


class StyleLayer(nn.Module):
    """The per-layer epilogue of StyleGAN: noise, bias, leaky ReLU, AdaIN (official `layer_epilogue`)."""

    def __init__(self, channels: int, w_dim: int, resolution: int, adain_eps: float = 1e-8):
        super().__init__()
        self.noise = NoiseInput(channels, resolution)
        self.bias = nn.Parameter(torch.zeros([channels]))
        self.adain = AdaIN(channels, w_dim, adain_eps)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", add_bias: bool = True) -> torch.Tensor:
        x = self.noise(x, noise_mode)
        x = lrelu(x + self.bias.reshape(1, -1, 1, 1) if add_bias else x)
        return self.adain(x, w)


class MappingNetwork(nn.Module):
    """z -> w: normalize z (pixel norm), then `num_layers` dense layers with leaky ReLU and lr multiplier.

    Buffer `w_avg` [w_dim]: the running mean of w (decay `w_avg_beta` per training batch), the centre of
    truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = z_dim, w_dim, num_ws, w_avg_beta
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_multiplier=lr_multiplier))
        self.num_layers = num_layers
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        x = pixel_norm(z)
        for i in range(self.num_layers):
            x = lrelu(getattr(self, f"fc{i}")(x))
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisNetwork(Growing):
    """ws [N, num_ws, w_dim] -> images; layers 2k and 2k + 1 of W drive resolution 4 * 2^k.

    Parameters: `const`, `l4.*` (epilogues `epi0`, `epi1`, `conv1`), `b{res}.conv0`, `b{res}.conv1`,
    `b{res}.epi0`, `b{res}.epi1`, `torgb{res}`."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512, start_res: int = 8, adain_eps: float = 1e-8, bias_before_blur: bool = False):
        """
        Args:
            adain_eps:        epsilon of AdaIN's instance normalization (official 1e-8; rosinality's 1e-5).
            bias_before_blur: add the first layer's bias of each block before the blur rather than after
                              the noise (rosinality/style-based-gan-pytorch; differs at the borders).
        """
        super().__init__()
        self.w_dim, self.img_channels, self.bias_before_blur = w_dim, img_channels, bias_before_blur
        self._init_growth(img_resolution, start_res)
        nf = lambda r: channels(r, channel_base, channel_max)  # noqa: E731
        self.all_res = [2**k for k in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 2 * len(self.all_res)
        self.const = nn.Parameter(torch.ones([1, nf(4), 4, 4]))
        e = adain_eps
        self.l4 = nn.ModuleDict({"epi0": StyleLayer(nf(4), w_dim, 4, e),
                                 "conv1": EqualizedConv2d(nf(4), nf(4), 3, bias=False),
                                 "epi1": StyleLayer(nf(4), w_dim, 4, e)})
        self.blur = Blur()
        for res in self.all_res:
            if res > 4:
                setattr(self, f"b{res}", nn.ModuleDict({
                    "conv0": EqualizedConv2d(nf(res // 2), nf(res), 3, bias=False), "epi0": StyleLayer(nf(res), w_dim, res, e),
                    "conv1": EqualizedConv2d(nf(res), nf(res), 3, bias=False), "epi1": StyleLayer(nf(res), w_dim, res, e)}))
            setattr(self, f"torgb{res}", EqualizedConv2d(nf(res), img_channels, 1, gain=1))

    def forward(self, ws: torch.Tensor, noise_mode: str | dict[int, str] = "const", upsample: bool = True,
                **_) -> torch.Tensor:
        """
        Args:
            ws:         [N, num_ws, w_dim].
            noise_mode: 'const', 'random', 'none', or {resolution: mode} (resolutions left out: 'none').
            upsample:   return `img_resolution` images (nearest); False: the current growth resolution.
        """
        if ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        res, alpha = self.growth()

        def mode(r):
            return noise_mode.get(r, "none") if isinstance(noise_mode, dict) else noise_mode

        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.l4["epi0"](x, ws[:, 0], mode(4))
        x = self.l4["epi1"](self.l4["conv1"](x), ws[:, 1], mode(4))
        old = None
        for i, r in enumerate(self.all_res[1:], start=1):
            if r > res:
                break
            if r == res and alpha < 1:
                old = getattr(self, f"torgb{r // 2}")(x)
            b = getattr(self, f"b{r}")
            h = b["conv0"](upsample2x(x))
            if self.bias_before_blur:
                h = h + b["epi0"].bias.reshape(1, -1, 1, 1)
            x = b["epi0"](self.blur(h), ws[:, 2 * i], mode(r), add_bias=not self.bias_before_blur)
            x = b["epi1"](b["conv1"](x), ws[:, 2 * i + 1], mode(r))
        img = getattr(self, f"torgb{res}")(x)
        if old is not None:
            img = torch.lerp(upsample2x(old), img, alpha)
        return resize_to(img, self.img_resolution) if upsample else img


class StyleGenerator(nn.Module):
    """The style-based generator: `mapping` then `synthesis`; G(z, c) gives images in [-1, 1]-ish."""

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995, channel_base: int = 16384, channel_max: int = 512, start_res: int = 8,
                 adain_eps: float = 1e-8, bias_before_blur: bool = False):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, start_res,
                                          adain_eps=adain_eps, bias_before_blur=bias_before_blur)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_lr_multiplier, w_avg_beta)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.synthesis.set_growth(resolution, alpha)

    def growth(self) -> tuple[int, float]:
        return self.synthesis.growth()

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, noise_mode="const", upsample: bool = True,
                update_emas: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, upsample=upsample)


class StyleDiscriminator(PGDiscriminator):
    """PGGAN's discriminator with StyleGAN's blur before each downsampling: conv 3x3, blur, conv 3x3,
    2x2 average pool, then bias and leaky ReLU (official `conv2d_downscale2d`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.blur = Blur()
        for res in self._all_res():
            if res > 4:
                getattr(self, f"b{res}")["conv1"].bias = None  # the bias comes after the pool
                getattr(self, f"b{res}").register_parameter("bias1", nn.Parameter(
                    torch.zeros([getattr(self, f"b{res}")["conv1"].weight.shape[0]])))

    def block(self, r: int, x: torch.Tensor) -> torch.Tensor:
        b = getattr(self, f"b{r}")
        x = self.blur(lrelu(b["conv0"](x)))
        return lrelu(downsample2x(b["conv1"](x)) + b.bias1.reshape(1, -1, 1, 1))
