// gancli CUDA ops: declarations shared by the bindings (ops.cpp) and the kernels (*.cu).
// Argument checking happens in ops.cpp; the launchers assume valid, dense CUDA tensors.
#pragma once

#include <ATen/ATen.h>

#include "activation_codes.h"

namespace gancli {

// Most filter taps upfirdn2d_cuda takes (they sit in 48 KiB of shared memory, as float64 at worst);
// gancli/ops/upfirdn2d.py sends larger filters to the reference. Equals detail::kMaxTaps.
constexpr int64_t kMaxFilterTaps = 6144;

// order 0: clamp(act(x + b) * gain, -clamp, clamp)
// order k > 0: grad * gain * act^(k)(x + b), zero where act(x + b) * gain lies outside [-clamp, clamp].
// b may be undefined (no bias); it runs along `dim` of x. clamp < 0 means no clamping.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& grad, int64_t act,
                         double alpha, double gain, double clamp, int64_t order, int64_t dim);

// y = downsample(correlate(pad(upsample(x)), taps) * gain), per image and channel, where `taps` is the
// 2-D float32 filter f (flipped unless flip_filter). x is [N, C, H, W] in any dense layout; y gets x's
// memory format (contiguous or channels-last).
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                          int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                          bool flip_filter, double gain);

}  // namespace gancli
