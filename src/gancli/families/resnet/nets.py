"""Class-conditional ResNet GANs: SNGAN, SAGAN and BigGAN in one module of paper-named pieces.

- Spectral normalization (Miyato et al. 2018, "Spectral Normalization for GANs"): every weight is
  divided by an estimate of its largest singular value, kept up to date by power iteration with a
  persistent vector `u` (a buffer, so it is saved in checkpoints and restored on resume).
- Conditional batch norm (de Vries et al. 2017; SNGAN): batch norm without affine parameters, followed
  by a gain `1 + gamma(cond)` and a bias `beta(cond)` computed linearly from a condition vector. For
  SNGAN and SAGAN the condition is the one-hot class (a per-class gain and bias); for BigGAN it is the
  shared class embedding concatenated with this block's chunk of z (Brock et al. 2019, Sec. 3 and
  Appendix B, "hierarchical latent spaces").
- Self-attention (Zhang et al. 2019, "Self-Attention GANs", Sec. 3) with the BigGAN memory savings
  (keys and values max-pooled by 2), learned gain `gamma` starting at 0.
- Residual up/down blocks (SNGAN Appendix, BigGAN Fig. 15) and a projection discriminator (Miyato &
  Koyama 2018): `D(x, y) = psi(h) + <embed(y), h>` with `h` the sum-pooled features.

Every use of the class label is linear in the one-hot vector `c`, so a soft label (a linear blend of
one-hot vectors) is exactly the same blend of the class embeddings: that is how `gancli interpolate`
walks between classes.

Generator API (DESIGN.md): `G(z [N, z_dim], c [N, c_dim]) -> [N, C, H, W]` in [-1, 1]. There is no
mapping network and no noise input; truncation is done on z by resampling (`gancli.latent`).
Sampling uses batch norm in eval mode (running or standing statistics, see `standing_statistics`),
so the image for a seed never depends on the other images of the batch.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gancli.errors import UserError

# Channel multipliers of the paper architectures (BigGAN Appendix B, Tables 4-6; SNGAN Appendix B).
# G: feature maps at the input of each block, then at its output (len = blocks + 1).
# D: feature maps at the output of each block; the first `log2(res/4)` blocks downsample, except at
# 32 px and below, where the CIFAR architecture downsamples twice and keeps 8x8 for the last blocks.
G_CH_MULT = {
    512: [16, 16, 8, 8, 4, 2, 1, 1],
    256: [16, 16, 8, 8, 4, 2, 1],
    128: [16, 16, 8, 4, 2, 1],
    64: [16, 16, 8, 4, 2],
}
D_CH_MULT = {
    512: [1, 1, 2, 4, 8, 8, 16, 16],
    256: [1, 2, 4, 8, 8, 16, 16],
    128: [1, 2, 4, 8, 16, 16],
    64: [1, 2, 4, 8, 16],
}


# SNGAN's STL-10 model at 48 px (Miyato et al. 2018, Appendix B, the ResNet table for STL-10): G from a 6x6
# map, 512 -> 256 -> 128 -> 64 channels with g_ch 64 over 3 up-blocks; D 64, 128, 256, 512 (four
# downsampling blocks: 48 -> 3) then 1024 at 3x3, global sum pooling. Keyed (resolution, bottom_width).
G_CH_MULT_BOTTOM = {(48, 6): [8, 4, 2, 1]}
D_LAYOUT_BOTTOM = {(48, 6): ([1, 2, 4, 8, 16], [True, True, True, True, False])}


def g_channel_mults(resolution: int, bottom_width: int) -> list[int]:
    blocks = int(round(math.log2(resolution // bottom_width)))
    if (resolution, bottom_width) in G_CH_MULT_BOTTOM:
        return list(G_CH_MULT_BOTTOM[resolution, bottom_width])
    if resolution in G_CH_MULT and bottom_width == 4:
        return list(G_CH_MULT[resolution])
    return [4] * (blocks + 1)  # the CIFAR layout: equal width everywhere (BigGAN arch 32, SNGAN CIFAR-10)


def d_layout(resolution: int, bottom_width: int) -> tuple[list[int], list[bool]]:
    """(channel multipliers, downsample flags) of the discriminator blocks."""
    if (resolution, bottom_width) in D_LAYOUT_BOTTOM:
        mults, downs = D_LAYOUT_BOTTOM[resolution, bottom_width]
        return list(mults), list(downs)
    if resolution in D_CH_MULT and bottom_width == 4:
        mults = list(D_CH_MULT[resolution])
        return mults, [True] * (len(mults) - 1) + [False]
    downs = max(int(round(math.log2(resolution // (2 * bottom_width)))), 0)  # 32 px -> 8x8 (CIFAR)
    return [4] * max(downs + 2, 4), [True] * downs + [False] * max(2, 4 - downs)


# --------------------------------------------------------------------------------------------------
# Spectral normalization


class SpectralNorm(nn.Module):
    """Divides a weight by its largest singular value, estimated by power iteration.

    The weight is seen as a matrix `W [out, in * kh * kw]`. `u` (a buffer) is the running estimate of
    the first left singular vector; in training mode each forward pass runs `n_power_iterations`
    steps `v = W^T u / |W^T u|`, `u = W v / |W v|` (no gradient through u, v, as in the paper), then
    `sigma = u^T W v` (with gradient). In eval mode `u` is left as it is, so sampling changes nothing.
    """

    def __init__(self, out_features: int, n_power_iterations: int = 1, eps: float = 1e-8):
        """
        Args:
            out_features:       Rows of the weight matrix (output channels / features).
            n_power_iterations: Power-iteration steps per training forward pass (1 in all three papers).
            eps:                Added to norms before dividing.
        """
        super().__init__()
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0, eps=eps))

    @torch.no_grad()
    def power_iteration(self, w_mat: torch.Tensor, steps: int) -> torch.Tensor:
        """Update `u` in place with `steps` power-iteration steps; return the matching `v`."""
        u = self.u
        v = F.normalize(w_mat.t() @ u, dim=0, eps=self.eps)
        for _ in range(steps):
            v = F.normalize(w_mat.t() @ u, dim=0, eps=self.eps)
            u = F.normalize(w_mat @ v, dim=0, eps=self.eps)
        self.u.copy_(u)
        return F.normalize(w_mat.t() @ self.u, dim=0, eps=self.eps)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate of the largest singular value of `weight` (differentiable in weight)."""
        w_mat = weight.reshape(weight.shape[0], -1)
        steps = self.n_power_iterations if self.training else 0
        v = self.power_iteration(w_mat.detach(), steps)
        # clone: u changes in place at the next training forward, while this graph may still need it
        return torch.dot(self.u.clone(), w_mat @ v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight)


