"""Seeded, resumable, shardable batches of training images.

The sample order is one endless *global stream* of dataset indices, made of epochs: epoch `e` is
`numpy.random.RandomState(s_e).permutation(len(dataset))` with
`s_e = SeedSequence([seed, e]).generate_state(1)[0]`, so each epoch is reshuffled, and the stream
depends only on (seed, dataset length). RandomState and SeedSequence are NumPy's frozen, stable
generators, so the order is the same on every NumPy version and machine.

A *position* is the number of samples of the global stream consumed so far (all ranks together).
One step consumes `batch_size * world_size` consecutive stream elements; rank `r` takes every
`world_size`-th of them, starting at offset `r`. The trainer saves `Batches.position` in its
checkpoint and passes it back as `start_index`; the resumed run then yields exactly the batches the
original run would have yielded next, even when it runs on a different number of GPUs (the global
stream continues; only the split between ranks changes).

Decoding: a dataset that streams from its source (`dataset.streamed`) is decoded by `workers` forked
processes (`DecodePool`). Because the stream is a pure function of (seed, position), the batches after
the current one are known in advance: after each `take(n)` the next `prefetch` batches of the same n
are decoded speculatively. A `take` of another n (a step that reads a different number, a batch
schedule) drops the speculation (queued work for it is skipped by the workers) and decodes what was
asked for, so the images never depend on what was prefetched. On CUDA the uint8 batch is copied to
the device from pinned memory. A cached or in-memory dataset is read in this process (a memory copy).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import numpy as np

from gancli.errors import UserError


def epoch_order(length: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of `range(length)` used for epoch `epoch` of the stream for `seed`."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch)]).generate_state(1)[0]
    return np.random.RandomState(int(state)).permutation(length)


class IndexStream:
    """Random access into the global stream of dataset indices (caches the current epoch)."""

    def __init__(self, length: int, seed: int):
        if length < 1:
            raise ValueError("the dataset is empty")
        self.length = int(length)
        self.seed = int(seed)
        self._epoch = -1
        self._order: np.ndarray | None = None

    def _get_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order, self._epoch = epoch_order(self.length, self.seed, epoch), epoch
        return self._order

    def take(self, position: int, count: int) -> np.ndarray:
        """Dataset indices at stream positions [position, position + count)."""
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            epoch, offset = divmod(position + filled, self.length)
            n = min(count - filled, self.length - offset)
            out[filled : filled + n] = self._get_order(epoch)[offset : offset + n]
            filled += n
        return out


def _int_arg(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} {value!r} is not allowed: use a whole number >= {minimum}")
    return int(value)


class Batches:
    """Endless iterator of (images float32 [B, 3, R, R] in [-1, 1], labels float32 [B, c_dim]) tensors.

    `position` is the number of global-stream samples consumed after the last batch yielded; save it
    and pass it as `start_index` to continue exactly. `epoch` is the epoch of the next sample.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int = 0,
        start_index: int = 0,
        device="cpu",
        *,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
    ):
        self.dataset = dataset
        self.batch_size = _int_arg(batch_size, "batch size", 1)
        self.world_size = _int_arg(world_size, "world size", 1)
        self.rank = _int_arg(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise UserError(
                f"rank {rank} is not allowed with world size {world_size}: use 0 .. {world_size - 1}"
            )
        self.seed = int(seed)
        self.position = _int_arg(start_index, "data position", 0)
        self.device = device
        self.stream = IndexStream(len(dataset), self.seed)
        self.workers = _int_arg(workers, "data.workers", 0)
        self.prefetch = _int_arg(prefetch, "prefetch", 0)
        self.pin_memory = bool(pin_memory)
        self._pool = DecodePool(dataset, self.workers) if self.workers and getattr(dataset, "streamed", False) else None
        self._pending: dict[tuple[int, int], int] = {}  # (position, count) -> job of a prefetched batch

    def close(self) -> None:
        """Stop the decoding workers (also done when the stream is garbage collected)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._pending.clear()

    def _share(self, position: int, count: int) -> np.ndarray:
        return self.stream.take(position, count)[self.rank :: self.world_size]

    @property
    def global_batch(self) -> int:
        """Samples consumed from the stream per step, all ranks together."""
        return self.batch_size * self.world_size

    @property
    def epoch(self) -> int:
        return self.position // self.stream.length

    def next_indices(self) -> np.ndarray:
        """This rank's dataset indices for the next step (advances `position`)."""
        idx = self._share(self.position, self.global_batch)
        self.position += self.global_batch
        return idx

    def __iter__(self) -> "Batches":
        return self

    def __next__(self):
        return self.take(self.global_batch)

    def take_indices(self, count: int) -> np.ndarray:
        """`take`'s dataset indices, images not read (advances `position` the same way)."""
        count = _int_arg(count, "batch size", 1)
        if count % self.world_size:
            raise UserError(f"batch size {count} is not allowed with {self.world_size} processes: use a multiple of it")
        idx = self._share(self.position, count)
        self.position += count
        return idx

    def take(self, count: int):
        """This rank's share of the next `count` samples of the global stream (advances `position`).

        `count` may change from call to call (a step may take several minibatches, or a schedule may
        change the batch); it must be a multiple of the world size so that every rank gets as many."""
        position = self.position
        idx = self.take_indices(count)
        if self._pool is None:
            return self._tensors(*self.dataset.get_batch(idx))
        job = self._pending.pop((position, count), None)
        if job is None:  # not prefetched (the first batch, or another count than last time)
            if self._pending:
                self._pool.drop(self._pending.values())
                self._pending.clear()
            job = self._pool.submit(idx)
        for k in range(self.prefetch):
            at = (self.position + k * count, count)
            if at not in self._pending:
                self._pending[at] = self._pool.submit(self._share(*at))
        images, used, skipped = self._pool.result(job)
        self.dataset.report_skipped(skipped)
        return self._tensors(images, self.dataset.labels[used])

    def _tensors(self, images, labels):
        import torch

        x = torch.from_numpy(images)
        c = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
        on_gpu = torch.device(self.device).type == "cuda"
        if on_gpu:  # page-locked, so the copy to the GPU is an asynchronous DMA
            x, c = x.pin_memory(), c.pin_memory()
        # Move uint8 (4x smaller) and convert on the device.
        x = x.to(self.device, non_blocking=True).to(torch.float32).div_(127.5).sub_(1.0)
        if self.pin_memory and not on_gpu:  # the float batch the step moves to the GPU
            x = x.pin_memory()
        return x, c.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}


