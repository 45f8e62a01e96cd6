"""Run a gancli command with the torch flags the official StyleGAN2-ADA scripts set (for like-for-like timing).

    python bench/gancli_official_flags.py evaluate SNAPSHOT --metrics fid --num 10000 ...

The official training loop and calc_metrics.py set `torch.backends.cudnn.benchmark = True` and turn TF32
off for matrix products and cuDNN; gancli leaves torch's defaults (benchmark off, cuDNN TF32 on). This
sets the official flags, then runs `gancli ARGS...` in this process. (generate.py sets none, so
`gancli sample` is timed against it without this wrapper.)
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from gancli.cli import main as gancli_main

    return gancli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
