"""Reference statistics of an image set (mean, covariance, optionally the features), cached on disk.

The real images' statistics are the expensive, reusable half of FID/KID/PR. `real_stats` computes them
from a dataset (an ImageDataset from `gancli.data.open_dataset`, read in chunks so that a streamed set
never sits in memory whole, or any object with `.images` uint8 [N, 3, H, W]) and keeps
them as one `.npz` per key in the cache folder (`cache_dir`, else `$GANCLI_CACHE/metrics`, else
`~/.cache/gancli/metrics`).

The key is a SHA-256 over everything that changes the numbers: the images used (an ImageDataset's
`content_key`: its source's content identity, e.g. a zip's member names, CRC-32s and sizes, with the
decoding settings; other objects: the image bytes, hashed with their shape), the count, mirroring, the detector's SHA-1, kind and feature size, the resize method,
and this module's format version. A cache file holds the key and a SHA-256 of its arrays; a file that
does not load, holds another key, fails the digest or has the wrong shapes is ignored and recomputed
(never trusted). Files are written atomically (`gancli.fileio`), so a crash leaves no half file. An
unwritable cache folder only costs the reuse.

Which images: the first `num` images of the dataset (all when `num` is None); with `mirror` their
horizontal mirror images follow, so the set has 2 * num items (NVlabs' xflip order).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gancli.errors import UserError

if TYPE_CHECKING:
    from gancli.metrics.detectors import Detector

__all__ = ["ReferenceStats", "default_cache_dir", "dataset_hash", "stats_key", "real_stats", "CACHE_FORMAT"]

CACHE_FORMAT = 1  # bump when what is stored or how it is computed changes
COVARIANCE = "unbiased (ddof=1)"


@dataclass
class ReferenceStats:
    mu: np.ndarray  # float64 [D]
    sigma: np.ndarray  # float64 [D, D]
    features: np.ndarray | None  # float64 [n, D] when asked for (KID, PR), else None
    count: int  # n: images the statistics describe (mirrors included)
    key: str  # the cache key (hex)
    fields: dict  # what the key was made of
    path: Path | None  # the cache file (None when caching is off or impossible)
    status: str  # 'hit', 'miss', 'rebuilt' (a bad cache file was replaced), 'off', 'unwritable'
    extra: dict = field(default_factory=dict)


def default_cache_dir() -> Path:
    root = os.environ.get("GANCLI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gancli")
    return Path(root) / "metrics"


def _images_of(dataset) -> np.ndarray:
    images = getattr(dataset, "images", None)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise TypeError(f"dataset must have .images as uint8 [N, 3, H, W], got {type(images).__name__}")
    return images


class _ImageSet:
    """The images of a dataset as `real_stats` reads them: an ImageDataset (its chunked reads and its
    source's content key: nothing held in memory, nothing decoded to make the key), or any object
    with `.images` uint8 [N, 3, H, W] (hashed by its pixels)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.chunked = callable(getattr(dataset, "iter_chunks", None)) and callable(getattr(dataset, "content_key", None))
        if self.chunked:
            self.total, self.shape = int(dataset.num_images), tuple(dataset.image_shape)
        else:
            images = _images_of(dataset)
            self.total, self.shape = len(images), tuple(images.shape[1:])

    def identity(self, num: int) -> str:
        if self.chunked:
            return self.dataset.content_key(num)
        return dataset_hash(_images_of(self.dataset)[:num])

    def batches(self, num: int, mirror: bool, batch_size: int):
        if self.chunked:
            return self.dataset.iter_chunks(batch_size, num, mirror)
        return _item_batches(_images_of(self.dataset)[:num], mirror, batch_size)


def dataset_hash(images: np.ndarray) -> str:
    """SHA-256 of a uint8 image array's shape and bytes."""
    h = hashlib.sha256(json.dumps({"shape": list(images.shape), "dtype": str(images.dtype)}).encode())
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    step = max(1, (64 << 20) // max(1, flat.shape[1]))  # 64 MiB at a time
    for i in range(0, len(flat), step):
        h.update(memoryview(np.ascontiguousarray(flat[i:i + step])).cast("B"))
    return h.hexdigest()


def stats_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{list(a.shape)};".encode())
        h.update(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
    return h.hexdigest()


def _read(path: Path, key: str, count: int, dim: int, need_features: bool) -> dict | None:
    """The cached arrays, or None for anything missing, damaged, foreign or insufficient."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception:  # BadZipFile, CRC errors, truncated files, OSError, ValueError ...
        return None
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except Exception:
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
        return None
    if meta.get("digest") != _arrays_digest(arrays):
        return None
    mu, sigma, feats = arrays.get("mu"), arrays.get("sigma"), arrays.get("features")
    if mu is None or sigma is None or mu.shape != (dim,) or sigma.shape != (dim, dim):
        return None
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        return None
    if feats is not None and feats.shape != (count, dim):
        return None
    if need_features and feats is None:
        return None
    return {"mu": mu.astype(np.float64), "sigma": sigma.astype(np.float64),
            "features": None if feats is None else feats.astype(np.float64)}


def _write(path: Path, key: str, fields: dict, mu, sigma, feats) -> bool:
    from gancli.fileio import atomic_write

    arrays = {"mu": mu, "sigma": sigma}
    if feats is not None:
        # Detector outputs are float32, so storing them as float32 loses nothing.
        arrays["features"] = feats.astype(np.float32)
    meta = {"format": CACHE_FORMAT, "key": key, "fields": fields, "digest": _arrays_digest(arrays)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        return True
    except OSError:
        return False


def _item_batches(images: np.ndarray, mirror: bool, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]
    if mirror:
        for i in range(0, len(images), batch_size):
            yield np.ascontiguousarray(images[i:i + batch_size, :, :, ::-1])


def real_stats(
    dataset,
    detector: Detector,
    num: int | None = None,
    mirror: bool = False,
    *,
    keep_features: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    progress: bool = False,
    what: str = "reference",
) -> ReferenceStats:
    """Mean, covariance (and features when `keep_features`) of a dataset's images, via the cache.

    dataset:   an ImageDataset (gancli.data.open_dataset(...), read in chunks, never whole), or any
               object with `.images` uint8 [N, 3, H, W].
    detector:  from `load_inception`.
    num:       use the first `num` images (None: all). More than the dataset holds is a UserError.
    mirror:    add the horizontal mirror of each image (doubles the count).
    """
    from gancli.metrics.detectors import RESIZE_METHOD, extract
    from gancli.metrics.fid import gaussian_stats

    images = _ImageSet(dataset)
    source = str(getattr(dataset, "source", "") or "dataset")
    total = images.total
    if num is not None:
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise UserError(f"number of {what} images {num!r} is not allowed: use a whole number >= 1 (or all images)")
        if num > total:
            raise UserError(f"{what} images '{source}' holds {total} images, fewer than the {num} asked for: "
                            f"ask for at most {total} (or all)")
    used = total if num is None else int(num)
    count = used * (2 if mirror else 1)
    if count < 2:
        raise UserError(f"{what} images '{source}' give {count} image(s): statistics need at least 2")
    fields = {
        "format": CACHE_FORMAT,
        "images_sha256": images.identity(used),
        "image_shape": list(images.shape),
        "num_images": used,
        "mirror": bool(mirror),
        "count": count,
        "detector_sha1": detector.sha1,
        "detector_kind": detector.kind,
        "feature_dim": detector.feature_dim,
        "resize": RESIZE_METHOD,
        "covariance": COVARIANCE,
    }
    key = stats_key(fields)
    path = None
    status = "off"
    if use_cache:
        root = Path(os.path.expanduser(os.fspath(cache_dir))) if cache_dir is not None else default_cache_dir()
        name = os.path.basename(os.path.normpath(source)) or "dataset"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "dataset"
        path = root / f"{safe}-{images.shape[-1]}px-{count}-{key}.npz"
        if path.exists():
            got = _read(path, key, count, detector.feature_dim, keep_features)
            if got is not None:
                return ReferenceStats(got["mu"], got["sigma"], got["features"] if keep_features else None,
                                      count, key, fields, path, "hit")
            status = "rebuilt"
        else:
            status = "miss"
    feats, _ = extract(detector, images.batches(used, mirror, batch_size), total=count, progress=progress,
                       description=f"{what} features")
    mu, sigma = gaussian_stats(feats)
    if path is not None and not _write(path, key, fields, mu, sigma, feats if keep_features else None):
        status, path = "unwritable", None
    return ReferenceStats(mu, sigma, feats if keep_features else None, count, key, fields, path, status)


def describe(stats: ReferenceStats) -> dict[str, Any]:
    """JSON-ready summary for protocols."""
    return {"count": stats.count, "key": stats.key, "cache": stats.status,
            "cache_file": str(stats.path) if stats.path else None, "images_sha256": stats.fields["images_sha256"]}
