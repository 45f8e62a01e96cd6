"""FIR resampling of 2-D images: upsample, pad, filter, downsample (`upfirdn2d`).

For each channel of each image the op does, in this order:

1. upsample by inserting `up - 1` zeros after every pixel;
2. pad with zeros (a negative amount crops);
3. convolve with the FIR filter `f`, keeping only outputs whose footprint lies inside the padded image;
4. downsample by keeping every `down`-th pixel, starting with the first.

This is the 2-D analogue of `scipy.signal.upfirdn`, and the low-pass resampling that StyleGAN2 uses in
place of nearest/bilinear resizing. The reference implementation below is plain PyTorch, so every
gradient order works. It is also fast on CPU: the filter runs as one depthwise convolution whose stride
performs the downsampling, and upsampling is a depthwise transposed convolution, so no zero-stuffed
intermediate is ever materialised.

The CUDA twin (`ops/cuda/upfirdn2d.cu`) computes each output pixel directly from the input pixels its
filter taps land on. A separable (1-D) filter runs as two passes, one per axis. The gradient of
upfirdn2d is again an upfirdn2d (up and down swapped, the filter flipped, the padding mirrored), so
the CUDA path's backward calls the kernel again and gradients of every order work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gancli.ops.dispatch import cuda_extension, resolve_impl

Padding = int | Sequence[int]


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """An integer factor given as `n` or `[x, y]` -> (x, y)."""
    if isinstance(value, int | np.integer):
        value = (int(value), int(value))
    sx, sy = (int(v) for v in value)
    if sx < 1 or sy < 1:
        raise ValueError(f"{what} factors must be >= 1, got {value}")
    return sx, sy


def _padding4(padding: Padding) -> tuple[int, int, int, int]:
    """Padding given as `p`, `[px, py]` or `[x0, x1, y0, y1]` -> (x0, x1, y0, y1)."""
    if isinstance(padding, int | np.integer):
        p = int(padding)
        return p, p, p, p
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        x0, x1, y0, y1 = padding
        return x0, x1, y0, y1
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter prepared by `setup_filter` (a 1-D filter is used along both axes)."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return int(f.shape[0]), int(f.shape[0])
    return int(f.shape[1]), int(f.shape[0])


def setup_filter(
    f,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into the float32 FIR filter tensor that `upfirdn2d` expects.

    Args:
        f:           Taps: a 2-D array `[height, width]`, a 1-D array `[taps]` (the same filter along
                     both axes), a scalar, or None (the identity filter). Tensor, array or list.
        device:      Device of the result.
        normalize:   Scale the taps to sum to 1, so a constant image keeps its value.
        flip_filter: Flip the taps (turns convolution into correlation).
        gain:        Overall gain of the 2-D filter (a 1-D filter gets `sqrt(gain)`, as it runs twice).
        separable:   Keep a 1-D filter 1-D. Default: only when it has 8 or more taps; shorter filters
                     become their 2-D outer product (e.g. `[1, 3, 3, 1]` -> a 4x4 filter, which is what
                     the StyleGAN2 networks store in their `resample_filter` buffers).

    Returns:
        A float32 tensor `[height, width]`, or `[taps]` when separable.
    """
    taps = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if taps.numel() == 0 or taps.ndim > 2:
        raise ValueError(f"a filter must be a scalar, 1-D or 2-D and non-empty, got shape {list(taps.shape)}")
    taps = taps.reshape(1) if taps.ndim == 0 else taps.clone()
    if separable is None:
        separable = taps.ndim == 1 and taps.numel() >= 8
    if taps.ndim == 1 and not separable:
        taps = torch.outer(taps, taps)
    if separable and taps.ndim != 1:
        raise ValueError("a 2-D filter cannot be made separable")
    if normalize:
        taps = taps / taps.sum()
    if flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    taps = taps * (gain ** (taps.ndim / 2))
    return taps.to(device=device)


