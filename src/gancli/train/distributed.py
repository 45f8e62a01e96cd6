"""Data-parallel training on several processes with torch.distributed (one process per GPU).

How it works (the scheme of the official StyleGAN2-ADA trainer, reimplemented; no DDP wrapper):

- Every rank builds the same networks (same seed) and rank 0's parameters and buffers are broadcast at
  the start and after loading a checkpoint or a network to fine-tune.
- Each training phase (Gmain, Greg, Dmain, Dreg) accumulates gradients over this rank's rounds, then
  `sync_grads(module)` flattens the gradients into one buffer, all-reduces it and divides by the world
  size; every rank then steps its own optimizer with the same averaged gradient, so parameters and
  optimizer states stay identical on all ranks. Lazy regularization needs nothing special: every rank
  runs the same phases on the same steps.
- The global batch `train.batch` is split across ranks (`batch / world_size` each; gradient
  accumulation when `train.batch_gpu` is smaller). Rank r reads elements r, r+W, r+2W ... of each
  global batch of the data stream (`gancli.data.loader`).
- EMA, image grids, checkpoints, logs, metrics and the progress bar are rank 0's job; for metrics the
  other ranks generate and embed their share of the fakes (`metrics_session`). Stop requests and the
  time-based log ticks are agreed on every step (`agree`), so all ranks stop at the same step.

Ways to start it:

- `gancli train RECIPE --gpus N` (or `distributed.gpus: N`) without WORLD_SIZE in the environment:
  `launch` starts N worker processes on this machine with the torchrun environment variables
  (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT) and watches them.
- torchrun (or SLURM with those variables set): WORLD_SIZE is in the environment, so `gancli train`
  joins the process group through env:// and spawns nothing.

On CPU, "gpus" means processes and the backend is gloo; on CUDA, rank r uses cuda:LOCAL_RANK and NCCL.
Collectives wait at most `distributed.timeout` seconds. Metric evaluations use a separate gloo group
with a long timeout (reference statistics of a large dataset can take far longer than a step).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from gancli.errors import UserError

ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Test hook: "RANK:STEP" makes that rank exit at once (os._exit(1)) when it reaches STEP. Tests only.
KILL_HOOK = "GANCLI_TEST_KILL_RANK_AT_STEP"
METRICS_WAIT = timedelta(hours=24)  # how long ranks wait while rank 0 evaluates metrics


class DistributedFailure(UserError):
    """A worker process failed; the others were stopped. Exit code 1 (not a usage error)."""

    exit_code = 1


@dataclass
class Context:
    """Where this process stands in the job. The default is a single process without a process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    groups: dict[str, Any] = field(default_factory=dict)  # 'cpu': gloo group for flags/objects, 'slow': long waits

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current = Context()


def current() -> Context:
    """The context of this process (single-process unless `setup` has joined a group)."""
    return _current


def is_main() -> bool:
    return _current.rank == 0


# ------------------------------------------------------------------------------------------------
# Environment and setup


def world_from_env(environ=None) -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) when torchrun or `launch` set WORLD_SIZE > 1, else None."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError(f"environment: WORLD_SIZE/RANK/LOCAL_RANK must be whole numbers, got "
                        f"{env.get('WORLD_SIZE')!r}/{env.get('RANK')!r}/{env.get('LOCAL_RANK')!r}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"environment: RANK {rank} / WORLD_SIZE {world} / LOCAL_RANK {local} do not fit together")
    if world == 1:
        return None
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
    if missing:
        raise UserError(f"environment: WORLD_SIZE is {world} but {' and '.join(missing)} is not set "
                        "(start the job with torchrun, or set the env:// rendezvous variables)")
    return rank, local, world


def under_launcher(environ=None) -> bool:
    """True under torchrun (or another launcher that sets WORLD_SIZE), even with a world of 1."""
    return "WORLD_SIZE" in (os.environ if environ is None else environ)


