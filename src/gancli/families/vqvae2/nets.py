"""VQ-VAE-2 networks (Razavi, van den Oord, Vinyals 2019): the two-level VQ-VAE and its two priors.

Stage 1 (paper Sec. 3.1, Fig. 2a): the bottom encoder takes the image to 1/4 of its size, the top
encoder takes that to 1/8; the top is quantized, decoded back to 1/4, and the bottom latent is
computed from the bottom features *and* that decoded top (so the bottom codes hold what the top
lacks); the decoder takes the (upsampled) top codes and the bottom codes together. The codebooks
are learned by exponential moving averages (VQ-VAE, van den Oord et al. 2017, Appendix A.1), the
encoder gets the decoder's gradient straight through the quantization, and a commitment loss keeps
the encoder near its codes (`Quantizer`).

Stage 2 (Sec. 3.2): a gated PixelCNN (van den Oord et al. 2016, vertical and horizontal stacks, so
no blind spot) over each code map. The top prior adds causal multi-head self-attention blocks (the
paper's PixelSNAIL-style attention); the bottom prior has none but is conditioned on the top codes
through a conditioning stack, as in the public reference code (rosinality/vq-vae-2-pytorch).

Shapes: images [N, 3, R, R] in [-1, 1]; top codes [N, R/8, R/8] and bottom codes [N, R/4, R/4] (int64).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------------
# Vector quantization


class Quantizer(nn.Module):
    """Nearest-neighbour vector quantization with an EMA codebook (VQ-VAE, Appendix A.1).

    `embed` [n_embed, dim] is the codebook; `cluster_size` [n_embed] and `embed_avg` [n_embed, dim]
    are the EMA counts and sums of the encoder outputs assigned to each code. In training mode each
    forward pass moves them by `decay` and sets embed = embed_avg / Laplace-smoothed counts. All three
    are buffers: they are saved with the weights, never touched by the optimizer.
    """

    def __init__(self, dim: int, n_embed: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.dim, self.n_embed, self.decay, self.eps = dim, n_embed, decay, eps
        embed = torch.randn(n_embed, dim)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of flat [M, dim]."""
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)[None]
        return dist.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors NCHW for codes [N, H, W]."""
        return F.embedding(codes, self.embed).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, restart_below: float = 0.0, gen: torch.Generator | None = None):
        """x NCHW [N, dim, H, W] -> (quantized NCHW with the straight-through gradient, commitment
        loss mean((x - sg[q])^2), codes [N, H, W], restarted code count)."""
        n, _, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, self.dim)
        codes = self.nearest(flat.detach())
        restarted = 0
        if self.training:
            restarted = self._ema_update(flat.detach(), codes, restart_below, gen)
        q = self.lookup(codes.view(n, h, w))
        commitment = (x - q.detach()).pow(2).mean()
        q = x + (q - x).detach()  # straight through: the decoder's gradient reaches x unchanged
        return q, commitment, codes.view(n, h, w), restarted

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor, restart_below: float, gen) -> int:
        from gancli.train import distributed

        onehot = F.one_hot(codes, self.n_embed).to(flat.dtype)
        count, sums = onehot.sum(0), onehot.t() @ flat
        distributed.all_reduce_sum_(count)  # every rank's assignments (a no-op in one process)
        distributed.all_reduce_sum_(sums)
        self.cluster_size.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_embed * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        if restart_below <= 0:
            return 0
        dead = (self.cluster_size < restart_below).nonzero().flatten()
        if len(dead) == 0:
            return 0
        # Dead codes restart at encoder outputs of this batch, drawn with the step's generator (one
        # process only: the family refuses train.dead_code_threshold with several processes).
        picks = torch.randint(len(flat), [len(dead)], generator=gen).to(flat.device)
        self.embed[dead] = flat[picks]
        self.embed_avg[dead] = flat[picks]
        self.cluster_size[dead] = 1.0
        return int(len(dead))


def perplexity(codes: torch.Tensor, n_embed: int) -> torch.Tensor:
    """exp(entropy) of the code histogram: n_embed when every code is used equally, 1 for one code."""
    p = torch.bincount(codes.flatten(), minlength=n_embed).double() / codes.numel()
    return torch.exp(-(p[p > 0] * p[p > 0].log()).sum())


# --------------------------------------------------------------------------------------------------
# Encoders and decoders


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x))))."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Encoder(nn.Module):
    """Strided 4x4 convolutions down by `stride` (2 or 4), a 3x3 convolution, residual blocks."""

    def __init__(self, in_ch: int, ch: int, res_blocks: int, res_ch: int, stride: int):
        super().__init__()
        if stride == 4:
            layers = [nn.Conv2d(in_ch, ch // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch // 2, ch, 4, 2, 1), nn.ReLU(),
                      nn.Conv2d(ch, ch, 3, padding=1)]
        else:
            layers = [nn.Conv2d(in_ch, ch // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch // 2, ch, 3, padding=1)]
        layers += [ResBlock(ch, res_ch) for _ in range(res_blocks)] + [nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """A 3x3 convolution, residual blocks, then 4x4 transposed convolutions up by `stride` (2 or 4)."""

    def __init__(self, in_ch: int, out_ch: int, ch: int, res_blocks: int, res_ch: int, stride: int):
        super().__init__()
        layers = [nn.Conv2d(in_ch, ch, 3, padding=1)] + [ResBlock(ch, res_ch) for _ in range(res_blocks)] + [nn.ReLU()]
        if stride == 4:
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(ch // 2, out_ch, 4, 2, 1)]
        else:
            layers += [nn.ConvTranspose2d(ch, out_ch, 4, 2, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class VQVAE(nn.Module):
    """The two-level VQ-VAE of stage 1 (paper Fig. 2a)."""

    def __init__(self, img_channels: int, ch: int, res_blocks: int, res_ch: int, embed_dim: int, n_embed: int,
                 decay: float):
        super().__init__()
        self.enc_bottom = Encoder(img_channels, ch, res_blocks, res_ch, stride=4)  # image -> 1/4
        self.enc_top = Encoder(ch, ch, res_blocks, res_ch, stride=2)  # 1/4 -> 1/8
        self.pre_top = nn.Conv2d(ch, embed_dim, 1)
        self.quant_top = Quantizer(embed_dim, n_embed, decay)
        self.dec_top = Decoder(embed_dim, embed_dim, ch, res_blocks, res_ch, stride=2)  # top codes -> 1/4
        self.pre_bottom = nn.Conv2d(embed_dim + ch, embed_dim, 1)  # bottom features + decoded top
        self.quant_bottom = Quantizer(embed_dim, n_embed, decay)
        self.up_top = nn.ConvTranspose2d(embed_dim, embed_dim, 4, 2, 1)
        self.dec = Decoder(2 * embed_dim, img_channels, ch, res_blocks, res_ch, stride=4)

    def pre_quantization(self, x):
        """The continuous top latent [N, D, R/8, R/8] and the bottom features (before its latent)."""
        h_bottom = self.enc_bottom(x)
        return self.pre_top(self.enc_top(h_bottom)), h_bottom

    def encode(self, x, restart_below: float = 0.0, gen=None):
        """-> (q_top, q_bottom, commitment loss (sum of both levels), top codes, bottom codes, restarts)."""
        z_top, h_bottom = self.pre_quantization(x)
        q_top, c_top, codes_top, r_top = self.quant_top(z_top, restart_below, gen)
        z_bottom = self.pre_bottom(torch.cat([h_bottom, self.dec_top(q_top)], 1))
        q_bottom, c_bottom, codes_bottom, r_bottom = self.quant_bottom(z_bottom, restart_below, gen)
        return q_top, q_bottom, c_top + c_bottom, codes_top, codes_bottom, r_top + r_bottom

    def decode(self, q_top, q_bottom):
        return self.dec(torch.cat([self.up_top(q_top), q_bottom], 1))

    def decode_codes(self, codes_top, codes_bottom):
        return self.decode(self.quant_top.lookup(codes_top), self.quant_bottom.lookup(codes_bottom))

    def forward(self, x, restart_below: float = 0.0, gen=None):
        q_top, q_bottom, commitment, codes_top, codes_bottom, restarted = self.encode(x, restart_below, gen)
        return self.decode(q_top, q_bottom), commitment, codes_top, codes_bottom, restarted


# --------------------------------------------------------------------------------------------------
# Priors: gated PixelCNN with vertical and horizontal stacks, optional causal attention.


def shift_down(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x):
    return F.pad(x, (1, 0))[..., :-1]


class GatedLayer(nn.Module):
    """One gated PixelCNN layer. The vertical stack at row i sees the input rows <= i; it reaches the
    horizontal stack shifted down one row, so the horizontal stack at (i, j) sees only rows < i and,
    in its own row, columns <= j of a stream that is already one pixel behind: strictly the past."""

    def __init__(self, ch: int, kernel: int, cond_ch: int, dropout: float):
        super().__init__()
        self.k = kernel // 2
        self.v_conv = nn.Conv2d(ch, 2 * ch, (self.k + 1, kernel))
        self.h_conv = nn.Conv2d(ch, 2 * ch, (1, self.k + 1))
        self.v_to_h = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.h_out = nn.Conv2d(ch, ch, 1)
        self.cond = nn.Conv2d(cond_ch, 2 * ch, 1, bias=False) if cond_ch else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, v, h, cond=None):
        k = self.k
        v_pre = self.v_conv(F.pad(v, (k, k, k, 0)))
        h_pre = self.h_conv(F.pad(h, (k, 0, 0, 0))) + self.v_to_h(shift_down(v_pre))
        if self.cond is not None:
            c = self.cond(cond)
            v_pre, h_pre = v_pre + c, h_pre + c
        v = gate(v_pre)
        h = h + self.h_out(self.dropout(gate(h_pre)))
        return v, h


def gate(x):
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over the raster order where position i attends to positions <= i.
    The horizontal stack at position j depends only on inputs before j, so attending to j itself
    keeps every output strictly causal."""

    def __init__(self, ch: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h):
        n, c, hh, ww = h.shape
        q, k, v = self.qkv(h).reshape(n, 3, self.heads, c // self.heads, hh * ww).unbind(1)
        logits = torch.einsum("nhdi,nhdj->nhij", q, k) / math.sqrt(c // self.heads)
        mask = torch.ones(hh * ww, hh * ww, dtype=torch.bool, device=h.device).tril()
        attn = logits.masked_fill(~mask, float("-inf")).softmax(-1)
        out = torch.einsum("nhij,nhdj->nhdi", attn, v).reshape(n, c, hh, ww)
        return h + self.dropout(self.out(out))


class ConditionStack(nn.Module):
    """The bottom prior's view of the top codes: embedding, residual blocks, 2x nearest upsampling."""

    def __init__(self, n_embed: int, ch: int, res_blocks: int):
        super().__init__()
        self.embed = nn.Embedding(n_embed, ch)
        self.net = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), *[ResBlock(ch, ch) for _ in range(res_blocks)], nn.ReLU())

    def forward(self, codes_top):
        x = self.embed(codes_top).permute(0, 3, 1, 2)
        return F.interpolate(self.net(x), scale_factor=2, mode="nearest")


