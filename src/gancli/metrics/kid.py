"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

    k(x, y) = (x . y / d + 1)^3,     d = feature dimension

averaged over `num_subsets` = 100 random subsets of size m = min(n_real, n_fake, 1000) (drawn without
replacement, fakes first then reals, from one RandomState(seed)), the settings of the official
code. Per subset:

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2
"""

from __future__ import annotations

import numpy as np

__all__ = ["kid_subsets", "kernel_inception_distance", "NUM_SUBSETS", "MAX_SUBSET_SIZE"]

NUM_SUBSETS = 100
MAX_SUBSET_SIZE = 1000


def subset_size(n_real: int, n_fake: int, max_subset_size: int = MAX_SUBSET_SIZE) -> int:
    return min(n_real, n_fake, max_subset_size)


def kid_subsets(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = NUM_SUBSETS,
                max_subset_size: int = MAX_SUBSET_SIZE, seed: int = 0) -> np.ndarray:
    """Unbiased MMD^2 estimate of each subset, float64 [num_subsets]."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need features [N, D] and [M, D], got {list(real.shape)} and {list(fake.shape)}")
    d = real.shape[1]
    m = subset_size(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 features in each set, got {len(real)} and {len(fake)}")
    rng = np.random.RandomState(seed)
    out = np.empty(num_subsets, np.float64)
    for s in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        out[s] = within - 2 * kxy.sum() / (m * m)
    return out


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = NUM_SUBSETS,
                              max_subset_size: int = MAX_SUBSET_SIZE, seed: int = 0) -> float:
    """KID: the mean of `kid_subsets`."""
    return float(kid_subsets(real, fake, num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed).mean())
