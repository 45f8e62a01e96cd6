"""Training datasets: `open_dataset` and `ImageDataset`.

A dataset is small enough to hold in memory: every image is decoded once into one uint8 array
`images [N, 3, R, R]` (with a process pool when there are many files). Training data must already be
RGB, square and all one size (which sizes a model takes is its family's rule, checked with the
recipe); anything else is a UserError naming the
first offending image and pointing at the converter (`gancli dataset`), which fixes all of these.

Decoded arrays of the built-in `emoji` dataset and of zips are cached as `.npy` files under the cache
folder (`cache_dir`, else `$GANCLI_CACHE`, else `~/.cache/gancli`), in `datasets/`, keyed by a hash
of the source's content identity (zip: every member's name, CRC-32 and size; emoji: the package
version and every file's name and size) and the decoding settings. Cache files are written
atomically; a damaged or unreadable cache is ignored and rebuilt. Folders are not cached (their
identity would need a stat of every file and they are typically edited in place).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Sequence

import numpy as np

from gancli.data import emoji as _emoji
from gancli.data import labels as _labels
from gancli.data.images import (
    ImageProblem,
    ImageSource,
    check_any_size,
    check_resolution,
    close_zip_handles,
    decode_emoji_image,
    decode_training_image,
    open_source,
    parallel_map,
)
from gancli.errors import UserError

CACHE_FORMAT = 1  # bump when decoding changes, so old cache files are not reused
ZIP_CACHE_MAX_BYTES = 2 << 30  # zips decoding to more than this are not cached on disk


class ImageDataset:
    """Images held in memory as uint8 [N, 3, R, R] with optional one-hot class labels.

    `dataset[i]` -> (uint8 [3, R, R], float32 [c_dim]). With `xflip`, `len()` is 2N and indices
    N..2N-1 give the horizontally mirrored images (the same convention as NVlabs' datasets).
    """

    def __init__(
        self,
        images: np.ndarray,  # uint8 [N, 3, R, R]
        labels: np.ndarray | None = None,  # float32 one-hot [N, c_dim], or None for no labels
        *,
        name: str = "dataset",  # short name for logs (folder name, zip stem, 'emoji')
        source: str = "",  # what the user gave (path or 'emoji')
        image_names: Sequence[str] | None = None,  # relative path of each image
        label_names: Sequence[str] | None = None,  # class names, when known
        xflip: bool = False,  # add mirrored copies
        meta: dict | None = None,  # dataset.json's 'gancli' section, if any
    ):
        images = np.asarray(images)
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or images.shape[2] != images.shape[3]
            or images.dtype != np.uint8
        ):
            raise ValueError(f"images must be uint8 [N, 3, R, R], got {images.dtype} {list(images.shape)}")
        if len(images) == 0:
            raise ValueError("a dataset needs at least one image")
        if labels is None:
            labels = np.zeros((len(images), 0), dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2 or len(labels) != len(images):
            raise ValueError(
                f"labels must be float32 [N, c_dim] with N={len(images)}, got {list(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.name = name
        self.source = source
        self.image_names = list(image_names) if image_names is not None else None
        self.label_names = list(label_names) if label_names is not None else None
        self.xflip = bool(xflip)
        self.meta = meta or {}

    # Shape facts used by the trainer and the networks.
    @property
    def num_images(self) -> int:
        """Images without mirroring."""
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[2])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def c_dim(self) -> int:
        return int(self.labels.shape[1])

    @property
    def has_labels(self) -> bool:
        return self.c_dim > 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n}")
        base = index % self.num_images
        img = self.images[base]
        if index >= self.num_images:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img), self.labels[base].copy()

    def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised `__getitem__`: (uint8 [B, 3, R, R], float32 [B, c_dim]) for dataset indices."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)}")
        base = indices % self.num_images
        images = self.images[base]  # fancy indexing copies
        flip = indices >= self.num_images
        if flip.any():
            images[flip] = images[flip][..., ::-1]
        return images, self.labels[base]

    def describe(self) -> str:
        """One line for logs: name, count, size, labels."""
        labels = f"{self.c_dim} classes" if self.has_labels else "no labels"
        flip = f", x-flips ({len(self)} with mirrors)" if self.xflip else ""
        return (
            f"{self.name}: {self.num_images} images, {self.resolution}x{self.resolution} RGB, {labels}{flip}"
        )

    def __repr__(self) -> str:
        return f"ImageDataset({self.describe()})"


# ---------------------------------------------------------------------------------------------------


def default_cache_dir() -> str:
    return os.environ.get("GANCLI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gancli")


def _cache_file(cache_dir: str, name: str, resolution: int | None, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "dataset"
    res = f"{resolution}px" if resolution else "native"
    return os.path.join(cache_dir, "datasets", f"{safe}-{res}-{digest}.npy")


def _load_cache(path: str, count: int, resolution: int | None) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    ok = arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[0] == count and arr.shape[1] == 3
    ok = ok and arr.shape[2] == arr.shape[3] and (resolution is None or arr.shape[2] == resolution)
    return arr if ok else None


def _save_cache(path: str, arr: np.ndarray) -> None:
    """Write atomically (temp file + os.replace); a cache that cannot be written is simply skipped."""
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _decode_all(fn, names: list[str], first: np.ndarray | None = None) -> np.ndarray:
    """Decode `names` in order (in a pool when many) into one array; raise the first problem.

    `first`, when given, is the already decoded `names[0]`.
    """
    out = None
    if first is not None:
        out = np.empty((len(names),) + first.shape, dtype=np.uint8)
        out[0] = first
    start = 0 if first is None else 1
    with parallel_map(fn, names[start:]) as results:
        for i, r in enumerate(results, start):
            if isinstance(r, ImageProblem):
                raise UserError(r.message)
            if out is None:
                out = np.empty((len(names),) + r.shape, dtype=np.uint8)
            out[i] = r
    return out


def _subset(count: int, max_size: int | None) -> np.ndarray | None:
    """A fixed random subset (seed 0, kept in file order) when max_size < count, else None."""
    if max_size is None:
        return None
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise UserError(
            f"max_size {max_size!r} is not allowed: use a whole number >= 1 (or none for all images)"
        )
    if max_size >= count:
        return None
    return np.sort(np.random.RandomState(0).permutation(count)[:max_size])


def open_dataset(
    source: str,
    resolution: int | None = None,
    *,
    use_labels: bool = False,
    xflip: bool = False,
    max_size: int | None = None,
    allow_resize: bool = False,
    cache_dir: str | None = None,
    cache: bool = True,
    any_size: bool = False,
) -> ImageDataset:
    """Open a training dataset: 'emoji', a folder of images (recursive), or a zip (NVlabs layout).

    source:       'emoji', a folder (searched recursively for .png/.jpg/.jpeg/.webp/.bmp; hidden files
                  skipped) or a .zip with images anywhere inside and an optional root `dataset.json`
                  ({"labels": [[relative_path, class], ...] or null}).
    resolution:   required image size; None = the images' own size (emoji: 64). Any whole number >= 4.
    use_labels:   load class labels from dataset.json as one-hot rows (c_dim = max class + 1).
    xflip:        double the dataset with horizontally mirrored copies.
    max_size:     use a fixed random subset (seed 0, file order kept) of at most this many images.
    allow_resize: resize square images of another size to `resolution` (Lanczos) instead of failing.
    cache_dir:    where decoded arrays are cached (default $GANCLI_CACHE or ~/.cache/gancli).
    cache:        False to neither read nor write the cache.
    any_size:     kept for callers of old; any size is accepted either way (data.random_crop's stored size).
    """
    source = os.fspath(source)
    if resolution is not None:
        resolution = check_any_size(resolution) if any_size else check_resolution(resolution)
    cache_root = (cache_dir or default_cache_dir()) if cache else None
    if source in _emoji.SPLITS:  # 'emoji', or its split by base emoji: 'emoji-train', 'emoji-heldout'
        dataset = _open_emoji(resolution or _emoji.EMOJI_DEFAULT_RESOLUTION, use_labels, max_size, cache_root, source)
    else:
        dataset = _open_files(source, resolution, use_labels, max_size, allow_resize, cache_root)
    dataset.xflip = bool(xflip)
    return dataset


def _open_emoji(
    resolution: int, use_labels: bool, max_size: int | None, cache_root: str | None, source: str = "emoji"
) -> ImageDataset:
    if use_labels:
        raise UserError("the built-in dataset 'emoji' has no labels: train it without labels (unconditional)")
    folder = _emoji.emoji_dir()
    names = _emoji.emoji_files(folder)
    split = _emoji.split_indices(names, source)
    if split is not None:  # decode (and cache) all, keep the split
        full = _open_emoji(resolution, use_labels, None, cache_root)
        images, names = full.images[split], [names[i] for i in split]
        subset = _subset(len(names), max_size)
        if subset is not None:
            images, names = images[subset], [names[i] for i in subset]
        return ImageDataset(images, None, name=source, source=source, image_names=names,
                            meta={"credit": _emoji.EMOJI_CREDIT})
    subset = _subset(len(names), max_size)
    images = None
    cache_path = None
    if cache_root:
        key = {
            "format": CACHE_FORMAT,
            "kind": "emoji",
            "identity": _emoji.emoji_identity(folder, names),
            "resolution": resolution,
        }
        cache_path = _cache_file(cache_root, "emoji", resolution, key)
        images = _load_cache(cache_path, len(names), resolution)
    if images is None:
        from functools import partial

        todo = names if subset is None else [names[i] for i in subset]
        decoded = _decode_all(partial(decode_emoji_image, folder, resolution), todo)
        if subset is None:
            images = decoded
            if cache_path:
                _save_cache(cache_path, images)
        else:
            images, subset = decoded, None
            names = todo
    if subset is not None:
        images, names = images[subset], [names[i] for i in subset]
    return ImageDataset(
        images, None, name="emoji", source="emoji", image_names=names, meta={"credit": _emoji.EMOJI_CREDIT}
    )


def _open_files(
    source: str,
    resolution: int | None,
    use_labels: bool,
    max_size: int | None,
    allow_resize: bool,
    cache_root: str | None,
) -> ImageDataset:
    src = open_source(source)
    json_where = src.describe("dataset.json")
    raw = src.read_optional("dataset.json")
    meta = _labels.read_dataset_json(raw, f"'{json_where}'") if raw is not None else {}
    names = list(src.names)

    classes = None
    c_dim = 0
    label_names = None
    if use_labels:
        if raw is None:
            raise UserError(
                f"dataset '{source}' has no labels (no dataset.json at its root): train without labels, or convert with {_labels_hint()}"
            )
        mapping = _labels.labels_from_entries(meta.get("labels"), f"'{json_where}'")
        if mapping is None:
            raise UserError(
                f"dataset '{source}' has no labels ('{json_where}' has \"labels\": null): train without labels, or convert with {_labels_hint()}"
            )
        classes = _labels.match_labels(mapping, names, f"'{json_where}'", source)
        gmeta = meta.get("gancli") if isinstance(meta.get("gancli"), dict) else {}
        declared = gmeta.get("num_classes")
        c_dim = int(classes.max()) + 1
        if isinstance(declared, int) and not isinstance(declared, bool) and declared > c_dim:
            c_dim = declared
        cn = gmeta.get("class_names")
        if isinstance(cn, list) and len(cn) == c_dim and all(isinstance(c, str) for c in cn):
            label_names = cn

    subset = _subset(len(names), max_size)
    stem = os.path.basename(os.path.normpath(src.path))
    name = stem[:-4] if src.is_zip and stem.lower().endswith(".zip") else stem

    try:
        images = _decode_source(src, names, resolution, allow_resize, subset, cache_root, name)
    finally:
        close_zip_handles()
    if subset is not None:
        names = [names[i] for i in subset]
        if classes is not None:
            classes = classes[subset]
    labels = _labels.one_hot(classes, c_dim) if classes is not None else None
    gmeta = meta.get("gancli") if isinstance(meta.get("gancli"), dict) else None
    return ImageDataset(
        images, labels, name=name, source=source, image_names=names, label_names=label_names, meta=gmeta
    )


def _labels_hint() -> str:
    return "`gancli dataset SRC DEST.zip --resolution N --labels dirs` (or a labels .json/.csv)"


def _decode_source(
    src: ImageSource,
    names: list[str],
    resolution: int | None,
    allow_resize: bool,
    subset: np.ndarray | None,
    cache_root: str | None,
    name: str,
) -> np.ndarray:
    from functools import partial

    # The first image fixes the size when no resolution is asked for (and is checked like the rest).
    first = decode_training_image(src.spec, resolution, allow_resize, names[0])
    if isinstance(first, ImageProblem):
        raise UserError(first.message)
    expect = resolution or first.shape[1]

    cache_path = None
    if cache_root and src.is_zip and len(names) * first.nbytes <= ZIP_CACHE_MAX_BYTES:
        key = {
            "format": CACHE_FORMAT,
            "kind": "zip",
            "members": src.zip_identity(),
            "resolution": resolution,
            "allow_resize": bool(allow_resize and resolution is not None),
        }
        cache_path = _cache_file(cache_root, name, resolution, key)
        images = _load_cache(cache_path, len(names), expect)
        if images is not None:
            return images if subset is None else images[subset]

    todo = names if subset is None else [names[i] for i in subset]
    reference = names[0] if resolution is None else None
    fn = partial(decode_training_image, src.spec, expect, allow_resize, reference=reference)
    images = _decode_all(fn, todo, first if todo[0] == names[0] else None)
    if cache_path and subset is None:
        _save_cache(cache_path, images)
    return images
