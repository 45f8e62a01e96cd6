// The upfirdn2d kernel body (device code only; the launcher is in upfirdn2d.cu).
//
// Written for gancli from the definition in gancli/ops/upfirdn2d.py (the reference implementation).
// One thread computes one output pixel of one channel: it visits only the filter taps that land on
// real (not inserted-zero, not padding) input pixels, so no intermediate image is ever formed and
// any integer factors, paddings (negative = crop) and filter sizes work. The filter, pre-flipped and
// pre-scaled by the gain, sits in shared memory. Threads are laid out along the output's memory
// order (W fastest for contiguous, C fastest for channels-last) so that writes are coalesced.
#pragma once

#include <stdint.h>

#include "kernel_math.cuh"

#ifndef GANCLI_SHARED_ARRAY
#define GANCLI_SHARED_ARRAY(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace gancli {
namespace detail {

constexpr int kMaxTaps = 6144;  // 48 KiB of shared memory in float64

struct UpfirdnParams {
  int64_t total;  // output elements
  int channels, in_h, in_w, out_h, out_w;
  int64_t xs_n, xs_c, xs_h, xs_w;  // input strides (elements)
  int64_t ys_n, ys_c, ys_h, ys_w;  // output strides
  int upx, upy, downx, downy, padx0, pady0;
  int fw, fh;
  bool flip_filter;
  bool channels_last;  // thread order of the output
  double gain;
};

// First tap index t >= max(0, -origin) with (origin + t) divisible by `up`.
__device__ __forceinline__ int first_tap(int origin, int up) {
  const int lo = origin < 0 ? -origin : 0;
  const int r = (origin + lo) % up;  // origin + lo >= 0
  return r == 0 ? lo : lo + (up - r);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                 const float* __restrict__ f, UpfirdnParams p) {
  using acc_t = typename AccType<scalar_t>::type;
  GANCLI_SHARED_ARRAY(unsigned char, shared_bytes);
  acc_t* taps = reinterpret_cast<acc_t*>(shared_bytes);  // taps[i * fw + j] multiplies input (uy0 + i, ux0 + j)
  const int ntaps = p.fh * p.fw;
  for (int k = threadIdx.x; k < ntaps; k += blockDim.x) {
    const int i = k / p.fw, j = k % p.fw;
    const int si = p.flip_filter ? i : p.fh - 1 - i;  // convolution = correlation with the flipped filter
    const int sj = p.flip_filter ? j : p.fw - 1 - j;
    taps[k] = static_cast<acc_t>(f[si * p.fw + sj]) * static_cast<acc_t>(p.gain);
  }
  __syncthreads();

  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < p.total; idx += step) {
    int64_t t = idx;
    int c, ox, oy;
    if (p.channels_last) {
      c = static_cast<int>(t % p.channels); t /= p.channels;
      ox = static_cast<int>(t % p.out_w); t /= p.out_w;
      oy = static_cast<int>(t % p.out_h); t /= p.out_h;
    } else {
      ox = static_cast<int>(t % p.out_w); t /= p.out_w;
      oy = static_cast<int>(t % p.out_h); t /= p.out_h;
      c = static_cast<int>(t % p.channels); t /= p.channels;
    }
    const int64_t n = t;

    // Coordinates, in the upsampled image, of the pixel under filter tap (0, 0).
    const int uy0 = oy * p.downy - p.pady0;
    const int ux0 = ox * p.downx - p.padx0;
    const int i_begin = first_tap(uy0, p.upy);
    const int j_begin = first_tap(ux0, p.upx);
    const int i_end = m_min(p.fh, p.in_h * p.upy - uy0);  // (uy0 + i) / upy < in_h
    const int j_end = m_min(p.fw, p.in_w * p.upx - ux0);

    const scalar_t* xp = x + n * p.xs_n + c * p.xs_c;
    acc_t acc = acc_t(0);
    for (int i = i_begin; i < i_end; i += p.upy) {
      const scalar_t* row = xp + static_cast<int64_t>((uy0 + i) / p.upy) * p.xs_h;
      const acc_t* trow = taps + i * p.fw;
      for (int j = j_begin; j < j_end; j += p.upx) {
        acc += static_cast<acc_t>(row[static_cast<int64_t>((ux0 + j) / p.upx) * p.xs_w]) * trow[j];
      }
    }
    y[n * p.ys_n + c * p.ys_c + static_cast<int64_t>(oy) * p.ys_h + static_cast<int64_t>(ox) * p.ys_w] =
        static_cast<scalar_t>(acc);
  }
}

}  // namespace detail
}  // namespace gancli
