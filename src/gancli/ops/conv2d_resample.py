"""2-D convolution with FIR up/downsampling (`conv2d_resample`).

Definition (what the result equals): upsample the input with `upfirdn2d` (zero insertion, the padding,
FIR filter with gain `up**2`), convolve with `w` ('valid'), then FIR-filter and keep every `down`-th
pixel. Because all three steps are linear and shift-invariant they can be reordered, and each case
below picks the cheapest order:

- upsampling: a stride-`up` transposed convolution (which touches only the real pixels, a quarter of
  the zero-stuffed image for `up=2`), then the FIR filter at the new resolution;
- downsampling: the FIR filter first, then a stride-`down` convolution (which computes only the
  pixels that are kept);
- 1x1 kernels: resample on the side with fewer pixels;
- neither: a plain convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gancli.ops.upfirdn2d import Padding, _crop_or_pad, _padding4, filter_size, upfirdn2d


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    stride: int,
    groups: int,
    pad: tuple[int, int, int, int],
    correlate: bool,
) -> torch.Tensor:
    """Strided convolution with any padding (symmetric padding goes to the convolution itself)."""
    if not correlate:
        w = w.flip([2, 3])
    x0, x1, y0, y1 = pad
    if x0 == x1 >= 0 and y0 == y1 >= 0:
        return F.conv2d(x, w, b, stride=stride, padding=(y0, x0), groups=groups)
    return F.conv2d(_crop_or_pad(x, x0, x1, y0, y1), w, b, stride=stride, groups=groups)


def _add_bias(x: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return x if b is None else x + b.reshape(1, -1, 1, 1)


def _transposed_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """`[out, in/groups, kh, kw]` conv weight -> `[in, out/groups, kh, kw]` transposed-conv weight."""
    out_channels, in_per_group, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolve images with `w`, upsampling or downsampling with the FIR filter `f`.

    Args:
        x:           Input `[batch, in_channels, height, width]`.
        w:           Weight `[out_channels, in_channels // groups, kh, kw]`, same dtype as `x`.
        f:           FIR filter from `setup_filter` (None = identity) used for the resampling.
        up:          Integer upsampling factor (the output is `up` times larger, before the conv).
        down:        Integer downsampling factor.
        padding:     Zero padding of the (upsampled) input: `p`, `[px, py]` or `[x0, x1, y0, y1]`.
                     `kernel_size // 2` keeps the size "same" (times up, divided by down); the extra
                     padding the filter needs is added here.
        groups:      Grouped convolution: split the channels into this many independent groups.
        flip_weight: True = correlation (like `torch.nn.functional.conv2d`), False = convolution.
        flip_filter: False = convolution with `f`, True = correlation.
        bias:        Optional `[out_channels]` added to the result (inside the convolution when the
                     convolution is the last step, which costs nothing).

    Returns:
        `[batch, out_channels, out_height, out_width]`.
    """
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _padding4(padding)

    # The filter's own padding: centre it on the upsampled grid / on the pixels that are kept.
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if kh == 1 and kw == 1 and up == 1 and down > 1:
        # 1x1: downsample first, convolve the smaller image.
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return F.conv2d(x, w, bias, groups=groups)

    if kh == 1 and kw == 1 and up > 1 and down == 1:
        # 1x1: convolve the smaller image, then upsample.
        x = F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up, flip_filter=flip_filter)
        return _add_bias(x, bias)

    if up == 1 and down > 1:
        # Filter at full resolution, then a strided convolution that computes only the kept pixels.
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, bias, stride=down, groups=groups, pad=(0, 0, 0, 0), correlate=flip_weight)

    if up > 1:
        # Transposed convolution (zero insertion + full convolution), then the filter. The full
        # convolution already extends `k - 1` pixels before the image and `k - up` after it, so
        # the filter needs `pad - (k - 1)` and `pad - (k - up)` (negative = crop).
        wt = _transposed_weight(w if not flip_weight else w.flip([2, 3]), groups)
        qx0, qx1 = px0 - (kw - 1), px1 - (kw - up)
        qy0, qy1 = py0 - (kh - 1), py1 - (kh - up)
        tx = max(min(-qx0, -qx1), 0)
        ty = max(min(-qy0, -qy1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=(ty, tx), groups=groups)
        x = upfirdn2d(
            x, f, padding=[qx0 + tx, qx1 + tx, qy0 + ty, qy1 + ty], gain=up * up, flip_filter=flip_filter
        )
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return _add_bias(x, bias)

    # No resampling.
    return _conv(x, w, bias, stride=1, groups=groups, pad=(px0, px1, py0, py1), correlate=flip_weight)
