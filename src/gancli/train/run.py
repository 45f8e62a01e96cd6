"""`gancli train`: run directory, dataset, resume, signals; the loop itself is in `loop.py`."""

from __future__ import annotations

import copy
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gancli.errors import UserError
from gancli.recipe import Recipe

# Keys whose value may change when a run is resumed; anything else must match for an exact resume.
RESUMABLE_CHANGES = {("train", "total_kimg"), ("train", "snapshot_kimg"), ("train", "image_kimg"), ("train", "threads"),
                     ("train", "keep_snapshots"),
                     ("metrics", "names"), ("metrics", "num"),
                     # another number of processes (or accumulation rounds) continues the same global batches
                     ("train", "batch_gpu"), ("distributed", "gpus"), ("distributed", "backend"), ("distributed", "timeout")}


@dataclass
class ResumePlan:
    """What `--resume RUN` continues: the checkpoint, and the run's recipe with the command line's changes."""

    pair: Any  # gancli.train.checkpoint.CheckpointPair
    recipe: Recipe
    step: int
    kimg: float
    changed: list[str] = field(default_factory=list)  # 'train.total_kimg 0.3 -> 0.5', from the command line
    ignored: list[str] = field(default_factory=list)  # keys that must not change for an exact resume


def plan_resume(spec: str, overrides: list[tuple[list[str], Any]]) -> ResumePlan:
    """The run's own resolved recipe (embedded in its newest complete checkpoint, or the snapshot
    named) with the command-line overrides applied: those in RESUMABLE_CHANGES take effect, the
    others are ignored (and listed), since they would break the exact continuation."""
    from gancli.recipe import apply_overrides
    from gancli.train.checkpoint import read_snapshot_header, resolve_checkpoint

    pair = resolve_checkpoint(spec, with_state=True, option="--resume")
    stored_d, meta = read_snapshot_header(pair.snapshot, verify=False)  # the hash is checked when loading
    origin = f"{pair.snapshot} (embedded recipe)"
    stored = Recipe.from_dict(stored_d, origin=origin, strict=False).to_dict()
    asked = Recipe.from_dict(apply_overrides(copy.deepcopy(stored), overrides),
                             origin=f"--resume {spec} with the command line").to_dict()
    changed, ignored = [], []
    for section, values in asked.items():
        if not isinstance(values, dict):
            if values != stored[section]:
                ignored.append(section)
                asked[section] = stored[section]
            continue
        for key, value in values.items():
            if stored[section].get(key) != value:
                if (section, key) in RESUMABLE_CHANGES:
                    changed.append(f"{section}.{key} {stored[section].get(key)} -> {value}")
                else:
                    ignored.append(f"{section}.{key}")
                    values[key] = stored[section].get(key)
    recipe = Recipe.from_dict(asked, origin=origin)
    step = int(meta.get("step", 0))
    kimg = float(meta.get("cur_nimg", 0)) / 1000 if "cur_nimg" in meta else float(meta.get("kimg", pair.kimg))
    return ResumePlan(pair, recipe, step, kimg, changed, ignored)


def resume_notes(plan: ResumePlan) -> list[str]:
    """One line for each thing a resume takes from the command line, or leaves out."""
    lines = [f"resuming {plan.pair.snapshot.parent} at {plan.kimg:g} kimg (step {plan.step}) with the run's own recipe"]
    if plan.changed:
        lines.append(f"from the command line: {', '.join(plan.changed)}")
    if plan.ignored:
        lines.append(f"ignored (an exact resume keeps them): {', '.join(plan.ignored)}")
    return lines


class RunLog:
    """stats.jsonl always; TensorBoard events too when the tensorboard package is installed."""

    def __init__(self, run_dir: Path):
        import importlib.util

        from gancli.train.rundir import JsonlLogger

        self.jsonl = JsonlLogger(run_dir / "stats.jsonl")
        self.tensorboard = None
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir))

    def log(self, **fields) -> None:
        self.jsonl.log(**fields)
        if self.tensorboard is not None and "event" not in fields and "kimg" in fields:
            step = int(round(fields["kimg"] * 1000))
            for key, value in fields.items():
                if key != "kimg" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, global_step=step)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def is_official_network(spec: str) -> bool:
    from gancli.convert import detect_format

    path = Path(spec).expanduser()
    return path.is_file() and detect_format(path) == "nvlabs-pickle"


def _adopt_network(recipe: Recipe, network: Recipe, origin: str, console) -> Recipe:
    """The user's recipe (data, loss, schedule) with the network's architecture and resolution."""
    d = recipe.to_dict()
    d["model"] = network.family.adopt_model(d["model"], network.to_dict()["model"])
    if d["data"]["resolution"] != network.data.resolution:
        console.print(f"note: training at {network.data.resolution}x{network.data.resolution}, the resolution of {Path(origin).name}")
        d["data"]["resolution"] = network.data.resolution
    return Recipe.from_dict(d, origin=f"{recipe.name} + {Path(origin).name}")


