"""Progressive growing (Karras et al. 2018, Sec. 3): the schedule, the faded reals, and the training
object shared by the grown families (PGGAN: families/pggan, StyleGAN: families/stylegan).

The schedule is a list of phases, one per resolution from `train.start_res` up to `data.resolution`.
The first phase trains stable for `stable_kimg`; every later phase first fades its new block in over
`fade_kimg` (alpha from 0 to 1: the output is lerp(upsampled old toRGB path, new block, alpha), and
D's input lerp(old fromRGB on the downsampled image, new block, alpha)), then trains stable for
`stable_kimg`; the last phase stays stable until `total_kimg`. This is the official `lod` schedule
(stable, then the fade of the next resolution), and the batch and learning rate of a fade are those
of the resolution being faded in. `train.schedule` gives batch and lr per resolution.

Where the schedule stands is a function of the images shown (`cur_nimg`), which the checkpoint holds;
the phase of the last step (to know when Adam is reset) is training state too, and the networks keep
their resolution and alpha in buffers, so a resume mid-fade continues bit-identically.

Reals are average-pooled from the data resolution to the current one and, during a fade, blended as
the paper does: lerp(upsample(downsample(x)), x, alpha), so D sees reals exactly as smooth as fakes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from gancli.errors import UserError
from gancli.families import base

if TYPE_CHECKING:  # torch is imported where it is used: recipes load without it
    import torch


@dataclass
class GrowStage:
    res: int = 4  # resolution in pixels
    batch: Optional[int] = None  # minibatch at this resolution (null: train.batch)
    lr: Optional[float] = None  # Adam lr of G and D at this resolution (null: train.g_lr / train.d_lr)


@dataclass
class ProgressiveTrain(base.TrainConfig):
    start_res: int = 4  # progressive growing: first resolution (PGGAN starts at 4)
    fade_kimg: float = 600  # progressive growing: kimg of each new resolution's fade-in
    stable_kimg: float = 600  # progressive growing: kimg of stable training per resolution
    schedule: list[GrowStage] = field(default_factory=list)  # per resolution: {res, batch, lr}; unlisted: train.batch, g_lr/d_lr
    reset_adam: bool = True  # reset Adam's state when new layers come in and when their fade ends (official reset_opt_for_new_lod)
    ema_decay: Optional[float] = None  # G EMA decay per step (PGGAN 0.999); null: the ema_kimg half-life

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.start_res < 4 or self.start_res & (self.start_res - 1):
            raise UserError(f"{where}train.start_res: must be a power of two >= 4, got {self.start_res}")
        if self.fade_kimg < 0 or self.stable_kimg <= 0:
            raise UserError(f"{where}train.fade_kimg and train.stable_kimg: need fade_kimg >= 0 and stable_kimg > 0, "
                            f"got {self.fade_kimg:g} and {self.stable_kimg:g}")
        seen = set()
        for i, stage in enumerate(self.schedule):
            key = f"{where}train.schedule[{i}]"
            if stage.res < 4 or stage.res & (stage.res - 1):
                raise UserError(f"{key}.res: must be a power of two >= 4, got {stage.res}")
            if stage.res in seen:
                raise UserError(f"{key}.res: {stage.res} is listed twice")
            seen.add(stage.res)
            if stage.batch is not None:
                base._positive(stage.batch, f"{key}.batch")
            if stage.lr is not None and not stage.lr > 0:
                raise UserError(f"{key}.lr: must be > 0, got {stage.lr}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UserError(f"{where}train.ema_decay: must be in [0, 1) or null, got {self.ema_decay}")
        if self.batch_gpu is not None:
            raise UserError(f"{where}train.batch_gpu: progressive growing takes each phase's whole batch per step; "
                            "remove batch_gpu (use a smaller batch in train.schedule)")
        if self.precision == "mixed":
            raise UserError(f"{where}train.precision: 'mixed' is not implemented for the progressive families; use auto or fp32")


def validate_growth(recipe, where: str) -> None:
    """Checks across sections: the schedule's resolutions against data.resolution, labels."""
    t, res = recipe.train, recipe.data.resolution
    if t.start_res > res:
        raise UserError(f"{where}train.start_res: {t.start_res} is above data.resolution {res}")
    bad = [s.res for s in t.schedule if not t.start_res <= s.res <= res]
    if bad:
        raise UserError(f"{where}train.schedule: resolution {bad[0]} is outside train.start_res..data.resolution "
                        f"({t.start_res}..{res})")
    group = getattr(recipe.model, "mbstd_group_size", 1)
    for p in Schedule(t, res).phases:
        g = min(group, p.batch // recipe.distributed.gpus)
        if g > 1 and (p.batch // recipe.distributed.gpus) % g:
            raise UserError(f"{where}model.mbstd_group_size: {group} does not divide the batch per process of "
                            f"{p.batch // recipe.distributed.gpus} at {p.res} px (train.schedule)")
        if p.batch % recipe.distributed.gpus:
            raise UserError(f"{where}train.schedule: batch {p.batch} at {p.res} px is not divisible by "
                            f"distributed.gpus ({recipe.distributed.gpus})")
    if recipe.data.use_labels:
        raise UserError(f"{where}data.use_labels: the {recipe.family.title} family is unconditional; use data.use_labels: false")


# --------------------------------------------------------------------------------------------------
# The schedule


@dataclass(frozen=True)
class Phase:
    res: int
    start_nimg: int  # images shown when the phase begins
    fade_nimg: int  # images of its fade-in (0 for the first phase)
    stable_nimg: int  # images of stable training (the last phase: until the end of training)
    batch: int
    g_lr: float
    d_lr: float


@dataclass(frozen=True)
class Point:
    """Where the schedule stands after `cur_nimg` images."""

    phase: int  # index into Schedule.phases
    res: int
    alpha: float  # fade-in weight of the newest block, exactly 1 once its fade is over
    fading: bool
    batch: int
    g_lr: float
    d_lr: float

    @property
    def segment(self) -> tuple[int, bool]:
        """(phase, fading): Adam is reset whenever this changes (official reset_opt_for_new_lod)."""
        return (self.phase, self.fading)


class Schedule:
    """The phases of progressive growing for a recipe (see the module docstring)."""

    def __init__(self, train, final_res: int):
        self.final_res = final_res
        stages = {s.res: s for s in train.schedule}
        fade, stable = int(round(train.fade_kimg * 1000)), int(round(train.stable_kimg * 1000))
        self.phases: list[Phase] = []
        start = 0
        for k in range(int(math.log2(train.start_res)), int(math.log2(final_res)) + 1):
            res = 2**k
            stage = stages.get(res, GrowStage(res=res))
            first = not self.phases
            phase = Phase(res=res, start_nimg=start, fade_nimg=0 if first else fade, stable_nimg=stable,
                          batch=stage.batch or train.batch,
                          g_lr=stage.lr if stage.lr is not None else train.g_lr,
                          d_lr=stage.lr if stage.lr is not None else train.d_lr)
            self.phases.append(phase)
            start += phase.fade_nimg + phase.stable_nimg

    @property
    def full_nimg(self) -> int:
        """Images until the last resolution is faded in and trained for one stable phase."""
        last = self.phases[-1]
        return last.start_nimg + last.fade_nimg + last.stable_nimg

    def at(self, cur_nimg: int) -> Point:
        index = max(i for i, p in enumerate(self.phases) if p.start_nimg <= cur_nimg)
        p = self.phases[index]
        into = cur_nimg - p.start_nimg
        fading = into < p.fade_nimg
        alpha = into / p.fade_nimg if fading else 1.0
        return Point(index, p.res, alpha, fading, p.batch, p.g_lr, p.d_lr)

    def plan_lines(self, total_kimg: float) -> list[str]:
        lines = []
        total = int(round(total_kimg * 1000))
        for i, p in enumerate(self.phases):
            if p.start_nimg >= total:
                lines.append(f"{p.res:>4} px: not reached in {total_kimg:g} kimg")
                continue
            last = i == len(self.phases) - 1
            fade = f"fade {p.fade_nimg / 1000:g} + " if p.fade_nimg else ""
            end = max(total, p.start_nimg + p.fade_nimg + p.stable_nimg) if last else p.start_nimg + p.fade_nimg + p.stable_nimg
            stable = (end - p.start_nimg - p.fade_nimg) / 1000
            lines.append(f"{p.res:>4} px: {p.start_nimg / 1000:g}-{end / 1000:g} kimg ({fade}stable {stable:g}), "
                         f"batch {p.batch}, lr G {p.g_lr:g} / D {p.d_lr:g}")
        return lines


def fade_reals(reals: torch.Tensor, res: int, alpha: float) -> torch.Tensor:
    """Reals at the current resolution: average-pooled to `res`, and during a fade the paper's blend
    lerp(upsample(downsample(x)), x, alpha) (PGGAN Sec. 3, Fig. 2; official process_reals)."""
    import torch

    from gancli.nets.progressive import downsample2x, resize_to, upsample2x

    x = resize_to(reals, res)
    if alpha < 1:
        x = torch.lerp(upsample2x(downsample2x(x)), x, alpha)
    return x


def plan_growth(recipe) -> dict[str, str]:
    """The dry-run's 'steps' and 'phases' lines of a progressive recipe."""
    t = recipe.train
    sched = Schedule(t, recipe.data.resolution)
    total = int(round(t.total_kimg * 1000))
    steps, nimg = 0, 0
    for i, p in enumerate(sched.phases):  # steps of each phase's batch (the boundary step takes its phase's batch)
        end = total if i == len(sched.phases) - 1 else min(total, sched.phases[i + 1].start_nimg)
        if end > nimg:
            n = -(-(end - nimg) // p.batch)
            steps += n
            nimg += n * p.batch
    reset = "Adam reset at each fade-in and its end" if t.reset_adam else "Adam kept across phases"
    return {
        "steps": f"{steps} steps (batch by resolution, below)",
        "phases": ("\n" + " " * 11).join(sched.plan_lines(t.total_kimg) + [reset]),
    }


# --------------------------------------------------------------------------------------------------
# The training object


class ProgressiveTraining(base.FamilyTraining):
    """G, G_ema and D of a grown family, their Adam optimizers, the schedule and the EMA.

    A family subclasses it with `build_networks()`, `d_loss(reals, fakes, gen, stats)` and
    `g_loss(z, stats)`, and `generate_fakes(z)` (G on a batch of latents at the current resolution)."""

    def __init__(self, trainer):
        import torch

        from gancli.train import distributed

        super().__init__(trainer)
        recipe, device = trainer.recipe, trainer.device
        self.schedule = Schedule(recipe.train, recipe.data.resolution)
        self.G, self.D = self.build_networks()
        self.G.train().requires_grad_(False).to(device)
        self.D.train().requires_grad_(False).to(device)
        point = self.schedule.at(0)
        for net in (self.G, self.D):
            net.set_growth(point.res, point.alpha)
        self.G_ema = copy.deepcopy(self.G).eval()
        distributed.broadcast_modules(self.G, self.D, self.G_ema)
        t = recipe.train
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=point.g_lr, betas=tuple(t.betas), eps=t.eps)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=point.d_lr, betas=tuple(t.betas), eps=t.eps)
        self.segment: tuple[int, bool] = point.segment  # of the last step taken
        self.adam_resets = 0

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def state_dict(self) -> dict[str, Any]:
        return {"growth": {"phase": self.segment[0], "fading": self.segment[1], "adam_resets": self.adam_resets}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        g = state["growth"]
        self.segment = (int(g["phase"]), bool(g["fading"]))
        self.adam_resets = int(g["adam_resets"])

    def log_values(self) -> dict[str, float]:
        res, alpha = self.G.growth()
        return {"grow/res": float(res), "grow/alpha": float(alpha)}

    # ----------------------------------------------------------------------------------------------

    def enter(self, point: Point) -> None:
        """Set the networks' growth, the phase's learning rates, and reset Adam at a new segment."""
        for net in (self.G, self.D, self.G_ema):
            net.set_growth(point.res, point.alpha)
        if point.segment != self.segment:
            if self.trainer.recipe.train.reset_adam:
                for opt in (self.opt_G, self.opt_D):
                    opt.state.clear()  # moments and step counts (bias correction starts again)
                self.adam_resets += 1
            self.segment = point.segment
        for opt, lr in ((self.opt_G, point.g_lr), (self.opt_D, point.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr

    def _update(self, module: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn) -> None:
        """One Adam step of `module` on the loss `loss_fn()` (computed with only `module` trainable)."""
        from gancli.train import distributed
        from gancli.train.updates import sanitize_grads

        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        loss_fn().backward()
        module.requires_grad_(False)
        distributed.sync_grads(module)
        sanitize_grads(module)
        opt.step()

    def train_step(self, stats) -> None:
        """One D update then one G update on the phase's batch at the current resolution, then the EMA."""
        import torch

        from gancli.train.seeding import step_seed
        from gancli.train.updates import half_life_beta, update_ema

        tr = self.trainer
        t = tr.recipe.train
        point = self.schedule.at(tr.state.cur_nimg)
        self.enter(point)
        step, rank, world = tr.state.step, tr.ddp.rank, tr.ddp.world_size
        torch.manual_seed(step_seed(t.seed, step))  # noise inputs, mixing cutoffs, GP mixing factors
        gen = torch.Generator().manual_seed(step_seed(t.seed + 1, step))
        reals, _ = tr.next_batch(point.batch)
        reals = fade_reals(reals.to(tr.device, non_blocking=True), point.res, point.alpha)
        z_dim = self.G.z_dim
        z_d, z_g = torch.randn([2, point.batch, z_dim], generator=gen)[:, rank::world].to(tr.device)

        with torch.no_grad():
            fakes = self.generate_fakes(z_d)
        self._update(self.D, self.opt_D, lambda: self.d_loss(reals, fakes, stats))
        self._update(self.G, self.opt_G, lambda: self.g_loss(z_g, stats))
        tr.state.cur_nimg += point.batch
        if tr.ddp.is_main:
            beta = t.ema_decay if t.ema_decay is not None else half_life_beta(point.batch, t.ema_kimg, t.ema_rampup,
                                                                              tr.state.cur_nimg)
            update_ema(self.G_ema, self.G, beta)
        tr.state.step += 1

    def generate_fakes(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, reals: torch.Tensor, fakes: torch.Tensor, stats) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, z: torch.Tensor, stats) -> torch.Tensor:
        raise NotImplementedError
