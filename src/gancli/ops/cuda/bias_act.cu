// Fused bias + activation + gain + clamp, and its derivatives, as one elementwise CUDA kernel.
//
// Written for gancli from the definition in gancli/ops/bias_act.py (the reference implementation):
// each activation's value, first and second derivative are spelled out below, matching the PyTorch
// functions the reference calls (including their conventions at 0 and softplus' threshold of 20).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

#include "ops.h"

namespace gancli {
namespace {

constexpr float kSeluScale = 1.0507009873554804934193349852946f;
constexpr float kSeluAlpha = 1.6732632423543772848170429916717f;
constexpr float kSoftplusThreshold = 20.0f;

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

// The `order`-th derivative (0 = the value) of activation `act` at z, before the gain.
__device__ __forceinline__ float activation(int act, int order, float z, float alpha) {
  switch (act) {
    case kLinear:
      return order == 0 ? z : (order == 1 ? 1.0f : 0.0f);
    case kRelu:  // torch: gradient 0 at z == 0
      if (order == 0) return z > 0.0f ? z : 0.0f;
      return order == 1 ? (z > 0.0f ? 1.0f : 0.0f) : 0.0f;
    case kLrelu:  // torch: slope alpha at z == 0
      if (order == 0) return z > 0.0f ? z : z * alpha;
      return order == 1 ? (z > 0.0f ? 1.0f : alpha) : 0.0f;
    case kTanh: {
      const float t = tanhf(z);
      if (order == 0) return t;
      const float d = 1.0f - t * t;
      return order == 1 ? d : -2.0f * t * d;
    }
    case kSigmoid: {
      const float s = sigmoid(z);
      if (order == 0) return s;
      const float d = s * (1.0f - s);
      return order == 1 ? d : d * (1.0f - 2.0f * s);
    }
    case kElu:  // alpha = 1, as torch.nn.functional.elu's default
      if (order == 0) return z > 0.0f ? z : expm1f(z);
      if (z > 0.0f) return order == 1 ? 1.0f : 0.0f;
      return expf(z);
    case kSelu:
      if (order == 0) return z > 0.0f ? kSeluScale * z : kSeluScale * kSeluAlpha * expm1f(z);
      if (z > 0.0f) return order == 1 ? kSeluScale : 0.0f;
      return kSeluScale * kSeluAlpha * expf(z);
    case kSoftplus: {  // beta 1, linear above the threshold
      if (z > kSoftplusThreshold) return order == 0 ? z : (order == 1 ? 1.0f : 0.0f);
      if (order == 0) return log1pf(expf(z));
      const float s = sigmoid(z);
      return order == 1 ? s : s * (1.0f - s);
    }
    case kSwish: {  // z * sigmoid(z)
      const float s = sigmoid(z);
      if (order == 0) return z * s;
      if (order == 1) return s * (1.0f + z * (1.0f - s));
      return s * (1.0f - s) * (2.0f + z * (1.0f - 2.0f * s));
    }
    default:
      return 0.0f;
  }
}

struct BiasActParams {
  int64_t numel;
  int64_t bias_stride;  // x.stride(dim): memory offset / bias_stride % bias_size = index along dim
  int64_t bias_size;
  int act;
  int order;
  float alpha;
  float gain;
  float clamp;  // < 0: no clamping
};

template <typename scalar_t>
__global__ void bias_act_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                const scalar_t* __restrict__ b, const scalar_t* __restrict__ grad,
                                BiasActParams p) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    float z = static_cast<float>(x[i]);
    if (b != nullptr) z += static_cast<float>(b[(i / p.bias_stride) % p.bias_size]);
    float v;
    if (p.order == 0) {
      v = activation(p.act, 0, z, p.alpha) * p.gain;
      if (p.clamp >= 0.0f) v = v < -p.clamp ? -p.clamp : (v > p.clamp ? p.clamp : v);  // NaN stays NaN
    } else {
      float d = activation(p.act, p.order, z, p.alpha) * p.gain;
      if (p.clamp >= 0.0f) {
        const float y = activation(p.act, 0, z, p.alpha) * p.gain;
        if (!(y >= -p.clamp && y <= p.clamp)) d = 0.0f;  // clamp passes gradient on [-clamp, clamp]
      }
      v = static_cast<float>(grad[i]) * d;
    }
    out[i] = static_cast<scalar_t>(v);
  }
}

}  // namespace

at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& grad, int64_t act,
                         double alpha, double gain, double clamp, int64_t order, int64_t dim) {
  at::Tensor out = at::empty_like(x);  // same strides as x (x is dense)
  BiasActParams p;
  p.numel = x.numel();
  p.bias_stride = b.defined() ? x.stride(dim) : 1;
  p.bias_size = b.defined() ? x.size(dim) : 1;
  p.act = static_cast<int>(act);
  p.order = static_cast<int>(order);
  p.alpha = static_cast<float>(alpha);
  p.gain = static_cast<float>(gain);
  p.clamp = static_cast<float>(clamp);
  if (p.numel == 0) return out;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + threads - 1) / threads, 65536);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "gancli_bias_act", [&] {
    bias_act_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        b.defined() ? b.data_ptr<scalar_t>() : nullptr,
        order > 0 ? grad.data_ptr<scalar_t>() : nullptr, p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace gancli
