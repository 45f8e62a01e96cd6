// The gancli CUDA kernel bodies compiled for the CPU, for tests on machines without a GPU.
//
// CUDA's keywords become plain C++, and a launch runs its blocks and threads one after another. Each
// kernel is written as grid-stride loops, so this visits exactly the elements a GPU launch would,
// with the same index arithmetic. upfirdn2d is run with one thread per block (its blocks first fill
// shared memory, then synchronise, which a sequential loop cannot interleave across threads).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
#define __restrict__
#define GANCLI_SHARED_ARRAY(type, name) alignas(16) static type name[6144 * 8]

struct EmulatedDim3 {
  unsigned x, y, z;
};
static EmulatedDim3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
static inline void __syncthreads() {}

#include "../../src/gancli/ops/cuda/bias_act_kernel.cuh"
#include "../../src/gancli/ops/cuda/upfirdn2d_kernel.cuh"

namespace py = pybind11;

template <typename F>
static void launch(unsigned blocks, unsigned threads, F kernel) {
  gridDim = {blocks, 1, 1};
  blockDim = {threads, 1, 1};
  for (unsigned b = 0; b < blocks; ++b) {
    for (unsigned t = 0; t < threads; ++t) {
      blockIdx = {b, 0, 0};
      threadIdx = {t, 0, 0};
      kernel();
    }
  }
}

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
static Array<T> bias_act(Array<T> x, Array<T> b, Array<T> grad, int64_t bias_stride, int64_t bias_size, int act,
                         int order, double alpha, double gain, double clamp, unsigned blocks, unsigned threads) {
  const int64_t n = x.size();
  if (order > 0 && grad.size() != n) throw std::invalid_argument("grad must have x's size");
  Array<T> out(n);
  gancli::detail::BiasActParams p{n, bias_stride, bias_size, act, order, alpha, gain, clamp};
  const T* bp = b.size() ? b.data() : nullptr;
  const T* gp = order > 0 ? grad.data() : nullptr;
  T* op = out.mutable_data();
  launch(blocks, threads, [&] { gancli::detail::bias_act_kernel<T>(op, x.data(), bp, gp, p); });
  return out;
}

// x: the input's memory (dense, any layout), with its logical strides; returns the output's memory.
template <typename T>
static Array<T> upfirdn2d(Array<T> x, std::vector<int64_t> x_strides, std::vector<int64_t> in_shape,
                          Array<float> f, std::vector<int64_t> out_shape, std::vector<int64_t> out_strides,
                          bool channels_last, int upx, int upy, int downx, int downy, int padx0, int pady0,
                          bool flip_filter, double gain, unsigned blocks) {
  if (f.ndim() != 2 || f.size() > gancli::detail::kMaxTaps) throw std::invalid_argument("bad filter");
  gancli::detail::UpfirdnParams p;
  p.total = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3];
  p.channels = static_cast<int>(in_shape[1]);
  p.in_h = static_cast<int>(in_shape[2]);
  p.in_w = static_cast<int>(in_shape[3]);
  p.out_h = static_cast<int>(out_shape[2]);
  p.out_w = static_cast<int>(out_shape[3]);
  p.xs_n = x_strides[0]; p.xs_c = x_strides[1]; p.xs_h = x_strides[2]; p.xs_w = x_strides[3];
  p.ys_n = out_strides[0]; p.ys_c = out_strides[1]; p.ys_h = out_strides[2]; p.ys_w = out_strides[3];
  p.upx = upx; p.upy = upy; p.downx = downx; p.downy = downy; p.padx0 = padx0; p.pady0 = pady0;
  p.fh = static_cast<int>(f.shape(0));
  p.fw = static_cast<int>(f.shape(1));
  p.flip_filter = flip_filter;
  p.channels_last = channels_last;
  p.gain = gain;
  Array<T> out(p.total);
  T* op = out.mutable_data();
  for (int64_t i = 0; i < p.total; ++i) op[i] = T(-12345);  // every element must be written
  launch(blocks, 1, [&] { gancli::detail::upfirdn2d_kernel<T>(op, x.data(), f.data(), p); });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act_f64", &bias_act<double>);
  m.def("bias_act_f32", &bias_act<float>);
  m.def("upfirdn2d_f64", &upfirdn2d<double>);
  m.def("upfirdn2d_f32", &upfirdn2d<float>);
}
