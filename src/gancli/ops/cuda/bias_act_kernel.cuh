// The bias_act kernel body (device code only; the launcher is in bias_act.cu).
//
// Written for gancli from the definition in gancli/ops/bias_act.py (the reference implementation):
// each activation's value, first and second derivative are spelled out below, matching the PyTorch
// functions the reference calls (including their conventions at 0 and softplus' threshold of 20).
#pragma once

#include <stdint.h>

#include "activation_codes.h"
#include "kernel_math.cuh"

namespace gancli {
namespace detail {

// The `order`-th derivative (0 = the value) of activation `act` at z, before the gain.
template <typename T>
__device__ __forceinline__ T activation(int act, int order, T z, T alpha) {
  const T one = T(1), zero = T(0);
  switch (act) {
    case kLinear:
      return order == 0 ? z : (order == 1 ? one : zero);
    case kRelu:  // torch: gradient 0 at z == 0
      if (order == 0) return z > zero ? z : zero;
      return order == 1 ? (z > zero ? one : zero) : zero;
    case kLrelu:  // torch: slope alpha at z == 0
      if (order == 0) return z > zero ? z : z * alpha;
      return order == 1 ? (z > zero ? one : alpha) : zero;
    case kTanh: {
      const T t = m_tanh(z);
      if (order == 0) return t;
      const T d = one - t * t;
      return order == 1 ? d : T(-2) * t * d;
    }
    case kSigmoid: {
      const T s = one / (one + m_exp(-z));
      if (order == 0) return s;
      const T d = s * (one - s);
      return order == 1 ? d : d * (one - T(2) * s);
    }
    // elu and selu: torch takes the negative branch at 0 for the first derivative, the positive one
    // for the second.
    case kElu:  // alpha = 1, as torch.nn.functional.elu's default
      if (order == 0) return z > zero ? z : m_expm1(z);
      if (order == 1) return z > zero ? one : m_exp(z);
      return z < zero ? m_exp(z) : zero;
    case kSelu: {
      const T scale = T(1.0507009873554804934193349852946), salpha = T(1.6732632423543772848170429916717);
      if (order == 0) return z > zero ? scale * z : scale * salpha * m_expm1(z);
      if (order == 1) return z > zero ? scale : scale * salpha * m_exp(z);
      return z < zero ? scale * salpha * m_exp(z) : zero;
    }
    case kSoftplus: {  // beta 1, linear above the threshold 20 (torch: from 20 on for the second derivative)
      if (order < 2 ? z > T(20) : z >= T(20)) return order == 0 ? z : (order == 1 ? one : zero);
      if (order == 0) return m_log1p(m_exp(z));
      const T s = one / (one + m_exp(-z));
      return order == 1 ? s : s * (one - s);
    }
    case kSwish: {  // z * sigmoid(z)
      const T s = one / (one + m_exp(-z));
      if (order == 0) return z * s;
      if (order == 1) return s * (one + z * (one - s));
      return s * (one - s) * (T(2) + z * (one - T(2) * s));
    }
    default:
      return zero;
  }
}

struct BiasActParams {
  int64_t numel;
  int64_t bias_stride;  // x.stride(dim): (memory offset / bias_stride) % bias_size = index along dim
  int64_t bias_size;
  int act;
  int order;
  double alpha;
  double gain;
  double clamp;  // < 0: no clamping
};

// order 0: out = clamp(act(x + b) * gain); order k: out = grad * d^k/dz[act(z) * gain] where the
// clamp passes gradient (on [-clamp, clamp], as torch.clamp does). x, grad and out share one dense
// layout; b runs along the axis whose stride is bias_stride.
template <typename scalar_t>
__global__ void bias_act_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                const scalar_t* __restrict__ b, const scalar_t* __restrict__ grad,
                                BiasActParams p) {
  using acc_t = typename AccType<scalar_t>::type;
  const acc_t alpha = static_cast<acc_t>(p.alpha), gain = static_cast<acc_t>(p.gain);
  const acc_t clamp = static_cast<acc_t>(p.clamp);
  const bool clamped = p.clamp >= 0;
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    acc_t z = static_cast<acc_t>(x[i]);
    if (b != nullptr) z += static_cast<acc_t>(b[(i / p.bias_stride) % p.bias_size]);
    acc_t v;
    if (p.order == 0) {
      v = activation<acc_t>(p.act, 0, z, alpha) * gain;
      if (clamped) v = v < -clamp ? -clamp : (v > clamp ? clamp : v);  // NaN stays NaN
    } else {
      acc_t d = activation<acc_t>(p.act, p.order, z, alpha) * gain;
      if (clamped) {
        const acc_t y = activation<acc_t>(p.act, 0, z, alpha) * gain;
        if (!(y >= -clamp && y <= clamp)) d = acc_t(0);
      }
      v = static_cast<acc_t>(grad[i]) * d;
    }
    out[i] = static_cast<scalar_t>(v);
  }
}

}  // namespace detail
}  // namespace gancli
