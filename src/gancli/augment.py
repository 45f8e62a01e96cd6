"""Adaptive discriminator augmentation (ADA): Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", Section 2-3 and Appendix B. Written from the paper.

Every image the discriminator sees (reals and fakes, also the reals of the R1 penalty) goes through
`AugmentPipe`. Each transformation is applied to each image independently with probability
`p * multiplier`; the pipeline is differentiable with respect to the images (also twice, for R1), so
G learns through it. In the paper's order:

1. pixel blitting (exact pixel copies): x-flip, 90-degree rotations, integer translation;
2. general geometric transformations, composed into one 3x3 matrix per image and resampled once:
   isotropic scaling, pre-rotation, anisotropic scaling, post-rotation, fractional translation;
3. colour transformations, composed into one 4x4 affine colour matrix per image: brightness,
   contrast, luma flip, hue rotation, saturation;
4. image-space filtering: random gains of four frequency bands;
5. image-space corruptions: additive RGB noise, cutout.

Distributions (Appendix B): integer translation U(-0.125, 0.125) of the image size, rounded to
pixels; isotropic and anisotropic scaling lognormal(0, (0.2 ln 2)^2); rotations U(-pi, pi), each of
the two applied with probability 1 - sqrt(1 - p) so that some rotation happens with probability p;
fractional translation N(0, 0.125^2) of the image size; brightness N(0, 0.2^2); contrast
lognormal(0, (0.5 ln 2)^2); luma flip U{0, 1}; hue rotation U(-pi, pi); saturation
lognormal(0, (1 ln 2)^2); band gains lognormal(0, (1 ln 2)^2), renormalised so that an image with
the band energies 10:1:1:1 keeps its energy; noise standard deviation |N(0, 0.1^2)|; cutout of a
square half the image size at a uniformly random centre, filled with 0 (mid grey).

Implementation choices (ours):
- Blitting gathers pixels by index (exact; reflection at the borders), so p = 0 and the 90-degree
  rotations are exact, and a translation moves pixels by whole pixels.
- General geometry: reflect-pad, upsample 2x with a 12-tap Lanczos-3 filter, sample bilinearly at
  the 2x-supersampled output positions, low-pass and decimate 2x with the same filter. Only the
  images that drew a non-identity transform are resampled; the others are passed through exactly.
- Randomness comes from torch's global generator (the trainer seeds it every step), so a resumed
  run draws the same augmentations as one never stopped.

`AdaController` holds p and implements the overfitting heuristic r_t = E[sign(D(real))].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# The transformations in pipeline order (the names are also recipe keys: augment.<name> multipliers).
BLIT_OPS = ("xflip", "rotate90", "xint")
GEOM_OPS = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
FILTER_OPS = ("imgfilter",)
NOISE_OPS = ("noise",)
CUTOUT_OPS = ("cutout",)
OPS = BLIT_OPS + GEOM_OPS + COLOR_OPS + FILTER_OPS + NOISE_OPS + CUTOUT_OPS

_GROUPS = {"b": BLIT_OPS, "g": GEOM_OPS, "c": COLOR_OPS, "f": FILTER_OPS, "n": NOISE_OPS}
# The paper's presets (Figure 4 and Section 3): single groups, then the cumulative chains.
PRESETS: dict[str, tuple[str, ...]] = {
    "blit": BLIT_OPS,
    "geom": GEOM_OPS,
    "color": COLOR_OPS,
    "filter": FILTER_OPS,
    "noise": NOISE_OPS,
    "cutout": CUTOUT_OPS,
    "bg": BLIT_OPS + GEOM_OPS,
    "bgc": BLIT_OPS + GEOM_OPS + COLOR_OPS,
    "bgcf": BLIT_OPS + GEOM_OPS + COLOR_OPS + FILTER_OPS,
    "bgcfn": BLIT_OPS + GEOM_OPS + COLOR_OPS + FILTER_OPS + NOISE_OPS,
    "bgcfnc": BLIT_OPS + GEOM_OPS + COLOR_OPS + FILTER_OPS + NOISE_OPS + CUTOUT_OPS,
}

# Strengths of the paper (Appendix B).
XINT_MAX = 0.125  # integer translation: U(-max, max) of the image size
SCALE_STD = 0.2 * math.log(2)  # log-std of isotropic and anisotropic scaling
XFRAC_STD = 0.125  # fractional translation: N(0, std^2) of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5 * math.log(2)
SATURATION_STD = 1.0 * math.log(2)
BAND_GAIN_STD = 1.0 * math.log(2)
BAND_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)  # relative energy of the four bands in natural images
BAND_EDGES = (0.0, math.pi / 8, math.pi / 4, math.pi / 2, math.pi)
NOISE_STD = 0.1
CUTOUT_SIZE = 0.5
LUMA_AXIS = (1 / math.sqrt(3),) * 3  # the grey axis of RGB space


def preset_multipliers(pipe: str, overrides: dict[str, float | None] | None = None) -> dict[str, float]:
    """Multiplier of every op: 1 for the ops of the preset, 0 for the others, then `overrides` (None = keep)."""
    if pipe not in PRESETS:
        raise ValueError(f"unknown augmentation preset {pipe!r}; allowed: {', '.join(PRESETS)}")
    mult = {op: (1.0 if op in PRESETS[pipe] else 0.0) for op in OPS}
    for op, value in (overrides or {}).items():
        if op not in mult:
            raise ValueError(f"unknown augmentation {op!r}; allowed: {', '.join(OPS)}")
        if value is not None:
            mult[op] = float(value)
    return mult


# --------------------------------------------------------------------------------------------------
# Small helpers


def reflect_index(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into [0, n) without repeating the edge pixel (as numpy's 'reflect'), any distance."""
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def _reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflection padding by any amount (torch's own is limited to less than the image size)."""
    h, w = x.shape[-2:]
    ix = reflect_index(torch.arange(-left, w + right, device=x.device), w)
    iy = reflect_index(torch.arange(-top, h + bottom, device=x.device), h)
    return x.index_select(-1, ix).index_select(-2, iy)


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand([n], device=device) * (high - low) + low


def _where(mask: torch.Tensor, value: torch.Tensor, identity: float) -> torch.Tensor:
    return torch.where(mask, value, torch.full_like(value, identity))


def _lognormal(n: int, std: float, device) -> torch.Tensor:
    return torch.exp2(torch.randn([n], device=device) * (std / math.log(2)))


# --------------------------------------------------------------------------------------------------
# Pixel blitting


def blit(images: torch.Tensor, flip: torch.Tensor, rot: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Exact pixel copies per image: x-flip, then `rot` quarter turns (as torch.rot90 over H, W), then
    a translation by (tx, ty) whole pixels (content moves right/down for positive values), with
    reflection at the borders.

    Args:
        images: `[N, C, H, W]` (H == W when any `rot` is odd).
        flip:   `[N]` bool. rot: `[N]` integers (taken mod 4). tx, ty: `[N]` integers.
    """
    n, c, h, w = images.shape
    dev = images.device
    ys = torch.arange(h, device=dev).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, device=dev).view(1, 1, w).expand(n, h, w)
    # Walk back from an output pixel to its source: undo the translation, the rotation, the flip.
    ys = reflect_index(ys - ty.view(n, 1, 1).to(ys), h)
    xs = reflect_index(xs - tx.view(n, 1, 1).to(xs), w)
    k = torch.remainder(rot.to(torch.int64), 4).view(n, 1, 1)
    if h != w and bool((k % 2 != 0).any()):
        raise ValueError("90-degree rotations need square images")
    # torch.rot90 by one quarter turn: out[y, x] = in[x, W - 1 - y]; two: in[H-1-y, W-1-x]; three: in[H-1-x, y].
    src_y = torch.where(k == 1, xs, torch.where(k == 2, h - 1 - ys, torch.where(k == 3, w - 1 - xs, ys)))
    src_x = torch.where(k == 1, w - 1 - ys, torch.where(k == 2, w - 1 - xs, torch.where(k == 3, ys, xs)))
    src_x = torch.where(flip.view(n, 1, 1), w - 1 - src_x, src_x)
    index = (src_y * w + src_x).view(n, 1, h * w).expand(n, c, h * w)
    return images.flatten(2).gather(2, index).view(n, c, h, w)


# --------------------------------------------------------------------------------------------------
# General geometric transformations


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """`[N, 3, 3]` homogeneous translation matrices."""
    m = torch.eye(3, device=tx.device, dtype=tx.dtype).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=sx.device, dtype=sx.dtype).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by `theta` radians (from +x towards +y, i.e. clockwise on screen where y points down)."""
    m = torch.eye(3, device=theta.device, dtype=theta.dtype).repeat(theta.shape[0], 1, 1)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def lanczos_resampling_filter(a: int = 3) -> torch.Tensor:
    """The `4a`-tap Lanczos-a kernel for 2x resampling, sampled at the half-pixel offsets of the 2x grid.

    Taps at t = +-0.5, +-1.5, ... (2x-grid units), value sinc(t / 2) * sinc(t / 2a). Both polyphase
    halves have the same sum, so constants are reproduced exactly after normalisation.
    """
    t = np.arange(4 * a) - (4 * a - 1) / 2
    taps = np.sinc(t / 2) * np.sinc(t / (2 * a))
    return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)


DENSE_RESAMPLING_MAX = 1024  # CPU images up to this size (padded) resample by dense matrix products (measured faster)


def resample_separable(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1, padding=(0, 0),
                       gain: float = 1, dense: bool | None = None) -> torch.Tensor:
    """The 1-D `upfirdn2d` with filter `f` along x, then along y (same up, down, padding, gain per axis).

    dense: compute it as two products with the op's matrix (row i = the response to pixel i). On a
    CPU, for small images, these are several times faster than depthwise convolutions and give the
    same result; for large images or on a GPU the convolutions win. None: choose by device and size.
    """
    from gancli.ops.upfirdn2d import upfirdn2d

    h, w = x.shape[-2:]
    if dense is None:
        dense = x.device.type == "cpu" and max(h, w) <= DENSE_RESAMPLING_MAX
    if not dense:
        x = upfirdn2d(x, f[None, :], up=(up, 1), down=(down, 1), padding=[padding[0], padding[1], 0, 0], gain=gain)
        return upfirdn2d(x, f[:, None], up=(1, up), down=(1, down), padding=[0, 0, padding[0], padding[1]], gain=gain)

    def matrix(size: int) -> torch.Tensor:
        eye = torch.eye(size, device=x.device, dtype=torch.float32)[None, None]
        m = upfirdn2d(eye, f[None, :], up=(up, 1), down=(down, 1), padding=[padding[0], padding[1], 0, 0], gain=gain)
        return m[0, 0].to(x.dtype)

    return matrix(h).T @ (x @ matrix(w))


def resample_affine(images: torch.Tensor, inverse: torch.Tensor, filt: torch.Tensor | None = None,
                    max_pad: int | None = None, dense: bool | None = None) -> torch.Tensor:
    """Warp images by per-image affine maps with high-quality resampling.

    Args:
        images:  `[N, C, H, W]`.
        inverse: `[N, 3, 3]`: maps output coordinates to input coordinates, both in pixels relative to
                 the image centre (x right, y down).
        filt:    1-D low-pass filter for the 2x up- and downsampling (default: Lanczos-3, 12 taps).
        max_pad: upper bound on the reflection padding (default: twice the image size); the rare
                 samples beyond it are reflected by grid_sample itself.
        dense:   resampling by matrix products or by convolutions (`resample_separable`; None: auto).

    The image is reflect-padded as far as the transformed output reaches, upsampled 2x with the
    filter, sampled bilinearly at the positions of a 2x-supersampled output, then filtered and
    decimated back to H x W.
    """
    n, c, h, w = images.shape
    dev, dtype = images.device, images.dtype
    f = (filt if filt is not None else lanczos_resampling_filter()).to(dev)
    taps = int(f.shape[0])
    m = (taps - 2) // 2  # margin of the supersampled grid so that decimation needs no zero padding
    # Centres of the supersampled output pixels, in input pixel units relative to the image centre.
    gx = (torch.arange(-m, 2 * w + m, device=dev, dtype=torch.float32) + 0.5) / 2 - w / 2
    gy = (torch.arange(-m, 2 * h + m, device=dev, dtype=torch.float32) + 0.5) / 2 - h / 2
    gy, gx = torch.meshgrid(gy, gx, indexing="ij")
    inv = inverse.to(device=dev, dtype=torch.float32)
    src_x = inv[:, 0, 0, None, None] * gx + inv[:, 0, 1, None, None] * gy + inv[:, 0, 2, None, None] + w / 2
    src_y = inv[:, 1, 0, None, None] * gx + inv[:, 1, 1, None, None] * gy + inv[:, 1, 2, None, None] + h / 2
    # Reflection padding that covers every source position plus the filter's reach (taps / 4 pixels).
    reach = taps // 4 + 2
    need = max(float(torch.stack([(-src_x).max(), (src_x - w).max(), (-src_y).max(), (src_y - h).max()]).max()), 0.0)
    pad = min(int(math.ceil(need)) + reach, max_pad if max_pad is not None else 2 * max(h, w))
    padded = _reflect_pad(images, pad, pad, pad, pad)
    # Separable 2x upsampling (rows, then columns): [N, C, 2(H + 2 pad), 2(W + 2 pad)], pixel k of the
    # result centred at (k + 0.5) / 2 - pad input pixels. The filter's own zero padding only touches
    # the outer `taps / 4` pixels of the reflection padding, which no sample reaches.
    up = resample_separable(padded, f, up=2, padding=((taps + 1) // 2, (taps - 2) // 2), gain=2, dense=dense)
    grid = torch.stack([2 * (src_x + pad) / (w + 2 * pad) - 1, 2 * (src_y + pad) / (h + 2 * pad) - 1], dim=-1)
    sampled = F.grid_sample(up, grid.to(up.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    return resample_separable(sampled, f, down=2, dense=dense).to(dtype)


# --------------------------------------------------------------------------------------------------
# Colour transformations (4x4 affine matrices acting on [r, g, b, 1])


def _eye4(n: int, device) -> torch.Tensor:
    return torch.eye(4, device=device).repeat(n, 1, 1)


def brightness_matrix(b: torch.Tensor) -> torch.Tensor:
    """Add `b` to every channel."""
    m = _eye4(b.shape[0], b.device)
    m[:, :3, 3] = b[:, None]
    return m


def contrast_matrix(c: torch.Tensor) -> torch.Tensor:
    """Scale all channels around 0 (mid grey) by `c`."""
    m = _eye4(c.shape[0], c.device)
    m[:, :3, :3] *= c[:, None, None]
    return m


def _luma_projector(n: int, device) -> torch.Tensor:
    v = torch.tensor(LUMA_AXIS, device=device)
    return torch.outer(v, v).expand(n, 3, 3)


def luma_flip_matrix(flip: torch.Tensor) -> torch.Tensor:
    """I - 2 v v^T (the luma component negated, chroma kept) where `flip` is 1, identity where 0."""
    m = _eye4(flip.shape[0], flip.device)
    m[:, :3, :3] -= 2 * _luma_projector(flip.shape[0], flip.device) * flip.float()[:, None, None]
    return m


def hue_rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by `theta` about the luma axis v (Rodrigues: cos I + sin [v]x + (1 - cos) v v^T)."""
    n, dev = theta.shape[0], theta.device
    vx, vy, vz = LUMA_AXIS
    v = torch.tensor(LUMA_AXIS, device=dev)
    cross = torch.tensor([[0.0, -vz, vy], [vz, 0.0, -vx], [-vy, vx, 0.0]], device=dev)  # [v]x: [v]x a = v x a
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    m = _eye4(n, dev)
    m[:, :3, :3] = c * torch.eye(3, device=dev) + s * cross + (1 - c) * torch.outer(v, v)
    return m


def saturation_matrix(s: torch.Tensor) -> torch.Tensor:
    """v v^T + s (I - v v^T): chroma scaled by `s`, luma kept."""
    n, dev = s.shape[0], s.device
    proj = _luma_projector(n, dev)
    m = _eye4(n, dev)
    m[:, :3, :3] = proj + (torch.eye(3, device=dev) - proj) * s[:, None, None]
    return m


def apply_color_matrix(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply `[N, 4, 4]` affine colour matrices to RGB images (grey images: to (y, y, y), then the mean)."""
    matrix = matrix.to(images.dtype)
    if images.shape[1] == 3:
        return torch.einsum("nij,njhw->nihw", matrix[:, :3, :3], images) + matrix[:, :3, 3, None, None]
    if images.shape[1] == 1:
        gain = matrix[:, :3, :3].sum(dim=2).mean(dim=1)
        return images * gain[:, None, None, None] + matrix[:, :3, 3].mean(dim=1)[:, None, None, None]
    raise ValueError(f"colour augmentations need 1 or 3 channels, got {images.shape[1]}")


# --------------------------------------------------------------------------------------------------
# Image-space filtering


def band_filters(taps: int = 31) -> torch.Tensor:
    """`[4, taps]` linear-phase band-pass filters for [0, pi/8], [pi/8, pi/4], [pi/4, pi/2], [pi/2, pi].

    Each band is the difference of two Hann-windowed sinc low-passes (each normalised to unit DC
    gain); the low-pass at pi is the unit impulse, so the four bands sum exactly to the identity.
    """
    t = np.arange(taps) - (taps - 1) / 2
    window = 0.5 + 0.5 * np.cos(2 * np.pi * t / (taps + 1))

    def lowpass(cutoff: float) -> np.ndarray:
        if cutoff >= np.pi:
            return (t == 0).astype(np.float64)
        h = cutoff / np.pi * np.sinc(cutoff / np.pi * t) * window
        return h / h.sum()

    edges = [lowpass(e) if e > 0 else np.zeros(taps) for e in BAND_EDGES]
    return torch.as_tensor(np.stack([edges[i + 1] - edges[i] for i in range(4)]), dtype=torch.float32)


def filter_per_image(images: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Filter each image with its own symmetric 1-D filter `h [N, taps]` along x, then along y (reflect padding)."""
    n, c, height, width = images.shape
    taps = h.shape[1]
    pad = taps // 2
    weight = h.to(images.dtype).repeat_interleave(c, dim=0)  # [N * C, taps]
    x = _reflect_pad(images, pad, pad, 0, 0).reshape(1, n * c, height, width + 2 * pad)
    x = F.conv2d(x, weight[:, None, None, :], groups=n * c)
    x = _reflect_pad(x, 0, 0, pad, pad)
    x = F.conv2d(x, weight[:, None, :, None], groups=n * c)
    return x.reshape(n, c, height, width)


# --------------------------------------------------------------------------------------------------
# The pipeline


class AugmentPipe(torch.nn.Module):
    """The ADA pipeline. `p` (a buffer) is the base probability; op `k` is applied to an image with
    probability `p * multipliers[k]` (clamped to [0, 1]). Call it on `[N, C, H, W]` images in [-1, 1]."""

    def __init__(self, multipliers: dict[str, float], p: float = 0.0):
        super().__init__()
        unknown = set(multipliers) - set(OPS)
        if unknown:
            raise ValueError(f"unknown augmentations {sorted(unknown)}; allowed: {', '.join(OPS)}")
        self.multipliers = {op: float(multipliers.get(op, 0.0)) for op in OPS}
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("resample_filter", lanczos_resampling_filter())
        self.register_buffer("band_filters", band_filters())

    def extra_repr(self) -> str:
        on = [f"{op}={m:g}" for op, m in self.multipliers.items() if m > 0]
        return "ops: " + (", ".join(on) or "none")

    def _prob(self, op: str) -> torch.Tensor:
        return (self.p * self.multipliers[op]).clamp(0, 1)

    def _draw(self, op: str, n: int, device) -> torch.Tensor:
        """`[N]` bool: which images get op `op` this time."""
        return torch.rand([n], device=device) < self._prob(op)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        dev = images.device
        on = {op: m > 0 for op, m in self.multipliers.items()}
        if float(self.p) <= 0:  # the common start of a run: nothing to draw, nothing to compute
            return images
        if on["rotate90"] and h != w:
            raise ValueError(f"90-degree rotations need square images, got {h}x{w}")

        # 1. Pixel blitting.
        if on["xflip"] or on["rotate90"] or on["xint"]:
            zero = torch.zeros([n], device=dev, dtype=torch.int64)
            flip = (torch.randint(2, [n], device=dev) == 1) & self._draw("xflip", n, dev) if on["xflip"] else zero.bool()
            rot = torch.where(self._draw("rotate90", n, dev), torch.randint(4, [n], device=dev), zero) if on["rotate90"] else zero
            tx = ty = zero
            if on["xint"]:
                moved = self._draw("xint", n, dev)
                tx = torch.where(moved, torch.round(_uniform(n, -XINT_MAX, XINT_MAX, dev) * w).long(), zero)
                ty = torch.where(moved, torch.round(_uniform(n, -XINT_MAX, XINT_MAX, dev) * h).long(), zero)
            images = blit(images, flip, rot, tx, ty)

        # 2. General geometric transformations: build the inverse map (output -> input), then resample.
        if any(on[op] for op in GEOM_OPS):
            inv = torch.eye(3, device=dev).repeat(n, 1, 1)
            changed = torch.zeros([n], device=dev, dtype=torch.bool)
            if on["scale"]:
                mask = self._draw("scale", n, dev)
                s = _where(mask, _lognormal(n, SCALE_STD, dev), 1.0)
                inv, changed = inv @ scale2d(1 / s, 1 / s), changed | mask
            # Two rotations, each with probability 1 - sqrt(1 - p'), so that some rotation has probability p'.
            p_rot = 1 - torch.sqrt((1 - self._prob("rotate")).clamp(0, 1))

            def random_rotation(inv, changed):
                mask = torch.rand([n], device=dev) < p_rot
                theta = _where(mask, _uniform(n, -math.pi, math.pi, dev), 0.0)
                return inv @ rotate2d(-theta), changed | mask

            if on["rotate"]:  # pre-rotation
                inv, changed = random_rotation(inv, changed)
            if on["aniso"]:
                mask = self._draw("aniso", n, dev)
                s = _where(mask, _lognormal(n, SCALE_STD, dev), 1.0)
                inv, changed = inv @ scale2d(1 / s, s), changed | mask
            if on["rotate"]:  # post-rotation
                inv, changed = random_rotation(inv, changed)
            if on["xfrac"]:
                mask = self._draw("xfrac", n, dev)
                t = torch.randn([2, n], device=dev) * XFRAC_STD * mask
                inv, changed = inv @ translate2d(-t[0] * w, -t[1] * h), changed | mask
            # The forward map is T Rpost A Rpre S; `inv` was built as S^-1 Rpre^-1 A^-1 Rpost^-1 T^-1.
            idx = changed.nonzero().flatten()
            if idx.numel():
                warped = resample_affine(images.index_select(0, idx), inv.index_select(0, idx), self.resample_filter)
                images = images.index_copy(0, idx, warped)

        # 3. Colour: C = saturation @ hue @ lumaflip @ contrast @ brightness.
        if any(on[op] for op in COLOR_OPS):
            color = _eye4(n, dev)
            changed = torch.zeros([n], device=dev, dtype=torch.bool)
            if on["brightness"]:
                mask = self._draw("brightness", n, dev)
                color, changed = brightness_matrix(torch.randn([n], device=dev) * BRIGHTNESS_STD * mask) @ color, changed | mask
            if on["contrast"]:
                mask = self._draw("contrast", n, dev)
                color, changed = contrast_matrix(_where(mask, _lognormal(n, CONTRAST_STD, dev), 1.0)) @ color, changed | mask
            if on["lumaflip"]:
                mask = self._draw("lumaflip", n, dev)
                color, changed = luma_flip_matrix(torch.randint(2, [n], device=dev) * mask) @ color, changed | mask
            if on["hue"]:
                mask = self._draw("hue", n, dev)
                theta = _where(mask, _uniform(n, -math.pi, math.pi, dev), 0.0)
                color, changed = hue_rotation_matrix(theta) @ color, changed | mask
            if on["saturation"]:
                mask = self._draw("saturation", n, dev)
                color, changed = saturation_matrix(_where(mask, _lognormal(n, SATURATION_STD, dev), 1.0)) @ color, changed | mask
            images = torch.where(changed[:, None, None, None], apply_color_matrix(images, color), images)

        # 4. Image-space filtering: a random gain per band, renormalised to keep the expected energy.
        if on["imgfilter"]:
            mask = torch.rand([n, 4], device=dev) < self._prob("imgfilter")
            gains = torch.where(mask, torch.exp2(torch.randn([n, 4], device=dev) * (BAND_GAIN_STD / math.log(2))),
                                torch.ones([n, 4], device=dev))
            expected = torch.tensor(BAND_EXPECTED_POWER, device=dev)
            gains = gains / (gains.square() * expected).sum(dim=1, keepdim=True).sqrt()
            idx = mask.any(dim=1).nonzero().flatten()
            if idx.numel():
                h1d = gains.index_select(0, idx) @ self.band_filters
                images = images.index_copy(0, idx, filter_per_image(images.index_select(0, idx), h1d))

        # 5. Corruptions.
        if on["noise"]:
            mask = self._draw("noise", n, dev)
            sigma = torch.randn([n], device=dev).abs() * NOISE_STD * mask
            images = images + torch.randn_like(images) * sigma[:, None, None, None].to(images.dtype)
        if on["cutout"]:
            mask = self._draw("cutout", n, dev)
            centre = torch.rand([n, 2], device=dev)
            ys = (torch.arange(h, device=dev) + 0.5) / h
            xs = (torch.arange(w, device=dev) + 0.5) / w
            inside_x = (xs[None, :] - centre[:, 0:1]).abs() < CUTOUT_SIZE / 2  # [N, W]
            inside_y = (ys[None, :] - centre[:, 1:2]).abs() < CUTOUT_SIZE / 2  # [N, H]
            cut = inside_y[:, :, None] & inside_x[:, None, :] & mask[:, None, None]
            images = images * (~cut)[:, None].to(images.dtype)
        return images


def build_augment_pipe(cfg) -> AugmentPipe:
    """The pipeline of a recipe's `augment` section (`gancli.recipe.AugmentConfig`)."""
    overrides = {op: getattr(cfg, op) for op in OPS}
    return AugmentPipe(preset_multipliers(cfg.pipe, overrides), p=cfg.p)


# --------------------------------------------------------------------------------------------------
# Adaptive p


class AdaController:
    """Tunes the pipeline's p from the overfitting heuristic r_t = E[sign(D(real))] (ADA, Section 3).

    The loss calls `record(real_logits)` for the reals of every main D phase. Every `interval`
    minibatches the trainer calls `update()`:

        p <- clamp(p + sign(r_t - target) * batch * interval / (speed_kimg * 1000), 0, 1)

    so p can go from 0 to 1 in `speed_kimg` thousand images. r_t is over the reals since the last
    update. p is clamped to [0, 1] (it is a probability; the official code only clamps at 0, which
    lets p wander above 1 where every op is always applied anyway and then has to come back down
    before anything changes). `adaptive=False` keeps p fixed.

    The statistics are one tensor `signs = [sum of sign(D(real)), count]` on the training device:
    a multi-GPU trainer all-reduces it across ranks in one call (sum) before `update()`, so that
    every rank computes the same p. Recording and updating never sync the device. Both p and
    `signs` are training state (`state_dict`), so resume is exact.
    """

    def __init__(self, pipe: AugmentPipe, *, target: float, speed_kimg: float, interval: int, batch: int,
                 adaptive: bool = True):
        self.pipe = pipe
        self.target = target
        self.speed_kimg = speed_kimg
        self.interval = interval
        self.batch = batch
        self.adaptive = adaptive
        self.signs = torch.zeros([2], device=pipe.p.device)

    @property
    def p(self) -> torch.Tensor:
        return self.pipe.p

    def to(self, device) -> AdaController:
        self.pipe.to(device)
        self.signs = self.signs.to(device)
        return self

    def record(self, real_logits: torch.Tensor) -> None:
        """Add sign(D(real)) of a batch of real logits to the running (sum, count)."""
        logits = real_logits.detach().float()
        self.signs += torch.stack([logits.sign().sum(), torch.tensor(float(logits.numel()), device=logits.device)])

    @property
    def step_size(self) -> float:
        """How much one update moves p."""
        return self.batch * self.interval / (self.speed_kimg * 1000)

    @torch.no_grad()
    def update(self) -> None:
        """Move p by one step towards keeping r_t at the target; reset the statistics."""
        if self.adaptive:
            total, count = self.signs[0], self.signs[1]
            r_t = total / count.clamp(min=1)
            adjust = torch.sign(r_t - self.target) * self.step_size * (count > 0)
            self.pipe.p.copy_((self.pipe.p + adjust).clamp(0, 1))
        self.signs.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.pipe.p.detach().cpu().clone(), "signs": self.signs.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipe.p.copy_(torch.as_tensor(state["p"], dtype=torch.float32).to(self.pipe.p.device))
        self.signs = torch.as_tensor(state["signs"], dtype=torch.float32).to(self.pipe.p.device).clone()
