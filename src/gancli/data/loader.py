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
"""

from __future__ import annotations

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

    @property
    def global_batch(self) -> int:
        """Samples consumed from the stream per step, all ranks together."""
        return self.batch_size * self.world_size

    @property
    def epoch(self) -> int:
        return self.position // self.stream.length

    def next_indices(self) -> np.ndarray:
        """This rank's dataset indices for the next step (advances `position`)."""
        idx = self.stream.take(self.position, self.global_batch)[self.rank :: self.world_size]
        self.position += self.global_batch
        return idx

    def __iter__(self) -> "Batches":
        return self

    def __next__(self):
        return self._tensors(self.next_indices())

    def take_indices(self, count: int) -> np.ndarray:
        """`take`'s dataset indices, images not read (advances `position` the same way)."""
        count = _int_arg(count, "batch size", 1)
        if count % self.world_size:
            raise UserError(f"batch size {count} is not allowed with {self.world_size} processes: use a multiple of it")
        idx = self.stream.take(self.position, count)[self.rank :: self.world_size]
        self.position += count
        return idx

    def take(self, count: int):
        """This rank's share of the next `count` samples of the global stream (advances `position`).

        `count` may change from call to call (a step may take several minibatches, or a schedule may
        change the batch); it must be a multiple of the world size so that every rank gets as many."""
        return self._tensors(self.take_indices(count))

    def _tensors(self, indices):
        import torch

        images, labels = self.dataset.get_batch(indices)
        # Move uint8 (4x smaller) and convert on the device.
        x = torch.from_numpy(images).to(self.device).to(torch.float32).div_(127.5).sub_(1.0)
        c = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32)).to(self.device)
        return x, c

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
) -> Batches:
    """Endless seeded batches from `dataset`, resumable from `start_index` (see the module docstring).

    dataset:     an ImageDataset (anything with `__len__` and `get_batch(indices)`).
    batch_size:  images per batch on this rank.
    seed:        the order's seed; the same (seed, start_index, world size) gives the same batches.
    start_index: stream position to start from (`Batches.position` of an earlier run).
    device:      torch device the tensors are put on.
    rank, world_size: this process's share of each global batch (rank r takes elements r, r+W, ...).
    """
    return Batches(dataset, batch_size, seed, start_index, device, rank=rank, world_size=world_size)
