// upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample, as one CUDA kernel.
//
// Written for gancli from the definition in gancli/ops/upfirdn2d.py (the reference implementation).
// One thread computes one output pixel of one channel: it visits only the filter taps that land on
// real (not inserted-zero, not padding) input pixels, so no intermediate image is ever formed and
// any integer factors, paddings (negative = crop) and filter sizes work. The filter, pre-flipped and
// pre-scaled by the gain, sits in shared memory. Threads are laid out along the output's memory
// order (W fastest for contiguous, C fastest for channels-last) so that writes are coalesced.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

#include "ops.h"

namespace gancli {
namespace {

struct UpfirdnParams {
  int64_t total;  // output elements
  int channels, in_h, in_w, out_h, out_w;
  int64_t xs_n, xs_c, xs_h, xs_w;  // input strides (elements)
  int64_t ys_n, ys_c, ys_h, ys_w;  // output strides
  int upx, upy, downx, downy, padx0, pady0;
  int fw, fh;
  bool flip_filter;
  bool channels_last;  // thread order of the output
  float gain;
};

// First tap index t >= max(0, -origin) with (origin + t) divisible by `up`.
__device__ __forceinline__ int first_tap(int origin, int up) {
  const int lo = origin < 0 ? -origin : 0;
  int r = (origin + lo) % up;  // origin + lo >= 0
  return r == 0 ? lo : lo + (up - r);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                 const float* __restrict__ f, UpfirdnParams p) {
  extern __shared__ float taps[];  // taps[i * fw + j] multiplies the input at (uy0 + i, ux0 + j)
  const int ntaps = p.fh * p.fw;
  for (int k = threadIdx.x; k < ntaps; k += blockDim.x) {
    const int i = k / p.fw, j = k % p.fw;
    const int si = p.flip_filter ? i : p.fh - 1 - i;  // convolution = correlation with the flipped filter
    const int sj = p.flip_filter ? j : p.fw - 1 - j;
    taps[k] = f[si * p.fw + sj] * p.gain;
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
    const int i_end = min(p.fh, p.in_h * p.upy - uy0);  // (uy0 + i) / upy < in_h
    const int j_end = min(p.fw, p.in_w * p.upx - ux0);

    const scalar_t* xp = x + n * p.xs_n + c * p.xs_c;
    float acc = 0.0f;
    for (int i = i_begin; i < i_end; i += p.upy) {
      const scalar_t* row = xp + static_cast<int64_t>((uy0 + i) / p.upy) * p.xs_h;
      const float* trow = taps + i * p.fw;
      for (int j = j_begin; j < j_end; j += p.upx) {
        acc += static_cast<float>(row[static_cast<int64_t>((ux0 + j) / p.upx) * p.xs_w]) * trow[j];
      }
    }
    y[n * p.ys_n + c * p.ys_c + oy * p.ys_h + ox * p.ys_w] = static_cast<scalar_t>(acc);
  }
}

}  // namespace

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                          int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                          bool flip_filter, double gain) {
  const int64_t batch = x.size(0), channels = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t out_h = (in_h * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t out_w = (in_w * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(in_h * upy + pady0 + pady1 >= fh && in_w * upx + padx0 + padx1 >= fw,
              "upfirdn2d: the padded image is smaller than the filter");
  const bool channels_last = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  at::Tensor y = at::empty({batch, channels, out_h, out_w}, x.options(),
                           channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  UpfirdnParams p;
  p.total = y.numel();
  p.channels = static_cast<int>(channels);
  p.in_h = static_cast<int>(in_h);
  p.in_w = static_cast<int>(in_w);
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.xs_n = x.stride(0); p.xs_c = x.stride(1); p.xs_h = x.stride(2); p.xs_w = x.stride(3);
  p.ys_n = y.stride(0); p.ys_c = y.stride(1); p.ys_h = y.stride(2); p.ys_w = y.stride(3);
  p.upx = static_cast<int>(upx); p.upy = static_cast<int>(upy);
  p.downx = static_cast<int>(downx); p.downy = static_cast<int>(downy);
  p.padx0 = static_cast<int>(padx0); p.pady0 = static_cast<int>(pady0);
  p.fw = static_cast<int>(fw); p.fh = static_cast<int>(fh);
  p.flip_filter = flip_filter;
  p.channels_last = channels_last;
  p.gain = static_cast<float>(gain);
  if (p.total == 0) return y;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.total + threads - 1) / threads, 65536);
  const size_t shared = static_cast<size_t>(fh * fw) * sizeof(float);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "gancli_upfirdn2d", [&] {
    upfirdn2d_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, shared, stream>>>(
        y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), f.data_ptr<float>(), p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace gancli
