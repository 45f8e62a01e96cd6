// Math helpers shared by the gancli kernels: the accumulation type per storage type, and float/double
// overloads of the functions the kernels use. Header-only, and free of CUDA runtime calls, so that
// the kernel bodies can also be compiled for the CPU (tests/cuda_emulation checks them there).
#pragma once

#include <math.h>

namespace gancli {
namespace detail {

// float16 and float32 are computed in float32, float64 in float64.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

__device__ __forceinline__ float m_exp(float v) { return expf(v); }
__device__ __forceinline__ double m_exp(double v) { return exp(v); }
__device__ __forceinline__ float m_expm1(float v) { return expm1f(v); }
__device__ __forceinline__ double m_expm1(double v) { return expm1(v); }
__device__ __forceinline__ float m_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double m_log1p(double v) { return log1p(v); }
__device__ __forceinline__ float m_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double m_tanh(double v) { return tanh(v); }
__device__ __forceinline__ int m_min(int a, int b) { return a < b ? a : b; }

}  // namespace detail
}  // namespace gancli