def batches(
    dataset,
    batch_size: int,
    seed: int = 0,
    start_index: int = 0,
    device="cpu",
    *,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> Batches:
    """Endless seeded batches from `dataset`, resumable from `start_index` (see the module docstring).

    dataset:     an ImageDataset (anything with `__len__` and `get_batch(indices)`).
    batch_size:  images per batch on this rank.
    seed:        the order's seed; the same (seed, start_index, world size) gives the same batches.
    start_index: stream position to start from (`Batches.position` of an earlier run).
    device:      torch device the tensors are put on.
    rank, world_size: this process's share of each global batch (rank r takes elements r, r+W, ...).
    workers:     processes that decode a streamed dataset (0: this process; see `resolve_workers`).
    prefetch:    batches decoded ahead (streamed datasets with workers only).
    pin_memory:  CPU batches in page-locked memory (for a training step that copies them to a GPU).
    """
    return Batches(dataset, batch_size, seed, start_index, device, rank=rank, world_size=world_size,
                   workers=workers, prefetch=prefetch, pin_memory=pin_memory)


def resolve_workers(workers: int | None, world_size: int = 1) -> int:
    """`data.workers`: None -> the CPU cores available to this process / processes per machine (>= 1)."""
    if workers is not None:
        return _int_arg(workers, "data.workers", 0)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(world_size)))