def train_from_cli(recipe: Recipe, outdir: Path, resume: str | None = None, progress: bool | None = None,
                   run_dir: Path | None = None, init: str | None = None) -> Path:
    """Create or reopen a run directory and train. Returns the run directory.

    With distributed.gpus > 1 and no WORLD_SIZE in the environment, N worker processes are started on
    this machine (`distributed.launch`); under torchrun this process joins the group. `run_dir` (used
    by the launcher's workers) is an existing, freshly created run directory to train into.

    `init`: a network file (gancli snapshot or run directory, official .pkl) whose G, G_ema and D
    weights start a new run (transfer learning); its architecture and resolution replace the recipe's.
    `--resume` with an official .pkl means the same (it holds no training state to resume).
    """
    from rich.console import Console

    from gancli.train import distributed
    from gancli.train.checkpoint import load_checkpoint, resolve_checkpoint

    world = distributed.world_from_env()
    console = Console(stderr=True, highlight=False, soft_wrap=True, quiet=world is not None and world[0] != 0)
    snapshot = state = None
    if init is not None and resume:
        raise UserError("--init and --resume: give one (--init starts a new run from a network's weights, "
                        "--resume continues a run exactly)")
    if resume and is_official_network(resume):
        init, resume = resume, None  # fine-tuning an official network: a new run from its weights
    if init is None and not resume:
        why = recipe.family.requires_init(recipe)
        if why:
            raise UserError(why)
    init_spec, resume_spec = init, resume
    if init is not None:
        from gancli.convert import open_network

        modules, net_recipe, meta = open_network(Path(init).expanduser())
        missing = [name for name in net_recipe.family.modules if name not in modules]
        if missing:  # e.g. a rosinality .pt: only its generator is imported
            raise UserError(f"--init {init}: has no {', '.join(missing)} weights as gancli imports it (rosinality "
                            f"checkpoints give g_ema alone), and a new {net_recipe.model.kind} run needs "
                            f"{', '.join(net_recipe.family.modules)}; start from a gancli run or snapshot or an official "
                            ".pkl (the file works in sample, mix, interpolate, truncate, noise, project, evaluate)")
        recipe = _adopt_network(recipe, net_recipe, init, console)
        init = (modules, meta, str(init))
    if resume:  # `recipe` is the run's own, with the command line's changes (`plan_resume`)
        pair = resolve_checkpoint(resume, with_state=True, option="--resume")
        snapshot, state = load_checkpoint(pair)
        run_dir = pair.snapshot.parent
    source = Path(recipe.data.source).expanduser()
    if not recipe.data.source.startswith("emoji") and source.exists():  # the embedded recipe must work from anywhere
        recipe.data.source = str(source.resolve())
    if recipe.distributed.gpus > 1 and not distributed.under_launcher():  # start the processes here and wait
        distributed.check_launch(recipe, recipe.distributed.gpus)
        if not resume:
            run_dir = _new_run_dir(recipe, outdir)
        console.print(f"starting {recipe.distributed.gpus} training processes for {run_dir}")
        distributed.launch(recipe, run_dir, resume_spec, recipe.distributed.gpus, console=console, init=init_spec)
        return run_dir
    device = distributed.setup(recipe, *world) if world is not None else None
    try:
        return _train(recipe, outdir, run_dir, resume, progress, console, device, snapshot, state, init, world)
    finally:
        distributed.shutdown()


def _tidy_for_resume(run_dir: Path, snapshot, state: dict, keep: int, console) -> None:
    """Before a resumed run writes: remove the temporary files and lone snapshots a killed writer left in
    the run, and the older pairs a killed save had no time to remove (train.keep_snapshots); cut
    stats.jsonl back to the checkpoint's step, so the log reads as one run that never stopped."""
    from gancli.train.checkpoint import list_checkpoints, remove_older_checkpoints
    from gancli.train.rundir import remove_leftover_temp_files, trim_jsonl

    removed = remove_leftover_temp_files(run_dir)
    resumed = Path(snapshot.path)
    order = next((p.order for p in list_checkpoints(run_dir) if p.snapshot.name == resumed.name), None)
    for pair in list_checkpoints(run_dir):  # snapshots a killed save left without their state
        if order is not None and pair.order > order and not pair.state.exists():
            removed.append((pair.snapshot, pair.snapshot.stat().st_size))
            pair.snapshot.unlink()
    current = next((p for p in list_checkpoints(run_dir) if p.snapshot.name == resumed.name), None)
    if keep and current is not None:
        remove_older_checkpoints(run_dir, current, keep)
    if removed:
        size = sum(n for _, n in removed)
        console.print(f"removed {len(removed)} file(s) ({size / 1e6:.1f} MB) left in {run_dir} by an "
                      f"interrupted write: {', '.join(p.name for p, _ in removed)}", markup=False, soft_wrap=True)
    step, nimg = int(state.get("step", snapshot.meta.get("step", 0))), int(state.get("cur_nimg", 0))
    trim_jsonl(run_dir / "stats.jsonl", step=step, kimg=nimg / 1000)


