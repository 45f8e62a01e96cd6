"""Frechet Inception Distance (Heusel et al. 2017): the Frechet distance between two Gaussians.

    FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

with the matrix square root from `scipy.linalg.sqrtm` (its real part), as the reference TTUR code and
NVlabs' metrics compute it. Covariances are the unbiased sample covariances (`np.cov`, ddof=1), as in
TTUR / pytorch-fid (NVlabs divides by N; at 50k images the two differ by 2e-5 relative).

When both covariances are the very same matrix (e.g. an image set against itself), the square root
of S S is S itself for a symmetric positive semi-definite S, so the trace term is exactly 0 and
sqrtm (slow on 2048x2048 and inaccurate for the rank-deficient matrices of small sets) is skipped.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["gaussian_stats", "frechet_distance", "fid_from_features"]


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], unbiased covariance [D, D]) of features [N, D] in float64; N >= 2."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {list(feats.shape)}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64 math)."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    if np.array_equal(sigma1, sigma2):
        tr_covmean = float(np.trace(sigma1))  # sqrtm(S S) = S for symmetric PSD S
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "matrix is singular" notes for small sets
            covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
            if not np.all(np.isfinite(covmean)):  # as pytorch-fid: nudge a singular product
                offset = np.eye(d) * 1e-6
                covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        tr_covmean = float(np.trace(covmean).real)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets [N, D] and [M, D]."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