def _depthwise_kernel(
    f: torch.Tensor | None, gain: float, channels: int, x: torch.Tensor, correlate: bool
) -> torch.Tensor:
    """The FIR filter as a depthwise conv weight `[channels, 1, fh, fw]`.

    `f` is a convolution kernel (flip_filter=False). `torch.nn.functional.conv2d` correlates, so it
    needs the flipped kernel (`correlate=True`); a transposed convolution convolves, so it needs `f`
    as is.
    """
    if f is None:
        k = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    else:
        if f.requires_grad:
            raise ValueError("upfirdn2d does not differentiate with respect to the filter")
        k = torch.outer(f, f) if f.ndim == 1 else f
        k = k.to(dtype=x.dtype, device=x.device)
    if gain != 1:
        k = k * gain
    if correlate:
        k = k.flip([0, 1])
    return k.reshape(1, 1, *k.shape).expand(channels, 1, *k.shape).contiguous()


def _crop_or_pad(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) the two spatial axes.

    Defined as "pad, then crop": a crop larger than the image on one side eats into the padding on
    the other side.
    """
    if x0 == x1 == y0 == y1 == 0:
        return x
    if min(x0, x1, y0, y1) >= 0:
        return F.pad(x, [x0, x1, y0, y1])

    def split(size: int, a0: int, a1: int) -> tuple[int, int, int, int]:
        """(crop0, crop1, pad0, pad1) on an axis of `size` equal to padding (a0, a1) as pad-then-crop."""
        c0, c1, p0, p1 = max(-a0, 0), max(-a1, 0), max(a0, 0), max(a1, 0)
        if size + a0 + a1 < 0:
            raise ValueError(f"padding ({a0}, {a1}) crops more than the {size} pixels there are")
        if c0 > size:  # the excess crop removes zeros of the padding at the other end
            p1, c0 = p1 - (c0 - size), size
        if c1 > size:
            p0, c1 = p0 - (c1 - size), size
        return c0, c1, p0, p1

    h, w = x.shape[2], x.shape[3]
    cx0, cx1, px0, px1 = split(w, x0, x1)
    cy0, cy1, py0, py1 = split(h, y0, y1)
    # Crop with a view (keeps the memory format), then pad what remains positive.
    x = x[:, :, cy0 : h - cy1, cx0 : w - cx1]
    if max(px0, px1, py0, py1) > 0:
        x = F.pad(x, [px0, px1, py0, py1])
    return x


def _upfirdn2d_torch(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int],
    down: int | Sequence[int],
    padding: Padding,
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Plain-PyTorch `upfirdn2d` (the reference implementation)."""
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding4(padding)
    channels = x.shape[1]
    fw, fh = filter_size(f)

    if upx == 1 and upy == 1:
        # Pad (or crop), then one depthwise correlation; its stride does the downsampling.
        weight = _depthwise_kernel(f, gain, channels, x, correlate=not flip_filter)
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            return F.conv2d(x, weight, stride=(downy, downx), padding=(py0, px0), groups=channels)
        x = _crop_or_pad(x, px0, px1, py0, py1)
        return F.conv2d(x, weight, stride=(downy, downx), groups=channels)

    # Upsampling: a stride-`up` transposed convolution equals zero insertion followed by a "full"
    # convolution, whose output starts `fw - 1` pixels before the zero-stuffed image. Shift that to
    # the requested padding: crop `fw - 1 - px0` at the start and `fw - upx - px1` at the end
    # (negative = pad). The symmetric part of a crop is the transposed convolution's own `padding`.
    weight = _depthwise_kernel(f, gain, channels, x, correlate=flip_filter)
    cx0, cx1 = fw - 1 - px0, fw - upx - px1
    cy0, cy1 = fh - 1 - py0, fh - upy - py1
    tx = max(min(cx0, cx1), 0)
    ty = max(min(cy0, cy1), 0)
    x = F.conv_transpose2d(x, weight, stride=(upy, upx), padding=(ty, tx), groups=channels)
    x = _crop_or_pad(x, -(cx0 - tx), -(cx1 - tx), -(cy0 - ty), -(cy1 - ty))
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images, channel by channel.

    Args:
        x:           Images `[batch, channels, height, width]` (float16/32/64; any memory format).
        f:           FIR filter from `setup_filter`: `[fh, fw]`, or `[taps]` for a separable filter
                     used along both axes, or None for the identity.
        up:          Integer upsampling factor, `n` or `[x, y]`: insert `up - 1` zeros after each pixel.
        down:        Integer downsampling factor, `n` or `[x, y]`: keep every `down`-th output pixel.
        padding:     Zero padding of the upsampled image: `p`, `[px, py]` or `[x0, x1, y0, y1]`;
                     negative values crop.
        flip_filter: False = convolution with `f`, True = correlation.
        gain:        Overall signal gain (multiplies the filter).
        impl:        'auto', 'cuda', 'ref', or None for the process-wide choice (`gancli.ops.set_impl`).

    Returns:
        `[batch, channels, out_height, out_width]` with
        `out = (in * up + pad0 + pad1 - filter_size) // down + 1` per axis, same dtype as `x`.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError("upfirdn2d expects a 4-D tensor [batch, channels, height, width]")
    if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2)):
        raise ValueError("upfirdn2d expects the filter as a 1-D or 2-D tensor (see setup_filter) or None")
    if resolve_impl(impl, x) == "cuda" and _cuda_supports(x, f):
        return _upfirdn2d_cuda(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    return _upfirdn2d_torch(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


# --------------------------------------------------------------------------------------------------
# CUDA path

MAX_CUDA_TAPS = 6144  # the kernel keeps the 2-D filter in 48 KiB of shared memory (kMaxFilterTaps in ops.h)


def _cuda_supports(x: torch.Tensor, f: torch.Tensor | None) -> bool:
    """The kernel takes float16/32/64 and filters up to MAX_CUDA_TAPS taps; anything else runs the reference."""
    if x.dtype not in (torch.float16, torch.float32, torch.float64):
        return False
    return f is None or f.ndim == 1 or f.numel() <= MAX_CUDA_TAPS


def _upfirdn2d_cuda(x, f, up, down, padding, flip_filter: bool, gain: float) -> torch.Tensor:
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding4(padding)
    if f is not None and f.requires_grad:
        raise ValueError("upfirdn2d does not differentiate with respect to the filter")
    f = torch.ones(1, 1) if f is None else f
    f = f.to(device=x.device, dtype=torch.float32).contiguous()
    if f.ndim == 1:  # separable: the 2-D filter is outer(f, f); run it as two 1-D passes
        x = _Upfirdn2dCuda.apply(x, f.reshape(1, -1), (upx, 1, downx, 1, px0, px1, 0, 0), flip_filter, 1.0)
        return _Upfirdn2dCuda.apply(x, f.reshape(-1, 1), (1, upy, 1, downy, 0, 0, py0, py1), flip_filter, gain)
    return _Upfirdn2dCuda.apply(x, f, (upx, upy, downx, downy, px0, px1, py0, py1), flip_filter, gain)


def transposed_geometry(in_size: tuple[int, int], out_size: tuple[int, int], filter_hw: tuple[int, int],
                        geometry: tuple[int, ...]) -> tuple[int, ...]:
    """The (upx, upy, downx, downy, px0, px1, py0, py1) of the upfirdn2d that is the adjoint of the one
    with `geometry` mapping `in_size` (h, w) to `out_size` (h, w) with a filter of `filter_hw` (h, w).

    Per axis: zero insertion by `down`, a full convolution with the flipped filter (k - 1 padding
    before), crop the forward padding, then keep every `up`-th pixel.
    """
    upx, upy, downx, downy, px0, px1, py0, py1 = geometry
    (in_h, in_w), (out_h, out_w), (fh, fw) = in_size, out_size, filter_hw
    return (downx, downy, upx, upy,
            fw - 1 - px0, in_w * upx - out_w * downx + px0,
            fh - 1 - py0, in_h * upy - out_h * downy + py0)


def _dense4(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


class _Upfirdn2dCuda(torch.autograd.Function):
    """The CUDA kernel with a 2-D float32 filter; its backward is the adjoint upfirdn2d (this Function again)."""

    @staticmethod
    def forward(ctx, x, f, geometry, flip_filter, gain):
        x = _dense4(x)
        upx, upy, downx, downy, px0, px1, py0, py1 = geometry
        fh, fw = f.shape
        if x.shape[2] * upy + py0 + py1 < fh or x.shape[3] * upx + px0 + px1 < fw:
            raise ValueError(f"upfirdn2d: the padded image {list(x.shape[2:])} is smaller than the filter")
        y = cuda_extension().load().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1,
                                               bool(flip_filter), float(gain))
        ctx.save_for_backward(f)
        ctx.in_size = (x.shape[2], x.shape[3])
        ctx.geometry, ctx.flip_filter, ctx.gain = geometry, flip_filter, gain
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        geometry = transposed_geometry(ctx.in_size, (dy.shape[2], dy.shape[3]), tuple(f.shape), ctx.geometry)
        dx = _Upfirdn2dCuda.apply(dy, f, geometry, not ctx.flip_filter, ctx.gain)
        return dx, None, None, None, None


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """FIR-filter images, keeping their size.

    Args:
        x:           Images `[batch, channels, height, width]`.
        f:           FIR filter from `setup_filter`, or None.
        padding:     Extra padding of the output on top of the size-preserving padding
                     (`p`, `[px, py]` or `[x0, x1, y0, y1]`; negative crops).
        flip_filter: False = convolution, True = correlation.
        gain:        Overall signal gain.
        impl:        Implementation ('auto' | 'cuda' | 'ref' | None).
    """
    x0, x1, y0, y1 = _padding4(padding)
    fw, fh = filter_size(f)
    # A filter of size k needs k - 1 extra pixels; the odd one goes before the image.
    pad = [x0 + fw // 2, x1 + (fw - 1) // 2, y0 + fh // 2, y1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample images by an integer factor with a FIR low-pass filter (output = input * up).

    Args:
        x:           Images `[batch, channels, height, width]`.
        f:           FIR filter from `setup_filter`, or None (zero insertion only).
        up:          Upsampling factor, `n` or `[x, y]`.
        padding:     Extra padding of the output (`p`, `[px, py]` or `[x0, x1, y0, y1]`).
        flip_filter: False = convolution, True = correlation.
        gain:        Signal gain; the zeros inserted are compensated by an extra `up_x * up_y`.
        impl:        Implementation ('auto' | 'cuda' | 'ref' | None).
    """
    upx, upy = _pair(up, "up")
    x0, x1, y0, y1 = _padding4(padding)
    fw, fh = filter_size(f)
    pad = [x0 + (fw + upx - 1) // 2, x1 + (fw - upx) // 2, y0 + (fh + upy - 1) // 2, y1 + (fh - upy) // 2]
    return upfirdn2d(
        x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl
    )


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: int | Sequence[int] = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Downsample images by an integer factor with a FIR low-pass filter (output = input / down).

    Args:
        x:           Images `[batch, channels, height, width]`.
        f:           FIR filter from `setup_filter`, or None (plain decimation).
        down:        Downsampling factor, `n` or `[x, y]`.
        padding:     Extra padding of the input (`p`, `[px, py]` or `[x0, x1, y0, y1]`).
        flip_filter: False = convolution, True = correlation.
        gain:        Signal gain.
        impl:        Implementation ('auto' | 'cuda' | 'ref' | None).
    """
    downx, downy = _pair(down, "down")
    x0, x1, y0, y1 = _padding4(padding)
    fw, fh = filter_size(f)
    pad = [
        x0 + (fw - downx + 1) // 2,
        x1 + (fw - downx) // 2,
        y0 + (fh - downy + 1) // 2,
        y1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