class Prior(nn.Module):
    """Autoregressive prior p(codes) = prod_i p(code_i | codes_<i) in raster order (logits [N, K, H, W])."""

    def __init__(self, n_embed: int, shape: tuple[int, int], ch: int, layers: int, kernel: int, attention: int,
                 heads: int, dropout: float, cond_res_blocks: int | None = None):
        super().__init__()
        self.n_embed, self.shape = n_embed, tuple(shape)
        self.embed = nn.Embedding(n_embed, ch)
        self.pos = nn.Parameter(torch.zeros(1, ch, *shape))  # where each position is (not input-dependent)
        self.cond_stack = ConditionStack(n_embed, ch, cond_res_blocks) if cond_res_blocks is not None else None
        self.layers = nn.ModuleList([GatedLayer(ch, kernel, ch if self.cond_stack else 0, dropout) for _ in range(layers)])
        # attention after every (layers / attention)-th layer, the last one after the last layer
        every = layers / attention if attention else 0
        self.attn_after = sorted({int(round(every * (a + 1))) - 1 for a in range(attention)})
        self.attn = nn.ModuleList([CausalSelfAttention(ch, heads, dropout) for _ in self.attn_after])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 1), nn.ReLU(), nn.Conv2d(ch, n_embed, 1))

    def forward(self, codes, cond_codes=None):
        return self.forward_features(self.embed(codes).permute(0, 3, 1, 2), cond_codes)

    def forward_features(self, x, cond_codes=None):
        """Logits from embedded inputs x [N, ch, H, W] (the causal-mask tests differentiate through x)."""
        cond = self.cond_stack(cond_codes) if self.cond_stack is not None else None
        v, h = x, shift_right(x) + self.pos
        attn = dict(zip(self.attn_after, self.attn))
        for i, layer in enumerate(self.layers):
            v, h = layer(v, h, cond)
            if i in attn:
                h = attn[i](h)
        return self.head(h)

    @torch.no_grad()
    def sample(self, u: torch.Tensor, temperature: float, cond_codes=None) -> torch.Tensor:
        """Codes [N, H, W] drawn in raster order. u [N, H*W] (float64 in [0, 1)) drives the draws by
        inverse CDF: code_i = the first k with cdf_k(softmax(logits_i / T)) > u_i; T 0 is the argmax."""
        n, (hh, ww) = u.shape[0], self.shape
        codes = torch.zeros(n, hh, ww, dtype=torch.long, device=u.device)
        for p in range(hh * ww):
            i, j = divmod(p, ww)
            logits = self(codes, cond_codes)[:, :, i, j].double()
            codes[:, i, j] = draw(logits, u[:, p], temperature)
        return codes


