"""Training datasets: `open_dataset` and `ImageDataset`.

Nothing requires a dataset to fit in RAM. Opening one reads its index only (a zip's central
directory, a folder's listing, `dataset.json`) and decodes its first image, which fixes and checks the
image size. The images are then read in one of two ways (`ImageDataset.storage`):

- **cached**: when the decoded set (uint8 [N, 3, R, R]) fits the cache limit, it is decoded once into a
  memory-mapped `.npy` file under the cache folder (`cache_dir`, else `$GANCLI_CACHE`, else
  `~/.cache/gancli`), in `datasets/`, shared by every rank and every run (gancli.data.cache: atomic,
  one builder at a time, size limit with least-recently-used eviction). Every image is checked while
  the file is built, so a bad image stops the opening with one line, as before.
- **streamed**: when it does not fit (or caching is off), images are decoded on demand from the source,
  batch by batch, in worker processes (`gancli.data.loader`, recipe key `data.workers`). A bad image met
  mid-run is a UserError naming the file and the zip, or with `skip_bad` it is replaced by the next
  good image of the dataset (base index i -> i+1, i+2, ... mod N, the mirror flag kept) and reported
  once as a `warning:` line; the rule depends only on the bad index, so a resumed run skips it alike.

Cache files are keyed by a hash of the source's content identity and the decoding settings: zip:
every member's name, CRC-32 and size; folder: every file's name, size and modification time; emoji:
the package version and every file's name and size. A damaged or unreadable cache is ignored and
rebuilt. Training data must already be RGB, square and all one size (which sizes a model takes is its
family's rule, checked with the recipe); anything else is a UserError naming the first offending image
and pointing at the converter (`gancli dataset`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from functools import partial
from typing import Callable, Iterator, Sequence

import numpy as np

from gancli.data import emoji as _emoji
from gancli.data import labels as _labels
from gancli.data.cache import build_cached, cache_limit_bytes, default_cache_dir, open_cached
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

__all__ = ["ImageDataset", "ArrayImages", "SourceImages", "open_dataset", "default_cache_dir"]

CACHE_FORMAT = 1  # bump when decoding changes, so old cache files are not reused
SKIP_HINT = "or set data.skip_bad: true to skip bad images"


# ---------------------------------------------------------------------------------------------------
# Where the pixels come from: an array (in memory or a memory-mapped cache file) or the source itself.
# Both read base indices (0..count-1) and return (uint8 [B, 3, R, R] copy, base indices actually read,
# messages of skipped bad images).


class ArrayImages:
    """Images in a uint8 [N, 3, R, R] array: in memory, or a memory-mapped cache file (`path`)."""

    streamed = False

    def __init__(
        self,
        array: np.ndarray,  # uint8 [N, 3, R, R] (np.ndarray or the np.memmap of a cache file)
        rows: np.ndarray | None = None,  # the rows of `array` that are the dataset (a subset), or None: all
        *,
        path: str | None = None,  # the cache file it is mapped from, if any
        key: dict | None = None,  # the content identity of the source (None: hash the pixels)
    ):
        self.array = array
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.path = path
        self.key = key

    @property
    def count(self) -> int:
        return len(self.array) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[1:])

    def read(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rows = base if self.rows is None else self.rows[base]
        return np.asarray(self.array[rows]), base, []  # fancy indexing copies

    def whole(self) -> np.ndarray:
        return self.array if self.rows is None else np.asarray(self.array[self.rows])


class SourceImages:
    """Images decoded on demand from their source (zip, folder, emoji files), one batch at a time."""

    streamed = True

    def __init__(
        self,
        decode: Callable[[str], np.ndarray | ImageProblem],  # name -> uint8 [3, R, R] or ImageProblem (module-level, for workers)
        names: Sequence[str],  # the dataset's images, in dataset order
        shape: tuple[int, int, int],  # (3, R, R) of every image (checked by `decode`)
        *,
        key: dict | None,  # the content identity of the source and the decoding settings
        skip_bad: bool = False,  # replace a bad image by the next good one instead of stopping
    ):
        self.decode = decode
        self.names = list(names)
        self._shape = tuple(int(s) for s in shape)
        self.key = key
        self.skip_bad = bool(skip_bad)
        self.path = None

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    def _decode(self, i: int) -> np.ndarray | ImageProblem:
        got = self.decode(self.names[i])
        if not isinstance(got, ImageProblem) and got.shape != self._shape:  # e.g. emoji of another size
            return ImageProblem(f"image '{self.names[i]}' decodes to {list(got.shape)}, not {list(self._shape)}")
        return got

    def read(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        out = np.empty((len(base), *self._shape), dtype=np.uint8)
        used = np.array(base, dtype=np.int64, copy=True)
        skipped: list[str] = []
        for j, b in enumerate(used):
            got = self._decode(int(b))
            if isinstance(got, ImageProblem):
                if not self.skip_bad:
                    raise UserError(f"{got.message} ({SKIP_HINT})")
                problem = got.message
                got, used[j] = self._replacement(int(b), problem)
                skipped.append(f"{problem} (skipped: data.skip_bad is true; the next good image of the dataset, "
                               f"'{self.names[used[j]]}', is read in its place)")
            out[j] = got
        return out, used, skipped

    def _replacement(self, bad: int, problem: str) -> tuple[np.ndarray, int]:
        """The image that replaces bad base index `bad`: the next good one (bad+1, bad+2, ... mod N)."""
        for step in range(1, self.count):
            k = (bad + step) % self.count
            got = self._decode(k)
            if not isinstance(got, ImageProblem):
                return got, k
        raise UserError(f"{problem}; and no other image of the dataset can be read either (data.skip_bad found none to use)")

    def whole(self) -> np.ndarray:
        return self.read(np.arange(self.count))[0]


# ---------------------------------------------------------------------------------------------------


class ImageDataset:
    """Images as uint8 [N, 3, R, R] (held, memory-mapped or streamed) with optional one-hot labels.

    `dataset[i]` -> (uint8 [3, R, R], float32 [c_dim]). With `xflip`, `len()` is 2N and indices
    N..2N-1 give the horizontally mirrored images (the same convention as NVlabs' datasets).
    Read batches with `get_batch(indices)` / `read(indices)` and the whole set in order with
    `iter_chunks(batch)`; `images` is the whole set as one array (the mapped cache file itself when
    cached; for a streamed set it decodes everything into memory, so only tests and small sets use it).
    """

    def __init__(
        self,
        images,  # uint8 [N, 3, R, R] array, or an ArrayImages / SourceImages store
        labels: np.ndarray | None = None,  # float32 one-hot [N, c_dim], or None for no labels
        *,
        name: str = "dataset",  # short name for logs (folder name, zip stem, 'emoji')
        source: str = "",  # what the user gave (path or 'emoji')
        image_names: Sequence[str] | None = None,  # relative path of each image
        label_names: Sequence[str] | None = None,  # class names, when known
        xflip: bool = False,  # add mirrored copies
        meta: dict | None = None,  # dataset.json's 'gancli' section, if any
    ):
        if isinstance(images, (ArrayImages, SourceImages)):
            store = images
        else:
            images = np.asarray(images)
            if (
                images.ndim != 4
                or images.shape[1] != 3
                or images.shape[2] != images.shape[3]
                or images.dtype != np.uint8
            ):
                raise ValueError(f"images must be uint8 [N, 3, R, R], got {images.dtype} {list(images.shape)}")
            store = ArrayImages(images)
        if store.count == 0:
            raise ValueError("a dataset needs at least one image")
        if labels is None:
            labels = np.zeros((store.count, 0), dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2 or len(labels) != store.count:
            raise ValueError(
                f"labels must be float32 [N, c_dim] with N={store.count}, got {list(labels.shape)}"
            )
        self.store = store
        self.labels = labels
        self.name = name
        self.source = source
        self.image_names = list(image_names) if image_names is not None else None
        self.label_names = list(label_names) if label_names is not None else None
        self.xflip = bool(xflip)
        self.meta = meta or {}
        self.crop: int | None = None  # read the centre crop of this size (evaluation of random_crop data)
        self._warned: set[str] = set()

    # Shape facts used by the trainer and the networks.
    @property
    def num_images(self) -> int:
        """Images without mirroring."""
        return self.store.count

    @property
    def resolution(self) -> int:
        return int(self.crop or self.store.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.store.shape[0])

    @property
    def c_dim(self) -> int:
        return int(self.labels.shape[1])

    @property
    def has_labels(self) -> bool:
        return self.c_dim > 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.num_channels, self.resolution, self.resolution)

    @property
    def streamed(self) -> bool:
        """True when images are decoded from the source on demand (worker processes help)."""
        return self.store.streamed

    @property
    def storage(self) -> str:
        """Where the pixels come from, for logs."""
        if self.store.streamed:
            return "streamed from the source"
        return f"memory-mapped cache {self.store.path}" if self.store.path else "in memory"

    @property
    def decoded_bytes(self) -> int:
        """The size of the whole set decoded (uint8), mirrors not counted."""
        return self.num_images * int(np.prod(self.store.shape))

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    # Reading.

    def read_batch(self, indices) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(uint8 [B, 3, R, R], base indices read, skipped-image messages) for dataset indices; what
        the loader's worker processes run. Most callers want `get_batch`."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)}")
        base = indices % self.num_images
        images, used, skipped = self.store.read(base)
        flip = indices >= self.num_images
        if flip.any():
            images[flip] = images[flip][..., ::-1]
        if self.crop is not None and self.crop != images.shape[-1]:
            o = (images.shape[-1] - self.crop) // 2
            images = np.ascontiguousarray(images[:, :, o:o + self.crop, o:o + self.crop])
        return images, used, skipped

    def report_skipped(self, messages: Sequence[str]) -> None:
        """Each skipped bad image once per process, as a `warning:` line on stderr."""
        for m in messages:
            if m not in self._warned:
                self._warned.add(m)
                print(f"warning: {m}", file=sys.stderr, flush=True)

    def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [B, 3, R, R], float32 [B, c_dim]) for dataset indices (mirrors included)."""
        images, used, skipped = self.read_batch(indices)
        self.report_skipped(skipped)
        return images, self.labels[used]

    def read(self, indices) -> np.ndarray:
        """uint8 [B, 3, R, R] for dataset indices."""
        return self.get_batch(indices)[0]

    def iter_chunks(self, batch: int = 64, count: int | None = None, mirror: bool = False,
                    workers: int | None = None) -> Iterator[np.ndarray]:
        """The first `count` images (None: all) in order, `batch` at a time, then (with `mirror`) their
        mirror images in the same order: the whole set without holding it in memory. A streamed set is
        decoded by `workers` processes (None: one per CPU core), a few chunks ahead."""
        n = self.num_images if count is None else min(int(count), self.num_images)
        chunks = [np.arange(i, min(i + batch, n)) for i in range(0, n, batch)]
        flips = [False] * len(chunks) + ([True] * len(chunks) if mirror else [])
        chunks = chunks * (2 if mirror else 1)
        from gancli.data.loader import DecodePool, resolve_workers

        workers = resolve_workers(workers) if self.streamed and len(chunks) > 1 else 0
        if workers <= 1:
            for idx, flip in zip(chunks, flips):
                images = self.read(idx)
                yield np.ascontiguousarray(images[..., ::-1]) if flip else images
            return
        pool = DecodePool(self, workers)
        try:
            ahead = 2  # chunks decoded ahead of the one being used
            jobs = [pool.submit(c) for c in chunks[:ahead]]
            for k, flip in enumerate(flips):
                if k + ahead < len(chunks):
                    jobs.append(pool.submit(chunks[k + ahead]))
                images, _, skipped = pool.result(jobs[k])
                self.report_skipped(skipped)
                yield np.ascontiguousarray(images[..., ::-1]) if flip else images
        finally:
            pool.close()

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n}")
        images, labels = self.get_batch([index])
        return images[0], labels[0].copy()

    @property
    def images(self) -> np.ndarray:
        """The whole set as uint8 [N, 3, R, R]: the mapped cache file (no copy) when cached and uncropped,
        else decoded into memory (a streamed set: only for small sets and tests)."""
        if self.crop is None:
            return self.store.whole()
        return np.concatenate(list(self.iter_chunks(256)))

    def content_key(self, count: int | None = None) -> str:
        """A hash of what the first `count` images (None: all) are, without decoding them when the
        source's content identity is known (zip: names, CRC-32s and sizes; folder: names, sizes and
        modification times; emoji: package files); else of the pixels."""
        n = self.num_images if count is None else min(int(count), self.num_images)
        key = getattr(self.store, "key", None)
        h = hashlib.sha256()
        if key is not None:  # (a subset's key holds a hash of its rows)
            h.update(json.dumps({"key": key, "count": n, "crop": self.crop,
                                 "shape": list(self.store.shape)}, sort_keys=True).encode())
            return h.hexdigest()
        h.update(json.dumps({"shape": [n, *self.image_shape], "crop": self.crop}).encode())
        for chunk in self.iter_chunks(256, n):
            h.update(memoryview(np.ascontiguousarray(chunk)).cast("B"))
        return h.hexdigest()

    def center_cropped(self, size: int) -> "ImageDataset":
        """The same dataset read as centre `size` x `size` crops (a view: nothing is copied)."""
        view = copy.copy(self)
        view.crop = int(size)
        return view

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


