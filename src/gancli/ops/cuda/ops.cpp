// Python bindings of the gancli CUDA ops, with the argument checks. The autograd wiring lives in
// Python (gancli/ops/upfirdn2d.py and bias_act.py); these functions are plain tensor -> tensor.

#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>

#include "ops.h"

namespace {

void check_cuda_dense(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_cuda(), "gancli ops: ", what, " must be a CUDA tensor");
  TORCH_CHECK(t.is_non_overlapping_and_dense(), "gancli ops: ", what, " must be dense (no gaps or overlaps)");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf || t.scalar_type() == at::kDouble,
              "gancli ops: ", what, " must be float16, float32 or float64");
}

at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& grad,
                    int64_t act, double alpha, double gain, double clamp, int64_t order, int64_t dim) {
  check_cuda_dense(x, "x");
  TORCH_CHECK(act >= 0 && act < gancli::kNumActivations, "gancli bias_act: unknown activation code ", act);
  TORCH_CHECK(order >= 0 && order <= 2, "gancli bias_act: derivative order must be 0, 1 or 2");
  TORCH_CHECK(x.numel() < (int64_t(1) << 62), "gancli bias_act: tensor too large");
  at::Tensor bias, g;
  if (b.has_value() && b->defined()) {
    bias = *b;
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "gancli bias_act: dim out of range");
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(dim) && bias.is_contiguous(),
                "gancli bias_act: b must be a contiguous 1-D tensor with x.shape[dim] elements");
    TORCH_CHECK(bias.device() == x.device() && bias.scalar_type() == x.scalar_type(),
                "gancli bias_act: b must have x's device and dtype");
  }
  if (order > 0) {
    TORCH_CHECK(grad.has_value() && grad->defined(), "gancli bias_act: derivatives need grad");
    g = *grad;
    TORCH_CHECK(g.sizes() == x.sizes() && g.strides() == x.strides() && g.device() == x.device() &&
                    g.scalar_type() == x.scalar_type(),
                "gancli bias_act: grad must have x's shape, strides, device and dtype");
  }
  const at::cuda::OptionalCUDAGuard guard(x.device());
  return gancli::bias_act_cuda(x, bias, g, act, alpha, gain, clamp, order, dim);
}

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip_filter,
                     double gain) {
  check_cuda_dense(x, "x");
  TORCH_CHECK(x.dim() == 4, "gancli upfirdn2d: x must be [N, C, H, W]");
  TORCH_CHECK(f.is_cuda() && f.device() == x.device() && f.scalar_type() == at::kFloat && f.dim() == 2 &&
                  f.is_contiguous() && f.numel() > 0,
              "gancli upfirdn2d: f must be a contiguous 2-D float32 tensor on x's device");
  TORCH_CHECK(f.numel() <= gancli::kMaxFilterTaps, "gancli upfirdn2d: the filter has more than ", gancli::kMaxFilterTaps, " taps");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "gancli upfirdn2d: factors must be >= 1");
  TORCH_CHECK(x.size(2) * upy < (int64_t(1) << 30) && x.size(3) * upx < (int64_t(1) << 30) &&
                  x.size(1) < (int64_t(1) << 31),
              "gancli upfirdn2d: image too large");
  const at::cuda::OptionalCUDAGuard guard(x.device());
  return gancli::upfirdn2d_cuda(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gancli CUDA kernels: upfirdn2d and fused bias + activation";
  m.def("bias_act", &bias_act, "bias + activation + gain + clamp, or its derivative of order 1 or 2",
        py::arg("x"), py::arg("b"), py::arg("grad"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"), py::arg("order"), py::arg("dim"));
  m.def("upfirdn2d", &upfirdn2d, "upsample, pad, FIR filter, downsample", py::arg("x"), py::arg("f"),
        py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"), py::arg("padx0"), py::arg("padx1"),
        py::arg("pady0"), py::arg("pady1"), py::arg("flip_filter"), py::arg("gain"));
}