class SNConv2d(nn.Conv2d):
    """Conv2d whose weight is spectrally normalized when `sn` (else a plain Conv2d)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True,
                 sn: bool = True, sn_iters: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.sn = SpectralNorm(out_channels, sn_iters) if sn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sn(self.weight) if self.sn is not None else self.weight
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class SNLinear(nn.Linear):
    """Linear layer whose weight is spectrally normalized when `sn` (else a plain Linear)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, sn: bool = True, sn_iters: int = 1):
        super().__init__(in_features, out_features, bias=bias)
        self.sn = SpectralNorm(out_features, sn_iters) if sn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sn(self.weight) if self.sn is not None else self.weight
        return F.linear(x, weight, self.bias)


# --------------------------------------------------------------------------------------------------
# Generator pieces


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are linear functions of a condition vector.

    `y = BN(x) * (1 + gamma(cond)) + beta(cond)`, with `gamma`, `beta` linear layers without bias
    (initialised to zero for one-hot conditions, so every class starts at gain 1, bias 0). With
    `cond_dim == 0` it is plain batch norm with learned affine parameters (unconditional models).
    """

    def __init__(self, num_features: int, cond_dim: int, sn: bool = False, sn_iters: int = 1, zero_init: bool = True,
                 eps: float = 1e-5, momentum: float = 0.1):
        """
        Args:
            num_features: Channels.
            cond_dim:     Size of the condition (c_dim for SNGAN/SAGAN; shared_dim + z chunk for BigGAN).
            sn:           Spectral norm on the gain and bias layers (BigGAN: SN everywhere in G).
            sn_iters:     Power iterations of that spectral norm.
            zero_init:    Start gamma and beta at zero (per-class embeddings of SNGAN/SAGAN).
            eps:          Batch-norm epsilon.
            momentum:     Batch-norm running-average momentum (None: cumulative average).
        """
        super().__init__()
        self.cond_dim = cond_dim
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=cond_dim == 0)
        if cond_dim:
            self.gain = SNLinear(cond_dim, num_features, bias=False, sn=sn, sn_iters=sn_iters)
            self.bias = SNLinear(cond_dim, num_features, bias=False, sn=sn, sn_iters=sn_iters)
            if zero_init:
                nn.init.zeros_(self.gain.weight)
                nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        out = self.bn(x)
        if not self.cond_dim:
            return out
        gain = 1 + self.gain(cond)
        bias = self.bias(cond)
        return out * gain[:, :, None, None] + bias[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention: `y = x + gamma * o(softmax(f(x)^T g(x)) h(x))`.

    f (query) and g (key) have C/8 channels, h (value) C/2; keys and values are max-pooled by 2
    (BigGAN's memory saving); o maps back to C channels. gamma starts at 0, so the block starts as
    the identity and the network learns how much non-local evidence to use.
    """

    def __init__(self, channels: int, sn: bool = True, sn_iters: int = 1):
        super().__init__()
        self.channels = channels
        self.query = SNConv2d(channels, max(channels // 8, 1), 1, bias=False, sn=sn, sn_iters=sn_iters)
        self.key = SNConv2d(channels, max(channels // 8, 1), 1, bias=False, sn=sn, sn_iters=sn_iters)
        self.value = SNConv2d(channels, max(channels // 2, 1), 1, bias=False, sn=sn, sn_iters=sn_iters)
        self.out = SNConv2d(max(channels // 2, 1), channels, 1, bias=False, sn=sn, sn_iters=sn_iters)
        self.gamma = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        pool = 2 if h % 2 == 0 and w % 2 == 0 and h * w >= 4 else 1
        q = self.query(x).flatten(2)  # [N, C/8, HW]
        k = F.max_pool2d(self.key(x), pool).flatten(2)  # [N, C/8, HW/4]
        v = F.max_pool2d(self.value(x), pool).flatten(2)  # [N, C/2, HW/4]
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # [N, HW, HW/4]
        o = (v @ attn.transpose(1, 2)).reshape(n, -1, h, w)
        return x + self.gamma * self.out(o)


class GBlock(nn.Module):
    """Residual up-block: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up-conv1 (SNGAN; BigGAN Fig. 15b)."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, sn: bool, sn_iters: int, zero_init: bool):
        super().__init__()
        # Per-class gain/bias tables (SNGAN, SAGAN) are embeddings: no spectral norm (and a zero table has
        # no largest singular value to divide by). BigGAN's projections of the shared embedding have it.
        cbn_sn = sn and not zero_init
        self.bn1 = ConditionalBatchNorm2d(in_ch, cond_dim, sn=cbn_sn, sn_iters=sn_iters, zero_init=zero_init)
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1, sn=sn, sn_iters=sn_iters)
        self.bn2 = ConditionalBatchNorm2d(out_ch, cond_dim, sn=cbn_sn, sn_iters=sn_iters, zero_init=zero_init)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1, sn=sn, sn_iters=sn_iters)
        self.shortcut = SNConv2d(in_ch, out_ch, 1, sn=sn, sn_iters=sn_iters)

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Residual down-block: (ReLU)-conv3-ReLU-conv3-avgpool, shortcut conv1-avgpool.

    The first block of D sees images, so it has no pre-activation and pools before its shortcut
    convolution (SNGAN's "optimized block").
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, first: bool, sn_iters: int, sn: bool = True):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1, sn=sn, sn_iters=sn_iters)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1, sn=sn, sn_iters=sn_iters)
        self.learnable_sc = in_ch != out_ch or downsample
        self.shortcut = SNConv2d(in_ch, out_ch, 1, sn=sn, sn_iters=sn_iters) if self.learnable_sc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        sc = x
        if self.first:
            sc = F.avg_pool2d(sc, 2) if self.downsample else sc
            sc = self.shortcut(sc) if self.shortcut is not None else sc
        else:
            sc = self.shortcut(sc) if self.shortcut is not None else sc
            sc = F.avg_pool2d(sc, 2) if self.downsample else sc
        return h + sc


# --------------------------------------------------------------------------------------------------
# Networks


def _check_attention(attn_res, block_outputs: list[int], network: str) -> None:
    missing = sorted(set(attn_res) - set(block_outputs))
    if missing:
        raise UserError(f"model.attn_res: no {network} block outputs {missing[0]} px (its blocks output "
                        f"{', '.join(str(r) for r in sorted(set(block_outputs)))} px)")


def _init_weights(module: nn.Module, init: str) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if getattr(m, "_keep_init", False):
                continue
            if init == "ortho":
                nn.init.orthogonal_(m.weight)
            elif init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """ResNet generator: linear(z) -> 4x4 (or bottom_width) features -> GBlocks (+ attention) -> BN-ReLU-conv-tanh."""

    def __init__(
        self,
        z_dim: int,  # input latent size
        c_dim: int,  # classes (0: unconditional)
        img_resolution: int,  # output resolution: bottom_width * 2^blocks (any such size: 32, 48, 64, 96, ...)
        img_channels: int = 3,  # output channels
        ch: int = 64,  # base width: block channels are ch * multiplier
        ch_mult: Optional[list[int]] = None,  # multipliers at the input of each block and the output (None: paper table)
        bottom_width: int = 4,  # spatial size of the first feature map (4; 6 for SNGAN's 48 px STL-10 model)
        attn_res: tuple[int, ...] = (),  # self-attention after the blocks that output these resolutions
        shared_dim: int = 0,  # BigGAN shared class embedding size (0: per-layer class embeddings, SNGAN/SAGAN)
        hier: bool = False,  # BigGAN hierarchical latents: z split into one chunk for the input and one per block
        sn: bool = False,  # spectral norm in G (SAGAN, BigGAN); SNGAN's G has none
        sn_iters: int = 1,  # power iterations per step
        init: str = "xavier",  # weight init: 'ortho' (BigGAN), 'xavier' (SNGAN/SAGAN), 'default' (torch)
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, img_resolution, img_channels
        self.bottom_width = bottom_width
        mults = list(ch_mult) if ch_mult else g_channel_mults(img_resolution, bottom_width)
        num_blocks = len(mults) - 1
        if bottom_width * 2 ** num_blocks != img_resolution:
            raise UserError(f"model: a generator with {num_blocks} up-blocks from {bottom_width}x{bottom_width} makes "
                            f"{bottom_width * 2 ** num_blocks} px, not {img_resolution} (check model.g_ch_mult)")
        self.hier = hier
        # z chunks: equal parts for the input layer and each block; the input layer gets any remainder.
        if hier:
            chunk = z_dim // (num_blocks + 1)
            if chunk < 1:
                raise UserError(f"model.z_dim {z_dim}: too small to split into {num_blocks + 1} hierarchical chunks")
            self.z_chunks = [z_dim - chunk * num_blocks] + [chunk] * num_blocks
        else:
            self.z_chunks = [z_dim]
        self.shared = nn.Linear(c_dim, shared_dim, bias=False) if (shared_dim and c_dim) else None
        if self.shared is not None:
            nn.init.normal_(self.shared.weight, std=0.02)  # an embedding table (one row per class, as columns here)
            self.shared._keep_init = True
        class_dim = shared_dim if self.shared is not None else c_dim
        cond_dim = class_dim + (self.z_chunks[1] if hier else 0)
        zero_init = self.shared is None  # per-class gains start at 1; BigGAN's projections of the embedding do not
        self.linear = SNLinear(self.z_chunks[0], mults[0] * ch * bottom_width**2, sn=sn, sn_iters=sn_iters)
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleDict()
        res = bottom_width
        for i in range(num_blocks):
            res *= 2
            self.blocks.append(GBlock(mults[i] * ch, mults[i + 1] * ch, cond_dim, sn, sn_iters, zero_init))
            if res in attn_res:
                self.attn[str(i)] = SelfAttention(mults[i + 1] * ch, sn=sn, sn_iters=sn_iters)
        _check_attention(attn_res, [bottom_width * 2 ** (i + 1) for i in range(num_blocks)], "generator")
        self.out_bn = nn.BatchNorm2d(mults[-1] * ch)
        self.out_conv = SNConv2d(mults[-1] * ch, img_channels, 3, padding=1, sn=sn, sn_iters=sn_iters)
        self.ch0 = mults[0] * ch
        _init_weights(self, init)
        for m in self.modules():  # re-zero the per-class gains after the generic init
            if isinstance(m, ConditionalBatchNorm2d) and m.cond_dim and zero_init:
                nn.init.zeros_(m.gain.weight)
                nn.init.zeros_(m.bias.weight)

    def class_embedding(self, c: torch.Tensor) -> torch.Tensor:
        """The class part of the condition: the shared embedding of c (BigGAN) or c itself."""
        return self.shared(c) if self.shared is not None else c

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                noise_mode: Optional[str] = None) -> torch.Tensor:
        """Images [N, C, H, W] in [-1, 1] for z [N, z_dim] and one-hot (or soft) labels c [N, c_dim].

        truncation_psi and noise_mode exist for the common generator API; this generator has no noise
        inputs, and it truncates by resampling z (`gancli.latent.z_from_seeds(threshold=)`), not by psi.
        """
        if truncation_psi != 1:
            raise UserError("this generator has no mapping network: truncate by resampling z beyond a threshold "
                            "(--trunc is that threshold), not with psi")
        if c is None or c.shape[1] == 0:
            c = z.new_zeros([z.shape[0], self.c_dim])
        zs = torch.split(z, self.z_chunks, dim=1)
        class_part = self.class_embedding(c) if self.c_dim else z.new_zeros([z.shape[0], 0])
        x = self.linear(zs[0]).reshape(z.shape[0], self.ch0, self.bottom_width, self.bottom_width)
        for i, block in enumerate(self.blocks):
            cond = torch.cat([class_part, zs[i + 1]], dim=1) if self.hier else class_part
            x = block(x, cond)
            if str(i) in self.attn:
                x = self.attn[str(i)](x)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(x))))


class Discriminator(nn.Module):
    """ResNet discriminator with spectral norm everywhere and a projection head for labels."""

    def __init__(
        self,
        c_dim: int,  # classes (0: unconditional, no projection term)
        img_resolution: int,  # input resolution
        img_channels: int = 3,  # input channels
        ch: int = 64,  # base width
        ch_mult: Optional[list[int]] = None,  # multipliers at the output of each block (None: paper table)
        bottom_width: int = 4,  # as in the generator (decides the default layout)
        attn_res: tuple[int, ...] = (),  # self-attention after the blocks that output these resolutions
        sn_iters: int = 1,  # power iterations per step
        init: str = "xavier",  # weight init, as in the generator
        sn: bool = True,  # spectral norm (SNGAN, SAGAN, BigGAN); False: a plain critic (WGAN-GP's ResNet)
    ):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        mults, downs = d_layout(img_resolution, bottom_width)
        if ch_mult:
            mults = list(ch_mult)
            n_down = min(len(mults), max(int(round(math.log2(img_resolution // bottom_width))), 0))
            downs = [True] * n_down + [False] * (len(mults) - n_down)
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleDict()
        in_ch, res, attended = img_channels, img_resolution, set()
        for i, (mult, down) in enumerate(zip(mults, downs)):
            self.blocks.append(DBlock(in_ch, mult * ch, down, first=i == 0, sn_iters=sn_iters, sn=sn))
            in_ch = mult * ch
            res = res // 2 if down else res
            if res in attn_res and res not in attended:  # once per resolution, after its first block
                attended.add(res)
                self.attn[str(i)] = SelfAttention(in_ch, sn=sn, sn_iters=sn_iters)
        outputs = [img_resolution // 2 ** sum(downs[: i + 1]) for i in range(len(downs))]
        _check_attention(attn_res, outputs, "discriminator")
        self.linear = SNLinear(in_ch, 1, sn=sn, sn_iters=sn_iters)
        self.embed = SNLinear(c_dim, in_ch, bias=False, sn=sn, sn_iters=sn_iters) if c_dim else None
        _init_weights(self, init)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [N, 1]: psi(h) + <embed(c), h> with h = sum over pixels of ReLU(features)."""
        x = img
        for i, block in enumerate(self.blocks):
            x = block(x)
            if str(i) in self.attn:
                x = self.attn[str(i)](x)
        h = F.relu(x).sum(dim=[2, 3])
        out = self.linear(h)
        if self.embed is not None and c is not None and c.shape[1]:
            out = out + (self.embed(c) * h).sum(dim=1, keepdim=True)
        return out


# --------------------------------------------------------------------------------------------------
# Standing statistics


@torch.no_grad()
def standing_statistics(G: Generator, num_batches: int, batch_size: int, generator: torch.Generator,
                        device: torch.device | str = "cpu", labels: Optional[torch.Tensor] = None) -> None:
    """Replace G's batch-norm running statistics with "standing statistics" (Brock et al. 2019).

    Resets every batch-norm layer, switches only those layers to training mode with a cumulative
    average (momentum None), runs `num_batches` forward passes with random z ~ N(0, I) and random
    labels (drawn from `labels` rows, else uniformly), and leaves G in eval mode (for sampling). Spectral-norm
    vectors are untouched (their layers stay in eval mode). Draws only from `generator`, never from
    torch's global random state, so calling it changes nothing else in a run.
    """
    G.eval()
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for _ in range(num_batches):
        z = torch.randn([batch_size, G.z_dim], generator=generator).to(device)
        c = torch.zeros([batch_size, G.c_dim])
        if G.c_dim:
            if labels is not None and len(labels):
                c = labels[torch.randint(len(labels), [batch_size], generator=generator)].float().cpu()
            else:
                c[torch.arange(batch_size), torch.randint(G.c_dim, [batch_size], generator=generator)] = 1
        G(z, c.to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    G.eval()