def draw(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF draw of one code per row of logits [N, K] (float64) at u [N]; temperature 0: argmax."""
    if temperature == 0:
        return logits.argmax(1)
    cdf = torch.softmax(logits / temperature, 1).cumsum(1)
    return (cdf <= u[:, None].to(cdf.dtype)).sum(1).clamp_max(logits.shape[1] - 1)


# --------------------------------------------------------------------------------------------------


class VQVAE2(nn.Module):
    """What a checkpoint holds and the commands use: the VQ-VAE, and from stage 2 on the two priors.

    z_dim is the number of code positions (top, then bottom): a seed's z [z_dim] (the seeds
    convention) becomes the uniforms u = Phi(z) that drive the priors' draws, one per position.
    """

    def __init__(self, m, resolution: int, img_channels: int = 3):
        super().__init__()
        self.stage, self.img_resolution, self.c_dim = int(m.stage), resolution, 0
        self.top_shape, self.bottom_shape = (resolution // 8,) * 2, (resolution // 4,) * 2
        self.n_embed = m.n_embed
        self.vqvae = VQVAE(img_channels, m.channels, m.res_blocks, m.res_channels, m.embed_dim, m.n_embed,
                           m.codebook_decay)
        self.top_prior = self.bottom_prior = None
        if self.stage >= 2:
            common = dict(ch=m.prior_channels, layers=m.prior_layers, kernel=m.prior_kernel, heads=m.prior_heads,
                          dropout=m.prior_dropout)
            self.top_prior = Prior(m.n_embed, self.top_shape, attention=m.prior_attention, **common)
            self.bottom_prior = Prior(m.n_embed, self.bottom_shape, attention=0, cond_res_blocks=m.cond_res_blocks,
                                      **common)

    @property
    def positions(self) -> tuple[int, int]:
        return self.top_shape[0] * self.top_shape[1], self.bottom_shape[0] * self.bottom_shape[1]

    @property
    def z_dim(self) -> int:
        return sum(self.positions)

    @torch.no_grad()
    def sample_codes(self, z: torch.Tensor, temperature: float):
        """(top codes, bottom codes) for latents z [N, z_dim]: the top prior first, then the bottom
        prior given the top codes."""
        u = 0.5 * torch.erfc(-z.double() / math.sqrt(2))  # Phi(z), uniform in (0, 1)
        n_top = self.positions[0]
        top = self.top_prior.sample(u[:, :n_top], temperature)
        bottom = self.bottom_prior.sample(u[:, n_top:], temperature, cond_codes=top)
        return top, bottom

    def forward(self, z, c=None, temperature: float = 1.0):
        """The generator API: images for latents z (stage 2 only)."""
        return self.vqvae.decode_codes(*self.sample_codes(z, temperature))
