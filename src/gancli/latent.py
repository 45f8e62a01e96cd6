"""Latents: seeds -> z (the official convention), seed lists, truncation values.

Seed `s` means `z = numpy.random.RandomState(s).randn(z_dim)`, as in the official StyleGAN tools, so an
imported official network gives the same image for the same seed, and the image for a seed never
depends on the batch size or the other seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gancli.errors import UserError

if TYPE_CHECKING:
    import torch

MAX_SEED = 2**32 - 1
MAX_SEEDS = 1_000_000  # seeds in one command: the list is checked before it is built


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'0-7,42' -> [0, 1, ..., 7, 42]. Ranges are inclusive; order and repeats are kept."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise UserError(f"{option} {text}: range {part} goes backwards")
                if len(seeds) + hi_i - lo_i + 1 > MAX_SEEDS:
                    raise UserError(f"{option} {text}: {len(seeds) + hi_i - lo_i + 1} seeds; at most {MAX_SEEDS:,} "
                                    "in one command (split the range over several runs)")
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
                if len(seeds) > MAX_SEEDS:
                    raise UserError(f"{option}: more than {MAX_SEEDS:,} seeds; at most {MAX_SEEDS:,} in one command")
        except ValueError:
            raise UserError(f"{option} {text}: {part!r} is not a seed; use integers and ranges like 0-7,42") from None
    if not seeds:
        raise UserError(f"{option} {text!r}: no seeds given; use integers and ranges like 0-7,42")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"{option} {text}: seed {bad[0]} is outside 0..{MAX_SEED}")
    return seeds


def z_from_seeds(seeds: list[int], z_dim: int, device: str | torch.device = "cpu",
                 threshold: float | None = None) -> torch.Tensor:
    """[N, z_dim] float32 latents, one RandomState per seed (independent of batch and order).

    threshold: the truncation trick of generators without a mapping network (BigGAN, Brock et al.
    2019, Sec. 3.1): entries with |z| > threshold are redrawn from the same seed's stream until all
    lie within it. Without a threshold, seed s gives exactly `RandomState(s).randn(z_dim)`.
    """
    import numpy as np
    import torch

    if threshold is not None and threshold <= 0:
        raise UserError(f"truncation threshold {threshold}: must be > 0 for resampling truncation")
    rows = []
    for s in seeds:
        rs = np.random.RandomState(s)
        z = rs.randn(z_dim)
        if threshold is not None:
            outside = np.abs(z) > threshold
            while outside.any():
                z[outside] = rs.randn(int(outside.sum()))
                outside = np.abs(z) > threshold
        rows.append(z)
    return torch.from_numpy(np.stack(rows)).to(device=device, dtype=torch.float32)