def choose_backend(asked: str, device_type: str) -> str:
    """'auto' -> nccl on CUDA, gloo on CPU; an impossible choice is a UserError."""
    if asked == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    if asked == "nccl" and device_type != "cuda":
        raise UserError("distributed.backend: 'nccl' needs CUDA devices; training runs on the CPU here, use gloo or auto")
    return asked


def resolve_device(recipe, local_rank: int = 0):
    """The training device of this process: cuda:LOCAL_RANK when training on CUDA, else cpu."""
    import torch

    from gancli.train.device import resolve_device as single_device

    device = single_device(recipe)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise UserError(f"LOCAL_RANK {local_rank} has no GPU: torch sees {count} CUDA device(s) on this machine "
                            "(use fewer processes per node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def setup(recipe, rank: int, local_rank: int, world_size: int):
    """Join the process group through env:// and return this process's training device."""
    import torch.distributed as dist

    global _current
    device = resolve_device(recipe, local_rank)
    backend = choose_backend(recipe.distributed.backend, device.type)
    timeout = timedelta(seconds=float(recipe.distributed.timeout))
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                            timeout=timeout, **kwargs)
    groups = {"cpu": dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None,
              "slow": dist.new_group(backend="gloo", timeout=METRICS_WAIT)}
    _current = Context(rank=rank, local_rank=local_rank, world_size=world_size, backend=backend, groups=groups)
    return device


def shutdown() -> None:
    """Leave the process group (no-op for a single process).

    The groups' C++ worker threads must be gone before the interpreter finalizes: a thread that
    releases a finished collective's tensors then needs the GIL and aborts the process ("terminate
    called without an active exception", signal 6). destroy_process_group only unregisters the groups;
    they die, and their threads are joined, when the last Python reference goes, and the trainer holds
    them in reference cycles (trainer <-> family training object). So collect those cycles here, while
    the interpreter is still alive."""
    global _current
    if _current.enabled:
        import gc

        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _current = Context()
        gc.collect()
    _current = Context()


# ------------------------------------------------------------------------------------------------
# Collectives (all no-ops for one process)


def sync_grads(module) -> None:
    """Average the gradients of `module` over all ranks (one flat all-reduce), in place.

    Only parameters that have a gradient take part; every rank runs the same graph, so that set is the
    same everywhere.
    """
    if not _current.enabled:
        return
    import torch
    import torch.distributed as dist

    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= _current.world_size
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.view_as(p.grad))


def all_reduce_sum_(tensor) -> None:
    """Sum `tensor` over all ranks, in place (on the training backend)."""
    if _current.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor)


def broadcast_modules(*modules) -> None:
    """Copy rank 0's parameters and buffers into every rank's modules."""
    if not _current.enabled:
        return
    import torch.distributed as dist

    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def broadcast_object(obj):
    """Rank 0's `obj` (any picklable value) on every rank."""
    if not _current.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_current.groups.get("cpu"))
    return box[0]


def agree(step: int, stop: bool, tick: bool) -> tuple[bool, bool]:
    """(stop, tick) for all ranks: stop when any rank was asked to stop, tick when rank 0 says so.

    Called once per step by every rank, so every rank stops and logs at the same step.
    """
    hook = os.environ.get(KILL_HOOK)
    if hook:
        kill_rank, kill_step = (int(v) for v in hook.split(":"))
        if kill_rank == _current.rank and step >= kill_step:
            os._exit(1)
    if not _current.enabled:
        return stop, tick
    import torch
    import torch.distributed as dist

    flags = torch.tensor([float(stop), float(tick and _current.is_main)])
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=_current.groups.get("cpu"))
    return bool(flags[0]), bool(flags[1])


