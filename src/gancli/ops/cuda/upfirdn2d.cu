// Launcher of the upfirdn2d kernel (the kernel body is in upfirdn2d_kernel.cuh).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "ops.h"
#include "upfirdn2d_kernel.cuh"

namespace gancli {

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                          int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                          bool flip_filter, double gain) {
  const int64_t batch = x.size(0), channels = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  TORCH_CHECK(in_h * upy + pady0 + pady1 >= fh && in_w * upx + padx0 + padx1 >= fw,
              "upfirdn2d: the padded image is smaller than the filter");
  const int64_t out_h = (in_h * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t out_w = (in_w * upx + padx0 + padx1 - fw) / downx + 1;
  const bool channels_last = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  at::Tensor y = at::empty({batch, channels, out_h, out_w}, x.options(),
                           channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  detail::UpfirdnParams p;
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
  p.gain = gain;
  if (p.total == 0) return y;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.total + threads - 1) / threads, 65536);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "gancli_upfirdn2d", [&] {
    using acc_t = typename detail::AccType<scalar_t>::type;
    const size_t shared = static_cast<size_t>(fh * fw) * sizeof(acc_t);
    detail::upfirdn2d_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, shared, stream>>>(
        y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), f.data_ptr<float>(), p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace gancli
