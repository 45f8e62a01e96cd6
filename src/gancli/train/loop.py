"""The generic training loop: the run, the data stream, snapshots, logs, progress, stops, NaN checks, metrics.

The Trainer knows no model family. `gancli.families.get_family(model.kind)` gives the family, and
`family.training(trainer)` the object that owns that run's networks, optimizers, EMA and training state
and takes each step (`FamilyTraining.train_step`, e.g. the StyleGAN2 phases with lazy regularization in
families/stylegan2/steps.py, or the several D steps per G step of families/resnet/steps.py). A step
reads real data through `Trainer.next_batch(n)`, as many images as it needs, so the batch (and, in the
family's own networks, the resolution) may change as training goes on.

Every random draw in step `k` comes from generators seeded by (train.seed, k) (`seeding.step_seed`),
and the data order is a function of (train.seed, position), so a run resumed from a checkpoint
continues exactly as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gancli.errors import UserError
from gancli.families import get_family
from gancli.losses import LossStats
from gancli.recipe import Recipe
from gancli.train import distributed
from gancli.train.device import check_ops_device, resolve_device
from gancli.train.rundir import grid_path
from gancli.train.seeding import step_seed  # noqa: F401  (re-exported: the seeding contract of every step)


class TrainingDiverged(UserError):
    """NaN or inf in a loss or a weight; nothing broken is saved."""

    exit_code = 1


@dataclass
class TrainState:
    step: int = 0  # optimizer steps (minibatches) done
    cur_nimg: int = 0  # real images shown to D
    wall_time: float = 0.0  # seconds of training before this session


class Trainer:
    """Owns one run; `run()` trains until total_kimg or a stop request. The family's `training` object
    (`self.training`) owns the networks, optimizers and the step."""

    def __init__(self, recipe: Recipe, dataset, run_dir: Path, *, device: torch.device | None = None,
                 console=None, progress: bool = True):
        self.recipe = recipe
        self.family = get_family(recipe.model.kind)
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.device = device or resolve_device(recipe)
        check_ops_device(recipe.ops, self.device)
        self.console = console
        self.show_progress = progress
        self.stop_requested: Callable[[], bool] = lambda: False
        t = recipe.train
        self.threads = None  # on a CPU: the thread count chosen and why (train/threads.py)
        if self.device.type == "cpu":
            from gancli.train.threads import training_threads

            self.threads = training_threads(t.threads)
        elif t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.c_dim = dataset.c_dim if recipe.data.use_labels else 0
        self.img_channels = dataset.num_channels
        self.state = TrainState()
        self.ddp = distributed.current()
        self.ddp_check(t)
        self.batch = t.batch  # global
        self.batch_rank = t.batch // self.ddp.world_size  # this process's share of each step
        self.batch_gpu = t.batch_gpu or self.batch_rank
        self.real_labels = torch.as_tensor(dataset.labels) if self.c_dim else None  # converted once, not per step
        self._data = None  # the data stream, opened by run()
        self.training = self.family.training(self)
        self.total_nimg = int(round(t.total_kimg * 1000))
        self.grid_seeds, self.grid_c = self._grid_latents()
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

    def _grid_latents(self) -> tuple[list[int], torch.Tensor]:
        res = self.recipe.data.resolution
        n = self.recipe.train.grid_seeds or int(np.clip(4096 // res, 16, 64))  # 8x8 at small sizes
        self.grid_size = n
        c = torch.zeros([n, self.c_dim], device=self.device)
        if self.c_dim:
            c[torch.arange(n), torch.arange(n) % self.c_dim] = 1
        return list(range(n)), c

    def modules(self) -> dict[str, torch.nn.Module]:
        return self.training.modules()

    # ----------------------------------------------------------------------------------------------
    # What a family's step reads

    def use_data(self, stream) -> None:
        """Read training data from `stream` (anything with `take(n)`, e.g. `gancli.data.batches(...)`)
        instead of the run's own stream: for benchmarks and tests that drive `train_step` directly."""
        self._data = stream

    def next_batch(self, n: int | None = None):
        """This rank's share of the next `n` images of the global data stream (default: train.batch),
        with the recipe's training-only changes of the reals (`data.color_jitter`), whose draws come from
        (train.seed, step, minibatch of the step) and are made for the whole global batch."""
        n = self.batch if n is None else n
        images, labels = self._data.take(n)
        d = self.recipe.data
        jitter = d.color_jitter if d.color_jitter is not None and any(d.color_jitter) else None
        if d.random_crop is None and jitter is None:
            return images, labels
        from gancli.data.jitter import color_jitter, jitter_factors, random_crops

        k = self._reads[1] + 1 if self._reads[0] == self.state.step else 0
        self._reads = (self.state.step, k)
        gen = torch.Generator().manual_seed(step_seed(self.recipe.train.seed + 7, (self.state.step, k)))
        rows = slice(self.ddp.rank, None, self.ddp.world_size)  # draws for the global batch, this rank's rows
        if d.random_crop is not None:
            offsets = torch.randint(0, images.shape[-1] - d.resolution + 1, [n, 2], generator=gen)[rows]
            images = random_crops(images, offsets, d.resolution)
        if jitter is not None:
            images = color_jitter(images, jitter_factors(n, jitter, gen)[rows])
        return images, labels

    _reads = (-1, -1)  # (step, minibatches read in it so far - 1): each read of a step draws its own jitter

    def next_indices(self, n: int | None = None):
        """The dataset indices of this rank's share of the next `n` samples of the global stream (default:
        train.batch), without reading the images: for steps that train on precomputed data (codes)."""
        return self._data.take_indices(self.batch if n is None else n)

    def fake_labels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Labels of randomly drawn training images, for the fakes of conditional models."""
        if not self.c_dim:
            return torch.zeros([n, 0], device=self.device)
        idx = torch.randint(len(self.real_labels), [n], generator=gen)
        return self.real_labels[idx].to(self.device)

    # ----------------------------------------------------------------------------------------------
    # State (resume)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.training.optimizers()

    def snapshot_modules(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in self.modules().items()}

    def data_position(self) -> int:
        return self._data.position if self._data is not None else self._start_position

    _start_position = 0  # the stream position a resumed run starts from

    def training_state(self) -> dict[str, Any]:
        state = {
            "step": self.state.step,
            "cur_nimg": self.state.cur_nimg,
            "wall_time": self.state.wall_time + (time.time() - self._session_start if self._session_start else 0.0),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers().items()},
            "data_position": self.data_position(),
        }
        state.update(self.training.state_dict())
        return state

    def load_weights(self, modules: dict[str, dict[str, torch.Tensor]], origin: str) -> None:
        """Every module of the family (all must be there and fit the recipe's networks exactly)."""
        mine = self.modules()
        for name, module in mine.items():
            if name not in modules:
                raise UserError(f"{origin}: has no {name} weights; cannot train from it")
            try:
                module.load_state_dict(modules[name], strict=True)
            except RuntimeError as e:
                raise UserError(f"{origin}: {name} weights do not fit the recipe's networks ({str(e).splitlines()[0]})") from None
        distributed.broadcast_modules(*mine.values())

    def load(self, modules: dict[str, dict[str, torch.Tensor]], state: dict[str, Any], origin: str) -> None:
        """Weights and training state, for an exact resume."""
        self.load_weights(modules, origin)
        try:
            for key, opt in self.optimizers().items():
                opt.load_state_dict(state["optimizers"][key])
            self.training.load_state_dict(state)
            self.state = TrainState(step=int(state["step"]), cur_nimg=int(state["cur_nimg"]),
                                    wall_time=float(state.get("wall_time", 0.0)))
            self._start_position = int(state.get("data_position", self.state.cur_nimg))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{origin}: training state is incomplete or from another gancli version ({e})") from None

    def train_step(self, stats: LossStats) -> None:
        """One step of the family (reads its data through next_batch, advances self.state)."""
        self.training.train_step(stats)

    # ----------------------------------------------------------------------------------------------
    # Outputs

    @torch.no_grad()
    def render_grid(self) -> np.ndarray:
        """The training grid (HWC uint8), laid out by the family (`FamilyTraining.grid`)."""
        return self.training.grid(self.grid_seeds, self.grid_c)

    def save_reals_grid(self) -> None:
        from gancli.render import save_png

        save_png(self.training.reals_grid(), self.run_dir / "reals.png")

    def _say(self, line: str) -> None:
        if self.console is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            import sys

            print(line, file=sys.stderr)

    def check_finite(self) -> None:
        for name, module in self.modules().items():
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
        self.training.before_snapshot()
        shown = self.modules()[self.family.inference_module]
        meta = {
            "kimg": self.state.cur_nimg / 1000, "step": self.state.step, "cur_nimg": self.state.cur_nimg,
            "c_dim": self.c_dim, "img_channels": self.dataset.num_channels, "resolution": self.recipe.data.resolution,
            "dataset": self.recipe.data.source, "num_ws": int(getattr(shown, "num_ws", 0)),
            "buffers": {name: [k for k, _ in m.named_buffers()] for name, m in self.modules().items()},
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
        G = self.modules()[self.family.inference_module]
        loaded = LoadedGenerator(G=G, recipe=self.recipe, meta={"c_dim": self.c_dim}, path=where, family=self.family)
        result = evaluate_generator(loaded, self.recipe.metrics.names, data_source=self.recipe.data.source,
                                    num=self.recipe.metrics.num, seed=0, progress=self.show_progress,
                                    fake_features_fn=distributed.sharded_fake_features)
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
        self._data = self.family.data_stream(self.recipe, self.dataset, self.batch_rank, start_index=self._start_position,
                                             rank=self.ddp.rank, world_size=self.ddp.world_size)
        try:
            self._session_start = time.time()
            stats = LossStats()
            tick_start, tick_nimg, tick_steps = time.time(), self.state.cur_nimg, 0
            outcome = "done" if self.state.cur_nimg >= self.total_nimg else ""
            from gancli.train.threads import StallWatch

            stalls = StallWatch()
            speed = SpeedMeter(self.device)
            with _Progress(self.total_nimg, self.state.cur_nimg, enabled=self.show_progress, console=self.console) as bar:
                while not outcome:
                    step_start = time.perf_counter()
                    self.train_step(stats)
                    stall = stalls.step(time.perf_counter() - step_start, self.state.step)
                    if stall and main:
                        self._say(f"warning: {stall}")
                    tick_steps += 1
                    cur = self.state.cur_nimg
                    if not speed.started:  # the session's first step carries the one-time costs: not measured
                        speed.start(cur)
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
                        extra = self.training.log_values()
                        values.update({k: v for k, v in extra.items() if "/" in k})  # shown in the bar too
                        record = {"kimg": round(cur / 1000, 3), "step": self.state.step, "img_per_s": round(rate, 2),
                                  "time_s": round(self.state.wall_time + time.time() - self._session_start, 2),
                                  **{f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers().items()},
                                  **{k: round(v, 5) for k, v in extra.items() if "/" not in k},
                                  **{k: round(v, 5) for k, v in values.items()}}
                        if log is not None:
                            log.log(**record)
                        bar.update(cur, rate, {**values, **self.last_metrics}, extra=[k for k in extra if "/" in k])
                        stats = LossStats()
                        tick_start, tick_nimg, tick_steps = time.time(), cur, 0
                    if (done or stop) and log is not None:
                        measured = speed.result(cur)
                        if measured is not None:
                            log.log(event="speed", kimg=round(cur / 1000, 3), **measured)
                    metrics_due = bool(self.recipe.metrics.names) and (cur >= next_metric or done)
                    if cur >= next_image or snapshot_due or metrics_due:
                        speed.pause()  # grids, checkpoints and metrics are not training time (no sync otherwise)
                    if cur >= next_image or done or stop:
                        if main:
                            save_png(self.render_grid(), grid_path(self.run_dir, cur, self.state.step))
                        next_image = (cur // image_nimg + 1) * image_nimg
                    path = None
                    if snapshot_due:
                        if main:
                            path = self.save_checkpoint()
                            if log is not None:
                                log.log(event="snapshot", kimg=round(cur / 1000, 3), path=path.name)
                        next_snap = (cur // snap_nimg + 1) * snap_nimg
                    if metrics_due:
                        G = self.modules()[self.family.inference_module]
                        distributed.broadcast_modules(G)  # rank 0's EMA weights, to generate shares of fakes
                        with distributed.metrics_session(G) as evaluates:  # rank 0 evaluates, others help
                            if evaluates:
                                self.evaluate_metrics(path, log)
                                bar.update(cur, None, self.last_metrics)
                        next_metric = (cur // metric_nimg + 1) * metric_nimg
                    speed.resume()
                    if done:
                        outcome = "done"
                    elif stop:
                        outcome = "stopped"
            return outcome
        finally:
            close = getattr(self._data, "close", None)  # the stream's decoding workers, if any
            if close is not None:
                close()


class SpeedMeter:
    """The steady training speed of one session, logged once at its end as the `speed` event of stats.jsonl.

    Measured from the end of the session's first step (which carries the one-time costs: building or
    loading the CUDA kernels, cuDNN autotuning, the allocator's growth) to the end of the last, leaving
    out the time spent on image grids, checkpoints and metrics, with the device synchronized at each
    boundary, so that `sec_per_kimg` is what the steps themselves cost. The official StyleGAN2-ADA loop
    likewise leaves its first tick and its maintenance out of the `sec/kimg` it prints per tick. On a
    GPU, `peak_gpu_mem_gb` is the peak allocated memory (`torch.cuda.max_memory_allocated`) over the
    measured steps.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.started = False
        self.start_nimg = 0
        self.start_time = 0.0
        self.excluded = 0.0  # seconds of maintenance inside the measured span
        self._paused_at: float | None = None

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self, nimg: int) -> None:
        self.start_time = self._now()
        self.start_nimg = nimg
        self.started = True
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def pause(self) -> None:
        if self.started and self._paused_at is None:
            self._paused_at = self._now()

    def resume(self) -> None:
        if self._paused_at is not None:
            self.excluded += self._now() - self._paused_at
            self._paused_at = None

    def result(self, nimg: int) -> dict[str, Any] | None:
        """What was measured up to `nimg` images, or None when no step followed the first."""
        if not self.started or nimg <= self.start_nimg:
            return None
        seconds = max(self._now() - self.start_time - self.excluded, 1e-9)
        images = nimg - self.start_nimg
        out: dict[str, Any] = {"sec_per_kimg": round(seconds / images * 1000, 4), "img_per_s": round(images / seconds, 2),
                               "measured_kimg": round(images / 1000, 3), "measured_seconds": round(seconds, 3),
                               "excluded_first_step": True}
        if self.cuda:
            out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        return out


class _Progress:
    """A rich progress bar: kimg, images/s, ETA and the latest losses. Silent when disabled. When the
    console is not a terminal (a log file), a plain line every 20 s instead (gancli.progress.PlainProgress)."""

    def __init__(self, total_nimg: int, start_nimg: int, enabled: bool, console=None):
        self.enabled = enabled
        self.plain = None
        if not enabled:
            return
        from rich.console import Console

        if not (console or Console(stderr=True)).is_terminal:
            from gancli.progress import PlainProgress

            self.plain = PlainProgress(stream=console.file if console is not None else None)
            self.task = self.plain.add_task("training", total=total_nimg, completed=start_nimg)
            self.progress = self.plain
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

    def update(self, cur_nimg: int, rate: float | None, values: dict[str, float], extra: list[str] = ()) -> None:
        """`extra`: the family's own `log_values()` keys to show too (e.g. 'grow/res', 'grow/alpha')."""
        if not self.enabled:
            return
        shown = [k for k in ("loss/G", "loss/D", "loss/r1_penalty", "loss/pl_penalty", "augment/p") if k in values]
        shown += [k for k in extra if k in values and k not in shown]
        shown += sorted(k for k in values if k.startswith("metrics/"))
        if self.plain is not None:
            self.plain.tasks[self.task]["fields"] = {k.split("/")[-1]: _shown_value(values[k], k in extra) for k in shown}
            self.plain.update(self.task, completed=cur_nimg)
            return
        losses = "  ".join(f"{k.split('/')[-1]} {_shown_value(values[k], k in extra)}" for k in shown)
        fields = {"kimg": f"{cur_nimg / 1000:.1f}/{self.total / 1000:g}", "losses": losses}
        if rate is not None:
            fields["rate"] = f"{rate:.1f}"
        self.progress.update(self.task, completed=cur_nimg, **fields)


def _shown_value(value: float, whole: bool) -> str:
    """A family's whole-number values (a resolution) without decimals; others with three."""
    return f"{int(value)}" if whole and float(value).is_integer() else f"{value:.3f}"