def mean_stats(stats) -> dict[str, float]:
    """The means of a LossStats over all ranks (each key: sum of sums / sum of counts)."""
    if not _current.enabled:
        return stats.means()
    import torch

    keys = sorted(stats.sums)
    if not keys:
        return {}
    sums = torch.stack([stats.sums[k].float() for k in keys])
    counts = torch.tensor([float(stats.counts[k]) for k in keys], device=sums.device)
    both = torch.cat([sums, counts])
    all_reduce_sum_(both)
    sums, counts = both.split(len(keys))
    return {k: float(s) / float(c) for k, s, c in zip(keys, sums.cpu(), counts.cpu())}


# ------------------------------------------------------------------------------------------------
# Metrics during training: rank 0 runs the metric; every rank generates and embeds a share of the fakes


def sharded_fake_features(family, G, det, detector_path, seeds: list[int], labels, *, psi: float | None, batch: int,
                          probs: bool, progress: bool = False):
    """Detector features of G's images for `seeds`, computed by all ranks (rank r: seeds[r::W]).

    Called by rank 0 inside `evaluate_generator` while the other ranks are in `serve_metric_jobs`; the
    result, gathered on rank 0 in seed order, is that of one process (up to float rounding of other
    batch compositions). A single process (or fewer seeds than ranks) computes everything itself.
    """
    from gancli.metrics.evaluate import fake_features

    world = _current.world_size
    if not (_current.enabled and _current.is_main and _serving["active"]) or len(seeds) < world:
        return fake_features(family, G, det, seeds, labels, psi=psi, batch=batch, probs=probs, progress=progress)
    job = {"detector_path": None if detector_path is None else str(detector_path), "seeds": seeds, "labels": labels,
           "psi": psi, "batch": batch, "probs": probs, "family": family.name}
    _broadcast_slow(job)
    feats, prob = fake_features(family, G, det, seeds[0::world], None if labels is None else labels[0::world], psi=psi,
                                batch=batch, probs=probs, progress=progress)
    feats = _gather_rows(feats, len(seeds))
    prob = _gather_rows(prob, len(seeds)) if probs else None
    return feats, prob


def serve_metric_jobs(G) -> None:
    """Ranks other than 0: compute shares of fakes for rank 0's metrics until rank 0 says it is done."""
    from gancli.families import all_families
    from gancli.metrics.evaluate import fake_features

    rank, world = _current.rank, _current.world_size
    while (job := _broadcast_slow(None)) is not None:
        det = _job_detector(job, G)
        labels = job["labels"]
        family = next(f for f in all_families() if f.name == job["family"])
        feats, prob = fake_features(family, G, det, job["seeds"][rank::world], None if labels is None else labels[rank::world],
                                    psi=job["psi"], batch=job["batch"], probs=job["probs"])
        _gather_rows(feats, len(job["seeds"]))
        if job["probs"]:
            _gather_rows(prob, len(job["seeds"]))


_serving = {"active": False}


def _job_detector(job: dict, G):
    from gancli.metrics.detectors import load_inception

    return load_inception(job["detector_path"], device=str(next(G.parameters()).device))


def metrics_session(G):
    """Context for one metric evaluation during training: rank 0 evaluates inside it, the others serve.

    Rank 0's `with` body runs the metrics (fake features sharded over the ranks); on leaving it tells
    the others to stop serving. Everything waits on a gloo group with a long timeout.
    """
    import contextlib

    @contextlib.contextmanager
    def session():
        if not _current.enabled:
            yield True
            return
        if not _current.is_main:
            serve_metric_jobs(G)
            yield False
            return
        _serving["active"] = True
        try:
            yield True
        finally:
            _serving["active"] = False
        _broadcast_slow(None)  # not reached when rank 0 fails; the launcher or torchrun then stops the others

    return session()


def _broadcast_slow(obj):
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_current.groups["slow"])
    return box[0]