# ---------------------------------------------------------------------------------------------------
# Worker processes that decode batches of a streamed dataset.

def _worker_main(dataset, tasks, results, generation) -> None:
    # Killed with the main process (even by SIGKILL); deaf to Ctrl-C and SIGTERM, which the main process
    # handles by finishing the step and saving a checkpoint (a scheduler may signal the whole group).
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the main process is already gone
            return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    results.cancel_join_thread()  # exit without waiting for the main process to read what is queued
    while True:
        task = tasks.get()
        if task is None:
            return
        job, part, gen, indices = task
        if gen < generation.value:  # speculation that was dropped
            results.put((job, part, "dropped", None))
            continue
        try:
            results.put((job, part, "ok", dataset.read_batch(indices)))
        except Exception as e:  # noqa: BLE001 - reported by the main process
            from gancli.errors import UserError

            if isinstance(e, UserError):
                results.put((job, part, "user", str(e)))
            else:
                results.put((job, part, "crash", traceback.format_exc()))


class DecodePool:
    """`workers` forked processes that run `dataset.read_batch` on parts of batches (in order of submission).

    The workers only decode with Pillow and NumPy (never torch), so forking a process that has imported
    torch is safe; they are killed when the main process dies, and ignore Ctrl-C and SIGTERM (the main
    process stops them when it is done)."""

    def __init__(self, dataset, workers: int):
        import multiprocessing

        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
        self.workers = int(workers)
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._generation = ctx.Value("q", 0)
        self._procs = [ctx.Process(target=_worker_main, args=(dataset, self._tasks, self._results, self._generation),
                                   daemon=True, name=f"gancli-data-{i}") for i in range(self.workers)]
        for p in self._procs:
            p.start()
        self._next_job = 0
        self._jobs: dict[int, dict] = {}  # job -> {"parts": n, "gen": g, "done": {part: value}}

    def submit(self, indices: np.ndarray) -> int:
        job = self._next_job
        self._next_job += 1
        parts = np.array_split(np.asarray(indices, dtype=np.int64), max(1, min(self.workers, len(indices))))
        gen = self._generation.value
        self._jobs[job] = {"parts": len(parts), "gen": gen, "done": {}}
        for k, part in enumerate(parts):
            self._tasks.put((job, k, gen, part))
        return job

    def drop(self, jobs) -> None:
        """Forget speculative jobs; the workers skip their queued parts."""
        for job in list(jobs):
            self._jobs.pop(job, None)
        with self._generation.get_lock():
            self._generation.value += 1

    def result(self, job: int):
        """(images, base indices read, skipped messages) of a job, waiting for its parts."""
        import queue

        from gancli.errors import UserError

        entry = self._jobs[job]
        while len(entry["done"]) < entry["parts"]:
            try:
                got_job, part, status, value = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"a data worker process died (exit code {dead[0].exitcode})") from None
                continue
            other = self._jobs.get(got_job)
            if other is not None:  # else a dropped job's part
                other["done"][part] = (status, value)
        parts = [entry["done"][k] for k in range(entry["parts"])]
        del self._jobs[job]
        for status, value in parts:  # a problem of a prefetched batch counts only when that batch is read
            if status == "user":
                raise UserError(value)
            if status == "crash":
                raise RuntimeError(f"a data worker failed:\n{value}")
            if status != "ok":
                raise RuntimeError("internal: a wanted batch was dropped")
        parts = [value for _, value in parts]
        images = np.concatenate([p[0] for p in parts])
        used = np.concatenate([p[1] for p in parts])
        return images, used, [m for p in parts for m in p[2]]

    def close(self) -> None:
        for _ in self._procs:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
        self._procs = []

    def __del__(self):
        try:
            if self._procs:
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
