"""Datasets: image folders, zips (NVlabs layout with dataset.json labels) and the built-in `emoji`.

Public API (imported lazily, so `import gancli.data` loads neither torch nor NumPy):

    open_dataset(source, resolution=None, *, use_labels, xflip, max_size, allow_resize, cache_dir, cache,
                 skip_bad, cache_max_gb)
        -> ImageDataset      uint8 [N, 3, R, R] images read from a shared memory-mapped cache file when
                             they fit the cache limit, else streamed (decoded on demand) from the source
    batches(dataset, batch_size, seed, start_index=0, device='cpu', *, rank=0, world_size=1, workers=0)
        -> Batches           endless, seeded, resumable (position = samples consumed), shardable;
                             a streamed dataset is decoded by `workers` processes, batches ahead
    convert_dataset(source, dest, *, resolution, transform, resize_filter, labels, max_images,
                    progress, skip_bad) -> dict     any folder/zip/'emoji' -> NVlabs training zip
    find_images(path) -> list[str];  read_image(path) -> uint8 [H, W, 3]
    EMOJI_CREDIT: the Twemoji artwork credit (CC-BY 4.0, Twitter, Inc.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "open_dataset": "dataset",
    "ImageDataset": "dataset",
    "default_cache_dir": "dataset",
    "batches": "loader",
    "Batches": "loader",
    "IndexStream": "loader",
    "epoch_order": "loader",
    "convert_dataset": "convert",
    "TRANSFORMS": "convert",
    "RESIZE_FILTERS": "convert",
    "find_images": "images",
    "read_image": "images",
    "IMAGE_EXTENSIONS": "images",
    "EMOJI_CREDIT": "emoji",
}

__all__ = [
    "EMOJI_CREDIT",
    "IMAGE_EXTENSIONS",
    "RESIZE_FILTERS",
    "TRANSFORMS",
    "Batches",
    "ImageDataset",
    "IndexStream",
    "batches",
    "convert_dataset",
    "default_cache_dir",
    "epoch_order",
    "find_images",
    "open_dataset",
    "read_image",
]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:
    from gancli.data.convert import RESIZE_FILTERS, TRANSFORMS, convert_dataset
    from gancli.data.dataset import ImageDataset, default_cache_dir, open_dataset
    from gancli.data.emoji import EMOJI_CREDIT
    from gancli.data.images import IMAGE_EXTENSIONS, find_images, read_image
    from gancli.data.loader import Batches, IndexStream, batches, epoch_order


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gancli.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gancli.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
