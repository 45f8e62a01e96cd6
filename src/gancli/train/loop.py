"""The training loop: phases with lazy regularization, gradient accumulation, EMA, snapshots, exact resume.

One training step (a minibatch of `train.batch` reals) runs the phases in order: Gmain, Greg, Dmain,
Dreg (Karras et al. 2020, lazy regularization: a regularization phase runs every `interval` steps with
its loss scaled by `interval`, and the optimizer's lr and betas are corrected by interval/(interval+1)).
Each phase accumulates gradients over its rounds (`batch / world_size / batch_gpu` per process), each
round's loss scaled by 1/rounds, so the gradient is that of the mean loss over the whole global batch
whatever the split; with several processes `distributed.sync_grads` averages it over the ranks before
every rank takes the same Adam step (see `gancli.train.distributed`).
The class-conditional ResNet family (SNGAN, SAGAN, BigGAN) has its own step structure (several D
steps per G step, hinge loss, BigGAN EMA): `self.family` (train/resnet.py) runs it instead.

With `augment.kind: ada` the ADA pipeline (`gancli.augment`) is the loss's `augment` (every image D
sees) and an `AdaController` updates its p from the real logits every `augment.interval` steps; p is
training state.

Every random draw in step `k` comes from generators seeded by (train.seed, k): latents and fake labels
are drawn for the whole global batch, and each process takes its share; torch's global RNG (noise
inputs, mixing cutoffs, path-length noise) is seeded per (seed, step, phase, global round). Global round
j holds rows j, j + rounds, j + 2 rounds ... of the global batch, so one process with 2 rounds computes
exactly what 2 processes with one round each compute. The data order is a function of (train.seed,
position), so a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gancli.errors import UserError
from gancli.losses import LossStats, StyleGAN2Loss
from gancli.recipe import Recipe
from gancli.train import distributed


class TrainingDiverged(UserError):
    """NaN or inf in a loss or a weight; nothing broken is saved."""

    exit_code = 1


@dataclass
class Phase:
    name: str  # 'G' or 'D' followed by 'main', 'reg' or 'both'
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int  # run when step % interval == 0
    parts: list[str]  # loss phases accumulated into this optimizer step


@dataclass
class TrainState:
    step: int = 0  # optimizer steps (minibatches) done
    cur_nimg: int = 0  # real images shown to D
    wall_time: float = 0.0  # seconds of training before this session


def step_seed(seed: int, step: int | tuple[int, ...]) -> int:
    """A 63-bit seed for step `step` (or (step, phase, round)) of a run seeded with `seed`."""
    key = [seed, *step] if isinstance(step, tuple) else [seed, step]
    return int(np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).astype(np.uint64) @ [1 << 31, 1])


def resolve_device(recipe: Recipe) -> torch.device:
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


class Trainer:
    """Owns the networks, optimizers and loss of one run; `run()` trains until total_kimg or a stop request."""

    def __init__(self, recipe: Recipe, dataset, run_dir: Path, *, device: torch.device | None = None,
                 console=None, progress: bool = True):
        from gancli.models import build_networks

        self.recipe = recipe
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.device = device or resolve_device(recipe)
        check_ops_device(recipe.ops, self.device)
        self.console = console
        self.show_progress = progress
        self.stop_requested: Callable[[], bool] = lambda: False
        t = recipe.train
        if t.d_steps != 1 and recipe.model.kind == "stylegan2":
            raise UserError(f"train.d_steps: StyleGAN2 trains with one D step per G step, got {t.d_steps}")
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.c_dim = dataset.c_dim if recipe.data.use_labels else 0
        self.G, self.D = build_networks(recipe, c_dim=self.c_dim, img_channels=dataset.num_channels)
        self.G.train().requires_grad_(False).to(self.device)
        self.D.train().requires_grad_(False).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.state = TrainState()
        self.ddp = distributed.current()
        self.ddp_check(t)
        self.batch = t.batch  # global
        self.batch_rank = t.batch // self.ddp.world_size  # this process's share of each step
        self.batch_gpu = t.batch_gpu or self.batch_rank
        distributed.broadcast_modules(self.G, self.D, self.G_ema)
        self.ada = None  # ADA's controller (StyleGAN2 with augment.kind: ada)
        self.family = None  # the ResNet family's steps (train/resnet.py); None: the StyleGAN2 phases below
        self.next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None  # set by run()
        if recipe.model.kind != "stylegan2":
            from gancli.train.resnet import ResNetSteps

            self.family = ResNetSteps(self)
        else:
            loss = recipe.loss
            self.loss = StyleGAN2Loss(self.G, self.D, r1_gamma=loss.r1_gamma, pl_weight=loss.pl_weight,
                                      pl_decay=loss.pl_decay, pl_batch_shrink=loss.pl_batch_shrink,
                                      style_mixing_prob=loss.style_mixing_prob).to(self.device)
            self.ada = self._make_augment()  # AdaController (owns the ADA pipe and p), or None
            self.phases = self._make_phases()
        self.total_nimg = int(round(t.total_kimg * 1000))
        self.grid_z, self.grid_c = self._grid_latents()
        self.real_labels = torch.as_tensor(dataset.labels) if self.c_dim else None  # converted once, not per step
        self._session_start: float | None = None  # set when run() starts

    # ----------------------------------------------------------------------------------------------
    # Setup

    def ddp_check(self, t) -> None:
        world = self.ddp.world_size
        if t.batch % world:
            raise UserError(f"train.batch ({t.batch}) must be divisible by the number of processes ({world})")
        if t.batch_gpu is not None and (t.batch // world) % t.batch_gpu:
            raise UserError(f"train.batch_gpu ({t.batch_gpu}) must divide the batch per process "
                            f"({t.batch} / {world} processes = {t.batch // world})")

    def _make_phases(self) -> list[Phase]:
        t, loss = self.recipe.train, self.recipe.loss
        phases = []
        for prefix, module, lr, weight, interval in (
            ("G", self.G, t.g_lr, loss.pl_weight, loss.pl_interval),
            ("D", self.D, t.d_lr, loss.r1_gamma, loss.r1_interval),
        ):
            betas = tuple(t.betas)
            if weight > 0 and interval > 1:  # lazy regularization (StyleGAN2 Appendix B)
                ratio = interval / (interval + 1)
                opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=tuple(b ** ratio for b in betas), eps=t.eps)
                phases.append(Phase(prefix + "main", module, opt, 1, [prefix + "main"]))
                phases.append(Phase(prefix + "reg", module, opt, interval, [prefix + "reg"]))
            else:
                opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=t.eps)
                parts = [prefix + "main"] + ([prefix + "reg"] if weight > 0 else [])
                if prefix == "D" and len(parts) == 2:
                    parts = ["Dboth"]
                phases.append(Phase(prefix + ("both" if weight > 0 else "main"), module, opt, 1, parts))
        return phases

    def _make_augment(self):
        """ADA: the pipeline becomes the loss's `augment`, the controller sees the real logits."""
        a = self.recipe.augment
        if a.kind != "ada":
            return None
        from gancli.augment import AdaController, build_augment_pipe

        pipe = build_augment_pipe(a).to(self.device)
        ada = AdaController(pipe, target=a.target, speed_kimg=a.speed_kimg, interval=a.interval,
                            batch=self.recipe.train.batch, adaptive=a.adaptive).to(self.device)
        self.loss.augment = pipe
        self.loss.ada_stats = ada
        return ada

    def _grid_latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        from gancli.latent import z_from_seeds

        res = self.recipe.data.resolution
        n = self.recipe.train.grid_seeds or int(np.clip(4096 // res, 16, 64))  # 8x8 at small sizes
        self.grid_size = n
        z = z_from_seeds(list(range(n)), self.G.z_dim, self.device)
        c = torch.zeros([n, self.c_dim], device=self.device)
        if self.c_dim:
            c[torch.arange(n), torch.arange(n) % self.c_dim] = 1
        return z, c

    # ----------------------------------------------------------------------------------------------
    # State (resume)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.family is not None:
            return self.family.optimizers()
        return {"G": self.phases[0].opt, "D": next(p.opt for p in self.phases if p.name.startswith("D"))}

    def snapshot_modules(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                for name, m in (("G_ema", self.G_ema), ("G", self.G), ("D", self.D))}

    def training_state(self) -> dict[str, Any]:
        state = {
            "step": self.state.step,
            "cur_nimg": self.state.cur_nimg,
            "wall_time": self.state.wall_time + (time.time() - self._session_start if self._session_start else 0.0),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers().items()},
            "data_position": self.state.cur_nimg,
            **({"augment": self.ada.state_dict()} if self.ada is not None else {}),
        }
        if self.family is None:
            state["pl_mean"] = self.loss.pl_mean.detach().cpu()
        return state

    def load_weights(self, modules: dict[str, dict[str, torch.Tensor]], origin: str) -> None:
        """G_ema, G and D weights (all three must be there and fit the recipe's networks exactly)."""
        for name, module in (("G_ema", self.G_ema), ("G", self.G), ("D", self.D)):
            if name not in modules:
                raise UserError(f"{origin}: has no {name} weights; cannot train from it")
            try:
                module.load_state_dict(modules[name], strict=True)
            except RuntimeError as e:
                raise UserError(f"{origin}: {name} weights do not fit the recipe's networks ({str(e).splitlines()[0]})") from None
        distributed.broadcast_modules(self.G_ema, self.G, self.D)

    def load(self, modules: dict[str, dict[str, torch.Tensor]], state: dict[str, Any], origin: str) -> None:
        """Weights and training state, for an exact resume."""
        self.load_weights(modules, origin)
        try:
            for key, opt in self.optimizers().items():
                opt.load_state_dict(state["optimizers"][key])
            if self.family is None:
                self.loss.pl_mean.copy_(state["pl_mean"].to(self.device))
            if self.ada is not None:
                self.ada.load_state_dict(state["augment"])
            self.state = TrainState(step=int(state["step"]), cur_nimg=int(state["cur_nimg"]),
                                    wall_time=float(state.get("wall_time", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{origin}: training state is incomplete or from another gancli version ({e})") from None

    # ----------------------------------------------------------------------------------------------
    # One step

    def _fake_labels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Labels of randomly drawn training images, for the fakes of conditional models."""
        if not self.c_dim:
            return torch.zeros([n, 0], device=self.device)
        idx = torch.randint(len(self.real_labels), [n], generator=gen)
        return self.real_labels[idx].to(self.device)

    def train_step(self, reals: torch.Tensor, real_c: torch.Tensor, stats: LossStats) -> None:
        """One step on this process's share `reals` (rows rank, rank + W, ... of the global batch)."""
        if self.family is not None:
            return self.family.train_step(reals, real_c, stats)
        step, seed = self.state.step, self.recipe.train.seed
        rank, world = self.ddp.rank, self.ddp.world_size
        gen = torch.Generator().manual_seed(step_seed(seed + 1, step))
        reals = reals.to(self.device, non_blocking=True)
        real_c = real_c.to(self.device)
        # Latents and labels of the global batch (the same on every rank); this rank takes its rows.
        all_z = torch.randn([len(self.phases), self.batch, self.G.z_dim], generator=gen)[:, rank::world].to(self.device)
        all_c = [self._fake_labels(self.batch, gen)[rank::world] for _ in self.phases]
        n_rounds = reals.shape[0] // self.batch_gpu
        ada_before = self.ada.signs.clone() if self.ada is not None and world > 1 else None
        for index, (phase, z, c) in enumerate(zip(self.phases, all_z, all_c)):
            if step % phase.interval:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for r in range(n_rounds):  # local round r is global round rank + world * r
                torch.manual_seed(step_seed(seed, (step, index, rank + world * r)))  # noise, mixing, pl noise
                rows = slice(r, None, n_rounds)
                for part in phase.parts:
                    self.loss.accumulate_gradients(part, reals[rows], real_c[rows], z[rows], c[rows],
                                                   gain=phase.interval / n_rounds, stats=stats)
            phase.module.requires_grad_(False)
            distributed.sync_grads(phase.module)
            for p in phase.module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            phase.opt.step()
        self.loss.update_pl_mean(distributed.all_reduce_sum_)
        if ada_before is not None:  # ADA's sign statistics of the whole global batch, the same on every rank
            step_signs = self.ada.signs - ada_before
            distributed.all_reduce_sum_(step_signs)
            self.ada.signs = ada_before + step_signs
        if self.ddp.is_main:
            self._update_ema()
        if self.ada is not None and (step + 1) % self.ada.interval == 0:
            self.ada.update()  # p from the sign statistics of the last `interval` minibatches
        self.state.cur_nimg += self.batch
        self.state.step += 1

    @torch.no_grad()
    def _update_ema(self) -> None:
        t = self.recipe.train
        ema_nimg = t.ema_kimg * 1000
        if t.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.state.cur_nimg * t.ema_rampup)
        beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ----------------------------------------------------------------------------------------------
    # Outputs

    @torch.no_grad()
    def render_grid(self) -> np.ndarray:
        from gancli.render import grid_shape, make_grid, to_uint8

        images = [self.G_ema(z, c, noise_mode="const") for z, c in zip(self.grid_z.split(16), self.grid_c.split(16))]
        rows, cols = grid_shape(self.grid_size)
        return make_grid(to_uint8(torch.cat(images)), rows, cols)

    def save_reals_grid(self) -> None:
        from gancli.render import grid_shape, make_grid, save_png

        n = min(self.grid_size, self.dataset.num_images)
        picks = np.random.RandomState(0).choice(self.dataset.num_images, n, replace=False)  # a fair sample
        images = np.stack([self.dataset[int(i)][0] for i in picks]).transpose(0, 2, 3, 1)
        rows, cols = grid_shape(self.grid_size)
        save_png(make_grid(images, rows, cols), self.run_dir / "reals.png")

    def check_finite(self) -> None:
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    raise TrainingDiverged(
                        f"training diverged at step {self.state.step} ({self.state.cur_nimg / 1000:.1f} kimg): "
                        f"{name}.{pname} has NaN/inf values; the last good checkpoint in {self.run_dir} is kept"
                    )

    def save_checkpoint(self) -> Path:
        """Snapshot (weights + recipe) and training state, both atomic; never saves NaN/inf weights."""
        from gancli.train.checkpoint import save_checkpoint

        self.check_finite()
        if self.family is not None:
            self.family.before_snapshot()
        meta = {
            "kimg": self.state.cur_nimg / 1000, "step": self.state.step, "cur_nimg": self.state.cur_nimg,
            "c_dim": self.c_dim, "img_channels": self.dataset.num_channels, "resolution": self.recipe.data.resolution,
            "dataset": self.recipe.data.source, "num_ws": int(getattr(self.G, "num_ws", 0)),
            "buffers": {name: [k for k, _ in m.named_buffers()] for name, m in
                        (("G_ema", self.G_ema), ("G", self.G), ("D", self.D))},
        }
        pair = save_checkpoint(self.run_dir, self.state.cur_nimg // 1000, step=self.state.step,
                               modules=self.snapshot_modules(), recipe=self.recipe.to_dict(), meta=meta,
                               state=self.training_state(), keep=self.recipe.train.keep_snapshots)
        return pair.snapshot

    def evaluate_metrics(self, snapshot: Path | None, log=None) -> dict:
        """The recipe's metrics for the current EMA generator, appended to metrics.jsonl in the run
        (with the snapshot's name when one was just written) and kept for the progress display."""
        from gancli.metrics import evaluate_generator
        from gancli.metrics.evaluate import append_result
        from gancli.models import LoadedGenerator

        kimg = self.state.cur_nimg / 1000
        where = snapshot or self.run_dir / f"G_ema-at-{kimg:g}-kimg"
        loaded = LoadedGenerator(G=self.G_ema, recipe=self.recipe, meta={"c_dim": self.c_dim}, path=where)
        result = evaluate_generator(loaded, self.recipe.metrics.names, data_source=self.recipe.data.source,
                                    num=self.recipe.metrics.num, seed=0, progress=self.show_progress)
        result["snapshot"] = snapshot.name if snapshot else None
        result["kimg"] = kimg
        self.last_metrics = {f"metrics/{k}": v for k, v in result["results"].items() if isinstance(v, (int, float))}
        append_result(self.run_dir, result)
        if log is not None:
            log.log(event="metrics", kimg=round(self.state.cur_nimg / 1000, 3),
                    **{f"metrics/{k}": v for k, v in result["results"].items()})
        return result

    # ----------------------------------------------------------------------------------------------
    # The loop

    def run(self, log=None) -> str:
        """Train until total_kimg (returns 'done') or until a stop is requested (returns 'stopped')."""
        from gancli.data import batches
        from gancli.render import save_png

        t = self.recipe.train
        snap_nimg = int(t.snapshot_kimg * 1000)
        image_nimg = int(t.image_kimg * 1000)
        metric_nimg = int((self.recipe.metrics.interval_kimg or t.snapshot_kimg) * 1000)
        next_snap = (self.state.cur_nimg // snap_nimg + 1) * snap_nimg
        next_image = (self.state.cur_nimg // image_nimg + 1) * image_nimg
        next_metric = (self.state.cur_nimg // metric_nimg + 1) * metric_nimg
        self.last_metrics: dict[str, float] = {}
        main = self.ddp.is_main  # rank 0 writes grids, checkpoints, logs and metrics
        if self.state.cur_nimg == 0 and main:
            self.save_reals_grid()
            save_png(self.render_grid(), self.run_dir / "fakes-000000.png")
        data = batches(self.dataset, self.batch_rank, seed=t.seed, start_index=self.state.cur_nimg,
                       rank=self.ddp.rank, world_size=self.ddp.world_size)
        self.next_batch = lambda: next(data)  # for steps that take more than one real minibatch (D steps)
        self._session_start = time.time()
        stats = LossStats()
        tick_start, tick_nimg, tick_steps = time.time(), self.state.cur_nimg, 0
        outcome = "done" if self.state.cur_nimg >= self.total_nimg else ""
        with _Progress(self.total_nimg, self.state.cur_nimg, enabled=self.show_progress, console=self.console) as bar:
            while not outcome:
                reals, real_c = next(data)
                self.train_step(reals, real_c, stats)
                tick_steps += 1
                cur = self.state.cur_nimg
                done = cur >= self.total_nimg
                stop, late = distributed.agree(self.state.step, self.stop_requested(), time.time() - tick_start > 5)
                snapshot_due = cur >= next_snap or done or stop
                if tick_steps >= 10 or snapshot_due or cur >= next_image or late:
                    values = distributed.mean_stats(stats)  # averaged over all ranks
                    bad = [k for k, v in values.items() if not math.isfinite(v)]
                    if bad:
                        raise TrainingDiverged(
                            f"training diverged at step {self.state.step} ({cur / 1000:.1f} kimg): {bad[0]} is "
                            f"{values[bad[0]]}; the last good checkpoint in {self.run_dir} is kept"
                        )
                    elapsed = time.time() - tick_start
                    rate = (cur - tick_nimg) / max(elapsed, 1e-9)
                    if self.ada is not None:
                        values["augment/p"] = float(self.ada.p)
                    record = {"kimg": round(cur / 1000, 3), "step": self.state.step, "img_per_s": round(rate, 2),
                              **({"pl_mean": round(float(self.loss.pl_mean), 5)} if self.family is None else {}), **{k: round(v, 5) for k, v in values.items()}}
                    if log is not None:
                        log.log(**record)
                    bar.update(cur, rate, {**values, **self.last_metrics})
                    stats = LossStats()
                    tick_start, tick_nimg, tick_steps = time.time(), cur, 0
                if cur >= next_image or done or stop:
                    if main:
                        save_png(self.render_grid(), self.run_dir / f"fakes-{cur // 1000:06d}.png")
                    next_image = (cur // image_nimg + 1) * image_nimg
                path = None
                if snapshot_due:
                    if main:
                        path = self.save_checkpoint()
                        if log is not None:
                            log.log(event="snapshot", kimg=round(cur / 1000, 3), path=path.name)
                    next_snap = (cur // snap_nimg + 1) * snap_nimg
                if self.recipe.metrics.names and (cur >= next_metric or done):
                    distributed.broadcast_modules(self.G_ema)  # rank 0's EMA weights, to generate shares of fakes
                    with distributed.metrics_session(self.G_ema) as evaluates:  # rank 0 evaluates, others help
                        if evaluates:
                            self.evaluate_metrics(path, log)
                            bar.update(cur, None, self.last_metrics)
                    next_metric = (cur // metric_nimg + 1) * metric_nimg
                if done:
                    outcome = "done"
                elif stop:
                    outcome = "stopped"
        return outcome


class _Progress:
    """A rich progress bar: kimg, images/s, ETA and the latest losses. Silent when disabled."""

    def __init__(self, total_nimg: int, start_nimg: int, enabled: bool, console=None):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.fields[kimg]}[/bold] kimg"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"), console=console, transient=False,
        )
        self.task = self.progress.add_task("train", total=total_nimg, completed=start_nimg,
                                           kimg=f"{start_nimg / 1000:.1f}/{total_nimg / 1000:g}", rate="-", losses="")
        self.total = total_nimg

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, cur_nimg: int, rate: float | None, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        shown = [k for k in ("loss/G", "loss/D", "loss/r1_penalty", "loss/pl_penalty", "augment/p") if k in values]
        shown += sorted(k for k in values if k.startswith("metrics/"))
        losses = "  ".join(f"{k.split('/')[-1]} {values[k]:.3f}" for k in shown)
        fields = {"kimg": f"{cur_nimg / 1000:.1f}/{self.total / 1000:g}", "losses": losses}
        if rate is not None:
            fields["rate"] = f"{rate:.1f}"
        self.progress.update(self.task, completed=cur_nimg, **fields)