def _cache_file(cache_dir: str, name: str, resolution: int | None, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "dataset"
    res = f"{resolution}px" if resolution else "native"
    return os.path.join(cache_dir, "datasets", f"{safe}-{res}-{digest}.npy")


def _decode_into(decode, names: list[str], first: np.ndarray | None, out: np.ndarray) -> None:
    """Decode `names` in order (in a pool when many) into `out` (a memory-mapped file), chunk by chunk;
    raise the first problem. `first`, when given, is the already decoded `names[0]`."""
    start = 0
    if first is not None:
        out[0] = first
        start = 1
    with parallel_map(decode, names[start:]) as results:
        for i, r in enumerate(results, start):
            if isinstance(r, ImageProblem):
                raise UserError(r.message)
            if r.shape != out.shape[1:]:
                raise UserError(f"image '{names[i]}' decodes to {list(r.shape)}, not {list(out.shape[1:])}")
            out[i] = r


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


def _cached(names: list[str], rows: np.ndarray | None, key: dict, name: str, resolution: int | None,
            cache_root: str | None) -> ArrayImages | None:
    """The images `names[rows]` from an existing cache file (the whole set's, or the subset's), or None.
    Decodes nothing: a second opening of a cached dataset reads the index and maps one file."""
    if cache_root is None:
        return None
    path = _cache_file(cache_root, name, resolution, key)
    arr = open_cached(path, len(names), resolution=resolution)
    if arr is not None:  # (a subset's key names its rows, as when it streams or has its own file)
        return ArrayImages(arr, rows, path=path, key=key if rows is None else _subset_key(key, rows))
    if rows is not None:
        key = _subset_key(key, rows)
        path = _cache_file(cache_root, name, resolution, key)
        arr = open_cached(path, len(rows), resolution=resolution)
        if arr is not None:
            return ArrayImages(arr, path=path, key=key)
    return None


def _subset_key(key: dict, rows: np.ndarray) -> dict:
    return {**key, "rows": hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()}


def _store(decode, names: list[str], rows: np.ndarray | None, key: dict, first: np.ndarray, name: str,
           resolution: int | None, cache_root: str | None, limit: int, skip_bad: bool):
    """The images `names[rows]` (rows None: all), when no cache file exists yet: a new cache file when
    the decoded set fits the limit (built here, checking every image), else decoded from the source
    on demand. `first` is the decoded `names[0]`."""
    selected = names if rows is None else [names[i] for i in rows]
    if rows is not None:
        key = _subset_key(key, rows)
    if cache_root is not None and 0 < len(selected) * first.nbytes <= limit:
        path = _cache_file(cache_root, name, resolution, key)
        given = first if selected[0] == names[0] else None
        arr = None
        try:
            arr = build_cached(path, len(selected), first.shape, partial(_decode_into, decode, selected, given), limit)
        except UserError as e:
            if not skip_bad:
                raise
            print(f"warning: {e} (data.skip_bad: bad images are skipped while streaming, so this dataset streams "
                  "from its source instead of a cache file)", file=sys.stderr, flush=True)
        if arr is not None:
            return ArrayImages(arr, path=path, key=key)
    return SourceImages(decode, selected, first.shape, key=key, skip_bad=skip_bad)


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
    skip_bad: bool = False,
    cache_max_gb: float | None = None,
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
    cache_dir:    where decoded images are cached (default $GANCLI_CACHE or ~/.cache/gancli).
    cache:        False to neither read nor write the cache (the images then stream from the source).
    any_size:     kept for callers of old; any size is accepted either way (data.random_crop's stored size).
    skip_bad:     a bad image met while streaming is replaced by the next good one (one warning line).
    cache_max_gb: size limit of the datasets cache in GiB (None: $GANCLI_CACHE_MAX_GB, else 8; 0: none);
                  a dataset that decodes to more streams from its source.
    """
    source = os.fspath(source)
    if resolution is not None:
        resolution = check_any_size(resolution) if any_size else check_resolution(resolution)
    limit = cache_limit_bytes(cache_max_gb)
    cache_root = (cache_dir or default_cache_dir()) if cache else None
    if source in _emoji.SPLITS:  # 'emoji', or its split by base emoji: 'emoji-train', 'emoji-heldout'
        dataset = _open_emoji(resolution or _emoji.EMOJI_DEFAULT_RESOLUTION, use_labels, max_size, cache_root,
                              source, limit, skip_bad)
    else:
        dataset = _open_files(source, resolution, use_labels, max_size, allow_resize, cache_root, limit, skip_bad)
    dataset.xflip = bool(xflip)
    return dataset


def _open_emoji(resolution: int, use_labels: bool, max_size: int | None, cache_root: str | None,
                source: str = "emoji", limit: int = 0, skip_bad: bool = False) -> ImageDataset:
    if use_labels:
        raise UserError("the built-in dataset 'emoji' has no labels: train it without labels (unconditional)")
    folder = _emoji.emoji_dir()
    names = _emoji.emoji_files(folder)
    split = _emoji.split_indices(names, source)
    rows = None if split is None else np.asarray(split, dtype=np.int64)
    subset = _subset(len(names) if rows is None else len(rows), max_size)
    if subset is not None:
        rows = subset if rows is None else rows[subset]
    key = _emoji_key(folder, names, resolution)
    store = _cached(names, rows, key, "emoji", resolution, cache_root)
    if store is None:
        decode = partial(decode_emoji_image, folder, resolution)
        first = decode(names[0])
        if isinstance(first, ImageProblem):
            raise UserError(first.message)
        store = _store(decode, names, rows, key, first, "emoji", resolution, cache_root, limit, skip_bad)
    kept = names if rows is None else [names[i] for i in rows]
    return ImageDataset(store, None, name=source, source=source, image_names=kept,
                        meta={"credit": _emoji.EMOJI_CREDIT})


def _emoji_key(folder: str, names: list[str], resolution: int) -> dict:
    return {"format": CACHE_FORMAT, "kind": "emoji", "identity": _emoji.emoji_identity(folder, names),
            "resolution": resolution}


def source_identity(src: ImageSource) -> dict:
    """The content identity of a zip (every member's name, CRC-32 and size, from the central directory:
    nothing is decompressed) or a folder (a hash of every file's name, size and modification time)."""
    if src.is_zip:
        return {"members": src.zip_identity()}
    return {"files": _folder_identity(src)}


def _files_key(src: ImageSource, resolution: int | None, allow_resize: bool) -> dict:
    return {
        "format": CACHE_FORMAT,
        "kind": src.kind,
        "resolution": resolution,
        "allow_resize": bool(allow_resize and resolution is not None),
        **source_identity(src),
    }


def _find_cached(source: str, resolution: int | None, allow_resize: bool, max_size: int | None,
                 cache_root: str) -> tuple[ArrayImages | None, int]:
    """(the dataset's existing cache file or None, its number of images), from the source's index only."""
    if source in _emoji.SPLITS:
        folder = _emoji.emoji_dir()
        names = _emoji.emoji_files(folder)
        resolution = resolution or _emoji.EMOJI_DEFAULT_RESOLUTION
        split = _emoji.split_indices(names, source)
        rows = None if split is None else np.asarray(split, dtype=np.int64)
        subset = _subset(len(names) if rows is None else len(rows), max_size)
        if subset is not None:
            rows = subset if rows is None else rows[subset]
        key, name = _emoji_key(folder, names, resolution), "emoji"
    else:
        src = open_source(source)
        names = list(src.names)
        rows = _subset(len(names), max_size)
        stem = os.path.basename(os.path.normpath(src.path))
        name = stem[:-4] if src.is_zip and stem.lower().endswith(".zip") else stem
        key = _files_key(src, resolution, allow_resize)
    return _cached(names, rows, key, name, resolution, cache_root), len(names) if rows is None else len(rows)


def cache_status(source: str, resolution: int | None = None, *, allow_resize: bool = False,
                 max_size: int | None = None, cache_dir: str | None = None) -> str:
    """One line for `gancli info`: the dataset's cache file and its size, or why there is none.
    Reads the source's index only (decodes nothing)."""
    try:
        store, _ = _find_cached(source, resolution, allow_resize, max_size, cache_dir or default_cache_dir())
    except UserError as e:
        return f"unknown ({e})"
    if store is None:
        return ("not cached: the first training or evaluation builds it if the decoded images fit the cache limit; "
                "else they stream from the source")
    return f"{store.path} ({os.path.getsize(store.path) / 2**20:,.1f} MiB, memory-mapped)"


def storage_plan(source: str, resolution: int, *, allow_resize: bool = False, max_size: int | None = None,
                 cache_max_gb: float | None = None, cache_dir: str | None = None) -> str:
    """One line for the dry run: how many images, their decoded size and where training will read them
    (the shared cache file, or streamed from the source). Reads the source's index only."""
    try:
        store, count = _find_cached(source, resolution, allow_resize, max_size, cache_dir or default_cache_dir())
        limit = cache_limit_bytes(cache_max_gb)
    except UserError as e:
        return f"cannot be opened here ({e})"
    decoded = count * 3 * resolution * resolution
    head = f"{count} images, {decoded / 2**30:.2f} GiB decoded: "
    if store is not None:
        return head + f"read from the memory-mapped cache file {store.path}"
    if decoded <= limit:
        return head + f"decoded once into a memory-mapped cache file shared by all processes (cache limit {limit / 2**30:g} GiB)"
    return head + (f"streamed from the source by data.workers processes (over the {limit / 2**30:g} GiB cache limit: "
                   "raise data.cache_max_gb to cache it)")


def _folder_identity(src: ImageSource) -> str:
    """A hash of every image file's name, size and modification time (one stat per file)."""
    h = hashlib.sha256()
    for n in src.names:
        st = os.stat(os.path.join(src.path, *n.split("/")))
        h.update(f"{n}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _open_files(
    source: str,
    resolution: int | None,
    use_labels: bool,
    max_size: int | None,
    allow_resize: bool,
    cache_root: str | None,
    limit: int = 0,
    skip_bad: bool = False,
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

    key = _files_key(src, resolution, allow_resize)
    try:
        store = _cached(names, subset, key, name, resolution, cache_root)
        if store is None:
            # The first image fixes the size when no resolution is asked for (and is checked like the rest).
            first = decode_training_image(src.spec, resolution, allow_resize, names[0])
            if isinstance(first, ImageProblem):
                raise UserError(first.message)
            expect = resolution or first.shape[1]
            reference = names[0] if resolution is None else None
            decode = partial(decode_training_image, src.spec, expect, allow_resize, reference=reference)
            store = _store(decode, names, subset, key, first, name, resolution, cache_root, limit, skip_bad)
    finally:
        close_zip_handles()
    if subset is not None:
        names = [names[i] for i in subset]
        if classes is not None:
            classes = classes[subset]
    labels = _labels.one_hot(classes, c_dim) if classes is not None else None
    gmeta = meta.get("gancli") if isinstance(meta.get("gancli"), dict) else None
    return ImageDataset(
        store, labels, name=name, source=source, image_names=names, label_names=label_names, meta=gmeta
    )


def _labels_hint() -> str:
    return "`gancli dataset SRC DEST.zip --resolution N --labels dirs` (or a labels .json/.csv)"
