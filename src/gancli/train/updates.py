"""The pieces of a parameter update that every family shares: the generator EMA and the gradient sanitizer."""

from __future__ import annotations

import torch


def half_life_beta(batch: int, ema_kimg: float, rampup: float | None, cur_nimg: int) -> float:
    """EMA decay per step of `batch` images for a half-life of `ema_kimg` thousand images (StyleGAN2),
    with the ramp-up that caps the half-life at `cur_nimg * rampup` early in training."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """ema <- lerp(model, ema, beta) for parameters (beta 0: a copy); buffers are copied from the model
    (batch-norm statistics, spectral-norm vectors, the tracked average W)."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def sanitize_grads(module: torch.nn.Module) -> None:
    """Replace NaN/inf in the gradients by 0 / +-1e5 before the optimizer step (as the official code),
    so one bad round cannot poison Adam's moments; a diverged run is still caught by the NaN checks."""
    for p in module.parameters():
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
