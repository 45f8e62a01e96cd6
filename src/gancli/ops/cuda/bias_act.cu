// Launcher of the fused bias + activation kernel (the kernel body is in bias_act_kernel.cuh).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "bias_act_kernel.cuh"
#include "ops.h"

namespace gancli {

at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& grad, int64_t act,
                         double alpha, double gain, double clamp, int64_t order, int64_t dim) {
  at::Tensor out = at::empty_like(x);  // same strides as x (x is dense)
  detail::BiasActParams p;
  p.numel = x.numel();
  p.bias_stride = b.defined() ? x.stride(dim) : 1;
  p.bias_size = b.defined() ? x.size(dim) : 1;
  p.act = static_cast<int>(act);
  p.order = static_cast<int>(order);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  if (p.numel == 0) return out;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + threads - 1) / threads, 65536);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "gancli_bias_act", [&] {
    detail::bias_act_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), b.defined() ? b.data_ptr<scalar_t>() : nullptr,
        order > 0 ? grad.data_ptr<scalar_t>() : nullptr, p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace gancli
