// Activation codes of the bias_act kernel (no dependencies: the kernel body includes this too).
#pragma once

namespace gancli {

// The order matches ACTIVATION_CODES in gancli/ops/bias_act.py (a test checks it).
enum ActivationCode : int {
  kLinear = 0,
  kRelu = 1,
  kLrelu = 2,
  kTanh = 3,
  kSigmoid = 4,
  kElu = 5,
  kSelu = 6,
  kSoftplus = 7,
  kSwish = 8,
  kNumActivations = 9,
};

}  // namespace gancli