def _gather_rows(rows, total: int):
    """Rank r holds the rows r, r+W, ... of a [total, D] array; rank 0 gets it whole (others: None)."""
    import numpy as np
    import torch
    import torch.distributed as dist

    world, rank = _current.world_size, _current.rank
    most = -(-total // world)
    mine = torch.zeros([most, rows.shape[1]], dtype=torch.float64)
    mine[: len(rows)] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64))
    parts = [torch.empty_like(mine) for _ in range(world)] if rank == 0 else None
    dist.gather(mine, parts, dst=0, group=_current.groups["slow"])
    if rank != 0:
        return None
    out = np.empty([total, rows.shape[1]], np.float64)
    for r, part in enumerate(parts):
        out[r::world] = part[: len(range(r, total, world))].numpy()
    return out


# ------------------------------------------------------------------------------------------------
# Launching N processes on this machine


def free_port() -> int:
    """A TCP port that is free on this machine now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_launch(recipe, nprocs: int) -> None:
    """Settings that must hold before N processes are started (so errors are said once)."""
    import torch

    t = recipe.train
    if t.batch % nprocs:
        raise UserError(f"train.batch ({t.batch}) must be divisible by the number of processes ({nprocs})")
    want = t.device
    cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: 'cuda' was asked for but torch sees no CUDA device (use auto or cpu)")
    choose_backend(recipe.distributed.backend, "cuda" if cuda else "cpu")
    if cuda and torch.cuda.device_count() < nprocs:
        raise UserError(f"--gpus {nprocs}: torch sees only {torch.cuda.device_count()} CUDA device(s) on this machine")


def launch(recipe, run_dir: Path, resume: str | None, nprocs: int, console=None, init: str | None = None) -> None:
    """Run training in `nprocs` worker processes on this machine and wait for them.

    The workers get the torchrun environment and the resolved recipe; rank 0 writes into `run_dir`.
    If a worker fails, the others are terminated (SIGTERM, then SIGKILL after a few seconds) and
    `DistributedFailure` is raised. SIGINT/SIGTERM to this process are passed on to the workers once
    each (they stop together at the same step and rank 0 saves a checkpoint).
    """
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(nprocs),
               LOCAL_WORLD_SIZE=str(nprocs))
    if "OMP_NUM_THREADS" not in env and not recipe.train.threads:  # share the cores instead of oversubscribing
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nprocs))
    with tempfile.TemporaryDirectory(prefix="gancli-launch-") as tmp:
        spec = Path(tmp) / "job.json"
        spec.write_text(json.dumps({"recipe": recipe.to_dict(), "run_dir": str(run_dir), "resume": resume,
                                    "init": init}))
        code = [sys.executable, "-c", "from gancli.train.run import worker_main; worker_main()", str(spec)]
        procs = []
        for rank in range(nprocs):
            worker_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
            # A session of their own: a terminal's Ctrl-C reaches only this launcher, which passes it on once.
            procs.append(subprocess.Popen(code, env=worker_env, start_new_session=True))
        signals = {"count": 0}

        def forward(signum, frame):
            signals["count"] += 1
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM if signals["count"] == 1 else signal.SIGINT)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            failed = _watch(procs)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for p in procs:  # never leave a worker behind
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if failed is not None:
        rank, rc = failed
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        raise DistributedFailure(f"training process rank {rank} of {nprocs} {how}; the other processes were stopped "
                                 f"and the last complete checkpoint in {run_dir} is kept")


def _watch(procs, grace: float = 5.0) -> tuple[int, int] | None:
    """Wait for all workers; on the first failure stop the rest. Returns (rank, code) of that failure."""
    while True:
        codes = [p.poll() for p in procs]
        bad = [(rank, rc) for rank, rc in enumerate(codes) if rc not in (None, 0)]
        if bad:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.time() + grace
            while time.time() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.05)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            return bad[0]
        if all(rc == 0 for rc in codes):
            return None
        time.sleep(0.1)


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the launcher dies (even by SIGKILL), so no worker trains on orphaned."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher is already gone
        os.kill(os.getpid(), signal.SIGTERM)


def _is_communication_error(e: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return any(s in text for s in ("Connection reset", "Connection closed", "gloo", "NCCL", "Timed out", "timed out"))
