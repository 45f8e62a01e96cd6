"""Pieces of the classic GAN step that several families share: the optimizer choice, the learning-rate
schedule (`train.lr_schedule`), BigGAN's EMA with a start step, and the D steps per G step with the
adaptive "more D steps while the D loss is above a threshold" rule.

The schedule is a closed-form function of the training position (`cur_nimg`, real images shown to D
before the step), which is saved with every checkpoint, so a resumed run continues the schedule
exactly where it stopped; the optimizers' own lr values (also saved) are overwritten before each step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from gancli.train.updates import half_life_beta


def make_optimizer(params, lr: float, t) -> torch.optim.Optimizer:
    """Adam with the recipe's betas and eps, or RMSprop (WGAN, Arjovsky et al. 2017, Algorithm 1)."""
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, eps=t.eps)
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), eps=t.eps)


def lr_scale(t) -> float:
    """The linear scaling rule: batch / lr_ref_batch (1 without lr_ref_batch)."""
    return t.batch / t.lr_ref_batch if t.lr_ref_batch else 1.0


def lr_factor(t, kimg: float) -> float:
    """The multiplier of the base learning rates at `kimg` thousand images into training:

    - constant: 1;
    - linear: 1 until lr_decay_start_kimg, then linearly to 0 at total_kimg (SNGAN, WGAN-GP);
    - exponential: lr_gamma ** (kimg - lr_decay_start_kimg) after the start;
    - cosine: SGDR (Loshchilov & Hutter 2017, Eq. 5) after the start: within a period of T_i kimg,
      lr_min + (1 - lr_min) (1 + cos(pi t / T_i)) / 2, restarting at 1; T_0 = lr_period_kimg, each
      next period lr_period_mult times longer.
    """
    x = kimg - t.lr_decay_start_kimg
    if t.lr_schedule == "constant" or x < 0:
        return 1.0
    if t.lr_schedule == "linear":
        return max(0.0, 1.0 - x / (t.total_kimg - t.lr_decay_start_kimg))
    if t.lr_schedule == "exponential":
        return t.lr_gamma ** x
    period, mult = t.lr_period_kimg, t.lr_period_mult
    if mult == 1:
        x = math.fmod(x, period)
    else:  # the period i that contains x: T_0 (mult^i - 1) / (mult - 1) <= x
        i = int(math.floor(math.log(x / period * (mult - 1) + 1, mult)))
        x -= period * (mult**i - 1) / (mult - 1)
        period *= mult**i
    return t.lr_min + (1 - t.lr_min) * (1 + math.cos(math.pi * x / period)) / 2


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def ema_beta(t, batch: int, step: int, cur_nimg: int) -> float:
    """EMA decay of this G step: BigGAN's per-step `ema_decay` after `ema_start` G steps (0, a copy,
    before), or the StyleGAN2 half-life in images (`ema_kimg`, `ema_rampup`) without ema_decay."""
    if t.ema_decay is None:
        return half_life_beta(batch, t.ema_kimg, t.ema_rampup, cur_nimg)
    return t.ema_decay if step >= t.ema_start else 0.0


def run_d_steps(t, d_update: Callable[[], torch.Tensor], stats=None) -> torch.Tensor:
    """`train.d_steps` D updates, then up to `train.d_extra_steps` more while the last D loss stays above
    `train.d_loss_threshold` (the adaptive rule, for any loss). `d_update()` takes one D update on fresh
    reals and returns its D loss (the same value on every rank). Returns the last D loss."""
    d_loss = None
    for _ in range(t.d_steps):
        d_loss = d_update()
    if t.d_loss_threshold is not None:
        extra = 0
        while extra < t.d_extra_steps and float(d_loss) > t.d_loss_threshold:
            d_loss = d_update()
            extra += 1
        if stats is not None:
            stats.add("train/extra_d_steps", torch.tensor(float(extra)))
    return d_loss


def d_steps_then_g(training, gen: torch.Generator, stats) -> float:
    """One step of a family of several D updates per G update (ResNet, DCGAN): the learning rates at
    `train.lr_schedule`'s multiplier for the step's start, `run_d_steps` D updates, each on its own
    reals (`training.d_step(reals, labels, gen, stats)`), one G update (`training.g_step(gen, stats)`),
    the EMA on rank 0 (`training.update_ema()`), then the step count. Returns the lr multiplier."""
    tr = training.trainer
    t = tr.recipe.train
    factor = lr_factor(t, tr.state.cur_nimg / 1000)
    set_lr(training.opt_G, training.g_lr * factor)
    set_lr(training.opt_D, training.d_lr * factor)

    def d_update() -> torch.Tensor:
        reals, real_c = tr.next_batch()
        d_loss = training.d_step(reals, real_c, gen, stats)
        tr.state.cur_nimg += tr.batch
        return d_loss

    run_d_steps(t, d_update, stats)
    training.g_step(gen, stats)
    if tr.ddp.is_main:
        training.update_ema()
    tr.state.step += 1
    return factor


def optimizer_line(t, ema: str) -> str:
    """The dry-run 'optimizer' line: optimizer, learning rates, D steps, EMA and the lr schedule."""
    if t.optimizer == "rmsprop":
        text = f"RMSprop lr G {t.g_lr:g} / D {t.d_lr:g}"
    else:
        text = f"Adam lr G {t.g_lr:g} / D {t.d_lr:g}, betas {t.betas}"
    text += f", {t.d_steps} D step(s) per G step, {ema}"
    if t.d_loss_threshold is not None:
        text += f", up to {t.d_extra_steps} more while the D loss is above {t.d_loss_threshold:g}"
    if t.lr_ref_batch:
        text += f", lr x batch / {t.lr_ref_batch}"
    schedules = {
        "linear": f"linear lr decay to 0 from {t.lr_decay_start_kimg:g} kimg to the end",
        "exponential": f"lr x {t.lr_gamma:g} per kimg from {t.lr_decay_start_kimg:g} kimg",
        "cosine": (f"cosine lr (warm restarts every {t.lr_period_kimg:g} kimg x {t.lr_period_mult:g}, "
                   f"down to {t.lr_min:g}) from {t.lr_decay_start_kimg:g} kimg"),
    }
    if t.lr_schedule in schedules:
        text += ", " + schedules[t.lr_schedule]
    return text


def steps_line(t, loss_kind: str) -> str:
    """The dry-run "= N steps" part: G steps and the real minibatches each reads (the D updates, and one
    more for the G update of the relativistic losses)."""
    from gancli.losses import adversarial_loss

    per_step = t.d_steps + (1 if adversarial_loss(loss_kind).needs_real_in_g else 0)
    steps = int(t.total_kimg * 1000 // t.batch)
    text = f"{steps // per_step} G steps ({t.d_steps} D minibatches each"
    return text + (", and 1 of reals for the relativistic G loss)" if per_step > t.d_steps else ")")


def check_relativistic_rounds(recipe, where: str) -> None:
    """The relativistic losses compare each sample with the mean of the whole batch, so a step cannot
    split its batch into accumulation rounds."""
    from gancli.errors import UserError
    from gancli.losses import adversarial_loss

    t = recipe.train
    per_process = t.batch // max(1, recipe.distributed.gpus)
    if t.batch_gpu is not None and t.batch_gpu < per_process and adversarial_loss(recipe.loss.kind).needs_real_in_g:
        raise UserError(f"{where}train.batch_gpu: loss.kind {recipe.loss.kind} compares each image with the mean of the "
                        f"whole batch, so the batch cannot be split into rounds of {t.batch_gpu}; remove batch_gpu")
