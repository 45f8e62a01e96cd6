"""Per-step seeds: every random draw of training step k comes from generators seeded by (train.seed, k)."""

from __future__ import annotations

import numpy as np


def step_seed(seed: int, step: int | tuple[int, ...]) -> int:
    """A 63-bit seed for step `step` (or (step, phase, round)) of a run seeded with `seed`."""
    key = [seed, *step] if isinstance(step, tuple) else [seed, step]
    return int(np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).astype(np.uint64) @ [1 << 31, 1])
