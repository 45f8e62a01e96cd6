"""Improved precision and recall (Kynkaanniemi et al. 2019), k = 3.

Each set's manifold is the union of balls around its points, the radius of a point being the
distance to its k-th nearest neighbour in the same set (the point itself not counted).

    precision = fraction of fakes inside at least one real ball   (fidelity)
    recall    = fraction of reals inside at least one fake ball   (coverage)

"Inside" is distance <= radius. Distances are Euclidean, computed in float64 in row batches
(|a|^2 + |b|^2 - 2 a.b, on `device`), so 50k x 50k never sits in memory at once.

The paper (and NVlabs' pr50k3) uses VGG16 fc2 features; gancli uses the Inception pool3 features of
its offline detector, so its numbers are not comparable with published VGG16 ones (the protocol
says so).
"""

from __future__ import annotations

import numpy as np

__all__ = ["manifold_radii", "fraction_inside", "precision_recall", "K"]

K = 3
_BLOCK_ELEMENTS = 1 << 24  # float64 distances per batch (128 MiB)


def _tensor(x, device):
    import torch

    return torch.as_tensor(np.asarray(x, np.float64), device=device)


def _rows(n_cols: int, batch_size: int | None) -> int:
    return batch_size or max(1, _BLOCK_ELEMENTS // max(1, n_cols))


def _sq_dists(a, b, b_sq):
    a_sq = (a * a).sum(1, keepdim=True)
    return (a_sq + b_sq[None, :] - 2 * (a @ b.T)).clamp_(min=0)


def manifold_radii(feats: np.ndarray, k: int = K, *, device: str = "cpu", batch_size: int | None = None) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded), [N]."""
    import torch

    x = _tensor(feats, device)
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {n}")
    x_sq = (x * x).sum(1)
    out = []
    rows = _rows(n, batch_size)
    for i in range(0, n, rows):
        d2 = _sq_dists(x[i:i + rows], x, x_sq)
        # The k+1-th smallest including the point itself (distance 0) is the k-th neighbour's.
        out.append(torch.kthvalue(d2, k + 1, dim=1).values)
    return torch.cat(out).sqrt().cpu().numpy()


def fraction_inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, *, device: str = "cpu",
                    batch_size: int | None = None) -> float:
    """Fraction of `queries` within distance radii[j] of some centres[j]."""

    q = _tensor(queries, device)
    c = _tensor(centres, device)
    r2 = _tensor(radii, device) ** 2
    c_sq = (c * c).sum(1)
    inside = 0
    rows = _rows(c.shape[0], batch_size)
    for i in range(0, q.shape[0], rows):
        d2 = _sq_dists(q[i:i + rows], c, c_sq)
        inside += int((d2 <= r2[None, :]).any(dim=1).sum())
    return inside / q.shape[0]


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = K, device: str = "cpu",
                     batch_size: int | None = None) -> tuple[float, float]:
    """(precision, recall) of fake features against real features, both [N, D]."""
    real_r = manifold_radii(real, k, device=device, batch_size=batch_size)
    fake_r = manifold_radii(fake, k, device=device, batch_size=batch_size)
    precision = fraction_inside(fake, real, real_r, device=device, batch_size=batch_size)
    recall = fraction_inside(real, fake, fake_r, device=device, batch_size=batch_size)
    return precision, recall
