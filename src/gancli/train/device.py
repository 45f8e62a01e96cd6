"""Which device a run trains on, and whether its ops setting can run there."""

from __future__ import annotations

import torch

from gancli.errors import UserError


def resolve_device(recipe) -> torch.device:
    want = recipe.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: 'cuda' was asked for but torch sees no CUDA device (use auto or cpu)")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def check_ops_device(ops: str, device: torch.device) -> None:
    """`ops: cuda` promises the CUDA kernels: refuse it for a run on another device rather than ignore it."""
    if ops == "cuda" and device.type != "cuda":
        raise UserError(f"ops: 'cuda' runs the CUDA kernels, but this run trains on {device.type}; "
                        "use ops auto or ref (the reference ops run everywhere)")