def _new_run_dir(recipe: Recipe, outdir: Path) -> Path:
    import yaml

    from gancli.fileio import atomic_write_text
    from gancli.train.rundir import create_run_dir

    run_dir = create_run_dir(outdir, recipe.name)
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return run_dir


def _train(recipe, outdir, run_dir, resume, progress, console, device, snapshot, state, init, world) -> Path:
    from gancli import ops
    from gancli.train import distributed
    from gancli.train.loop import Trainer, check_ops_device, resolve_device

    ops.set_impl(recipe.ops)
    check_ops_device(recipe.ops, device or resolve_device(recipe))  # before a run directory is made
    dataset = recipe.family.open_dataset(recipe)  # the family's kind of data (images, pairs, unpaired)
    if init is not None:  # checked before a run directory is created
        c_dim = dataset.c_dim if recipe.data.use_labels else 0
        if int(init[1].get("c_dim", 0)) != c_dim:
            raise UserError(f"{init[2]}: the network has {init[1].get('c_dim', 0)} classes but the training "
                            f"data gives {c_dim} (set data.use_labels to match)")
    if not resume and run_dir is None:  # only rank 0 creates the run directory; the others learn its path
        run_dir = distributed.broadcast_object(_new_run_dir(recipe, outdir) if distributed.is_main() else None)
    if snapshot is not None and distributed.is_main():
        _tidy_for_resume(run_dir, snapshot, state, recipe.train.keep_snapshots, console)
    # Rank 0 shows progress: a rich bar on a terminal, plain lines every 20 s in a log (train/loop.py).
    show = (True if progress is None else progress) and distributed.is_main()
    trainer = Trainer(recipe, dataset, run_dir, device=device, console=console, progress=show)
    if init is not None:
        trainer.load_weights(trainer.training.weights_from_init(init[0]), origin=init[2])
        console.print(f"fine-tuning {Path(init[2]).name} into {run_dir} on {trainer.device} "
                      f"({dataset.num_images} images, {trainer.total_nimg / 1000:g} kimg)")
    elif snapshot is not None:
        trainer.load(snapshot.modules, state, origin=str(snapshot.path))
        console.print(f"resuming {run_dir} at {trainer.state.cur_nimg / 1000:g} kimg (step {trainer.state.step})")
    else:
        console.print(f"training {recipe.name} into {run_dir} on {trainer.device} "
                      f"({dataset.num_images} images, {trainer.total_nimg / 1000:g} kimg)")
    if trainer.threads is not None and trainer.threads.reduced:
        console.print(f"note: {trainer.threads.reason}", markup=False, soft_wrap=True)
    storage = getattr(dataset, "storage", None)  # images: memory-mapped cache file, or streamed from the source
    if storage is not None and distributed.is_main():
        console.print(f"data: {dataset.describe()}, {storage}", soft_wrap=True)
    if world is not None:
        console.print(f"{world[2]} processes ({distributed.current().backend}), {trainer.batch_rank} images per "
                      f"process and step, {trainer.batch_rank // trainer.batch_gpu} accumulation round(s)")

    stop = {"count": 0}

    def request_stop(signum, frame):
        stop["count"] += 1
        if stop["count"] > 1:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        console.print("[yellow]stopping: finishing this step and saving a checkpoint (Ctrl-C again to abort)[/yellow]")

    trainer.stop_requested = lambda: stop["count"] > 0
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if distributed.is_main():
            with RunLog(run_dir) as log:
                outcome = trainer.run(log=log)
        else:
            outcome = trainer.run(log=None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome == "stopped":
        console.print(f"stopped at {trainer.state.cur_nimg / 1000:g} kimg; continue with: gancli train --resume {run_dir}")
    else:
        console.print(f"done: {run_dir}")
    return run_dir


def worker_main() -> None:
    """Entry point of a worker started by `distributed.launch` (argv[1]: the job file)."""
    import json
    import os

    from gancli.train.distributed import _die_with_parent, _is_communication_error

    _die_with_parent()
    job = json.loads(Path(sys.argv[1]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    try:
        recipe = Recipe.from_dict(job["recipe"], origin="the launcher's recipe")
        train_from_cli(recipe, outdir=Path(job["run_dir"]).parent, resume=job["resume"], run_dir=Path(job["run_dir"]),
                       init=job.get("init"))
    except UserError as e:
        if os.environ.get("GANCLI_DEBUG"):
            raise
        print(f"error: {e}" if rank == 0 else f"error (rank {rank}): {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(f"interrupted (rank {rank})", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:  # a peer died or hung: say so in one line; other errors keep their traceback
        if os.environ.get("GANCLI_DEBUG") or not _is_communication_error(e):
            raise
        print(f"error (rank {rank}): lost contact with another training process ({str(e).splitlines()[0][:300]})",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
