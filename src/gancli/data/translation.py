"""Data for image-to-image translation: aligned pairs (pix2pix) and unpaired domains (CycleGAN, CUT).

Sources (`data.source`):

- pairs: a folder or zip of aligned `A|B` images side by side (the pix2pix layout, e.g. `facades/`):
  its `train/` (or `test/`, `val/`) subfolder when there is one, else the images themselves; or the
  built-in `emoji-edges` (edge map -> colour emoji).
- unpaired: a folder with `trainA/` and `trainB/` (and `testA/`, `testB/`) (the CycleGAN layout); or
  the built-in `emoji-skintone` (light-tone U+1F3FB variants -> dark-tone U+1F3FF variants).

Every image is decoded once, resized to `load_size` (bicubic, as the reference code) into uint8
`[N, 3, L, L]` (or `[N, 3, LH, LW]` for non-square training: recipe `data.width`, the crop keeping its
aspect): a memory-mapped file of the shared dataset cache (gancli.data.cache: keyed by the source's
content identity, atomic, within the cache limit), so that every rank and run maps one copy; in memory
only when it exceeds the cache limit. The stream (`TranslationStream`) crops `crop` x `crop` (or
crop_h x crop_w) at a random offset and flips at random ("load 286, random crop 256, flips": pix2pix
Sec. 6.2, CycleGAN Sec. 7.1). Like
`gancli.data.loader`, the order is a function of (seed, position) only: the index at stream position
p comes from the seeded epoch permutations, the crop offset and flip of sample p from
`SeedSequence([seed, stream, p])`, so a resumed run reads exactly what it would have read.

The emoji tasks hold out whole base emoji: every emoji whose name without skin-tone modifiers falls
in the held-out part (about 10%, by a seeded permutation of the base names) is in the test split
only. In `emoji-skintone` the training domains also use disjoint base emoji (the light tones of one
half, the dark tones of the other), so no training pair is ever seen, and the test split has both tones
of each held-out base: the ground truth of each translation. Twemoji artwork: CC-BY 4.0, Twitter, Inc.
"""

from __future__ import annotations

import math
import os
from functools import partial

import numpy as np

from gancli.data import emoji as _emoji
from gancli.data.dataset import source_identity
from gancli.data.images import (
    ImageProblem,
    _open_loaded,
    composite_rgb,
    decode_emoji_image,
    open_source,
    parallel_map,
    read_source_bytes,
    to_chw,
)
from gancli.data.loader import IndexStream
from gancli.errors import UserError

BUILTIN_PAIRS = ("emoji-edges",)
BUILTIN_UNPAIRED = ("emoji-skintone",)
TONES = ("1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff")  # the Fitzpatrick modifiers in Twemoji file names
LIGHT, DARK = "1f3fb", "1f3ff"
HELDOUT_FRACTION = 0.1


class TranslationData:
    """Images of domains A and B held as uint8 [N, 3, L, L], or [N, 3, LH, LW] for non-square training
    (`pairs`: row i of A goes with row i of B)."""

    def __init__(self, A: np.ndarray, B: np.ndarray, *, paired: bool, name: str, source: str,
                 names_A: list[str], names_B: list[str], meta: dict | None = None):
        self.A, self.B, self.paired = A, B, paired
        self.name, self.source, self.names_A, self.names_B = name, source, names_A, names_B
        self.meta = meta or {}
        self.labels = np.zeros((len(A), 0), dtype=np.float32)

    # What the Trainer reads of any dataset.
    c_dim = 0
    num_channels = 3

    @property
    def num_images(self) -> int:
        """Images per epoch: the pairs, or the larger domain (as the reference code counts an epoch)."""
        return len(self.A) if self.paired else max(len(self.A), len(self.B))

    @property
    def load_size(self) -> int:
        """The stored height (the side of square data)."""
        return int(self.A.shape[2])

    @property
    def load_shape(self) -> tuple[int, int]:
        """(height, width) of the stored images."""
        return int(self.A.shape[2]), int(self.A.shape[3])

    def describe(self) -> str:
        h, w = self.load_shape
        size = f"{h}px" if h == w else f"{h}x{w}px"
        if self.paired:
            return f"{self.name}: {len(self.A)} pairs at {size}"
        return f"{self.name}: {len(self.A)} A and {len(self.B)} B images at {size}"


def _jitter(seed: int, stream: int, position: int, room: tuple[int, int], flip: bool) -> tuple[int, int, bool]:
    """(y, x, flip) of sample `position`: offsets in [0, room_y] and [0, room_x] (drawn one after the other:
    for square data the same numbers as one draw of two), then the flip."""
    rs = np.random.RandomState(np.random.SeedSequence([int(seed), stream, int(position)]).generate_state(1)[0])
    y, x = int(rs.randint(0, room[0] + 1)), int(rs.randint(0, room[1] + 1))
    return y, x, bool(flip and rs.rand() < 0.5)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _crop(image: np.ndarray, y: int, x: int, size: tuple[int, int], flip: bool) -> np.ndarray:
    out = image[:, y:y + size[0], x:x + size[1]]
    return out[:, :, ::-1] if flip else out


class TranslationStream:
    """Endless seeded (A, B) batches of float32 [n, 3, crop_h, crop_w] in [-1, 1] (`crop`: a side, or
    (height, width)); `position` counts samples of the global stream (all ranks), as `gancli.data.Batches`."""

    def __init__(self, data: TranslationData, crop: int | tuple[int, int], flip: bool, seed: int = 0,
                 start_index: int = 0, device="cpu", *, rank: int = 0, world_size: int = 1):
        self.data, self.crop, self.flip, self.seed = data, _hw(crop), bool(flip), int(seed)
        self.position, self.device, self.rank, self.world_size = int(start_index), device, rank, world_size
        self.order_A = IndexStream(len(data.A), self.seed)
        self.order_B = None if data.paired else IndexStream(len(data.B), self.seed + 1)

    def take(self, count: int):
        import torch

        if count % self.world_size:
            raise UserError(f"batch size {count} is not allowed with {self.world_size} processes: use a multiple of it")
        positions = np.arange(self.position, self.position + count)[self.rank::self.world_size]
        ia = self.order_A.take(self.position, count)[self.rank::self.world_size]
        ib = ia if self.order_B is None else self.order_B.take(self.position, count)[self.rank::self.world_size]
        room = (self.data.load_shape[0] - self.crop[0], self.data.load_shape[1] - self.crop[1])
        A, B = [], []
        for p, a, b in zip(positions, ia, ib):
            ya, xa, fa = _jitter(self.seed, 1, p, room, self.flip)
            yb, xb, fb = (ya, xa, fa) if self.data.paired else _jitter(self.seed, 2, p, room, self.flip)
            A.append(_crop(self.data.A[a], ya, xa, self.crop, fa))
            B.append(_crop(self.data.B[b], yb, xb, self.crop, fb))
        self.position += count

        def tensor(images):
            x = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
            return x.to(self.device).to(torch.float32).div_(127.5).sub_(1.0)

        return tensor(A), tensor(B)


def center_crop(images: np.ndarray, crop: int | tuple[int, int]) -> np.ndarray:
    """The centre `crop` x `crop` (or (height, width)) of uint8 [N, 3, H, W] images (the grid's and the
    tests' view)."""
    ch, cw = _hw(crop)
    oy, ox = (images.shape[2] - ch) // 2, (images.shape[3] - cw) // 2
    return images[:, :, oy:oy + ch, ox:ox + cw]


# --------------------------------------------------------------------------------------------------
# Opening sources


def open_translation_data(source: str, load_size: int | tuple[int, int], *, paired: bool, split: str = "train",
                          direction: str = "AtoB", max_size: int | None = None) -> TranslationData:
    """Domains A and B of `source` at `load_size` (a side, or (height, width) for non-square training;
    see the module docstring). `split`: 'train' or 'test'; `direction` 'BtoA' swaps the domains;
    `max_size` keeps the first N of each domain."""
    source = os.fspath(source)
    check_source_kind(source, paired)
    if source in BUILTIN_PAIRS + BUILTIN_UNPAIRED:
        load_size = _hw(load_size)[0]  # the built-in emoji are square (recipes with data.width are refused)
    else:
        load_size = _hw(load_size)
    if source == "emoji-edges":
        data = _emoji_edges(load_size, split, max_size)
    elif source == "emoji-skintone":
        data = _emoji_skintone(load_size, split, max_size)
    elif paired:
        data = _aligned(source, load_size, split)
    else:
        data = _unpaired(source, load_size, split)
    if direction == "BtoA":
        data.A, data.B, data.names_A, data.names_B = data.B, data.A, data.names_B, data.names_A
    if max_size is not None:
        data.A, data.names_A = data.A[:max_size], data.names_A[:max_size]
        data.B, data.names_B = data.B[:max_size], data.names_B[:max_size]
        data.labels = data.labels[:len(data.A)]
    return data


def check_source_kind(source: str, paired: bool, where: str = "") -> None:
    """A built-in task of the other kind (pairs vs unpaired) is refused in one line."""
    if paired and source in BUILTIN_UNPAIRED or not paired and source in BUILTIN_PAIRS:
        want = "aligned pairs" if paired else "unpaired domains"
        raise UserError(f"{where}data.source {source!r}: this family trains on {want}; use "
                        + ", ".join(BUILTIN_PAIRS if paired else BUILTIN_UNPAIRED) + " or a folder of your own")


def _resize_chw(img, size: tuple[int, int]) -> np.ndarray:
    """RGB PIL image -> uint8 [3, H, W] at size (H, W), bicubic (the reference code's resize)."""
    from PIL import Image

    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    return to_chw(img)


def _decode_aligned(spec, size: tuple[int, int], name: str):
    """One A|B image -> (A, B) at `size` (H, W), or an ImageProblem. Each half must have the aspect of
    `size` (square halves, twice as wide as high, for square training)."""
    img = _open_loaded(read_source_bytes(spec, name), spec.describe(name))
    if isinstance(img, ImageProblem):
        return img
    img = composite_rgb(img)
    w, h = img.size
    if w * size[0] != 2 * h * size[1]:
        g = math.gcd(size[0], size[1])
        shape = ("twice as wide as high" if size[0] == size[1] else
                 f"each half {size[1] // g}:{size[0] // g} (width:height, as data.width:data.resolution)")
        return ImageProblem(f"image '{spec.describe(name)}' is {w}x{h}: an aligned pair is A and B side by side, "
                            + shape)
    half = w // 2
    return np.stack([_resize_chw(img.crop((0, 0, half, h)), size), _resize_chw(img.crop((half, 0, w, h)), size)])


def _decode_one(spec, size: tuple[int, int], name: str):
    img = _open_loaded(read_source_bytes(spec, name), spec.describe(name))
    return img if isinstance(img, ImageProblem) else _resize_chw(composite_rgb(img), size)


def _decode_many(fn, names: list[str], key: dict | None = None, name: str = "translation",
                 size: int | None = None) -> np.ndarray:
    """`fn` of every name in order, as one uint8 array: with a content `key`, the memory-mapped file of
    the dataset cache (built here if missing and within the cache limit), else in memory."""
    if key is not None and names:
        from gancli.data.cache import build_cached, cache_limit_bytes, default_cache_dir, open_cached
        from gancli.data.dataset import _cache_file, _decode_into

        first = fn(names[0])
        if isinstance(first, ImageProblem):
            raise UserError(first.message)
        limit = cache_limit_bytes()
        if len(names) * first.nbytes <= limit:
            path = _cache_file(default_cache_dir(), name, size, {"format": 1, **key, "count": len(names)})
            arr = open_cached(path, len(names), first.shape)
            if arr is None:
                arr = build_cached(path, len(names), first.shape, partial(_decode_into, fn, names, first), limit)
            if arr is not None:
                return arr
    out = []
    with parallel_map(fn, names) as results:
        for r in results:
            if isinstance(r, ImageProblem):
                raise UserError(r.message)
            out.append(r)
    return np.stack(out)


def _split_folder(source: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        if os.path.isdir(os.path.join(os.path.expanduser(source), name)):
            return os.path.join(os.path.expanduser(source), name)
    return None


def _aligned(source: str, size: tuple[int, int], split: str) -> TranslationData:
    if not os.path.exists(os.path.expanduser(source)):
        raise UserError(f"data.source {source}: no such folder or zip of aligned A|B images")
    sub = _split_folder(source, ("train",) if split == "train" else ("test", "val"))
    src = open_source(sub or source)
    key = {"kind": "aligned-pairs", "size": size, **source_identity(src)}
    pairs = _decode_many(partial(_decode_aligned, src.spec, size), list(src.names), key,
                         f"{os.path.basename(os.path.normpath(source))}-pairs", size)
    names = list(src.names)
    return TranslationData(pairs[:, 0], pairs[:, 1], paired=True, name=os.path.basename(os.path.normpath(source)),
                           source=source, names_A=names, names_B=names)


def _unpaired(source: str, size: tuple[int, int], split: str) -> TranslationData:
    domains = []
    for d in ("A", "B"):
        folder = os.path.join(os.path.expanduser(source), f"{split}{d}")
        if not os.path.isdir(folder):
            raise UserError(f"data.source {source}: has no {split}{d}/ folder (unpaired data is {split}A/ and {split}B/, "
                            "the CycleGAN layout)")
        src = open_source(folder)
        key = {"kind": "domain", "size": size, **source_identity(src)}
        domains.append((_decode_many(partial(_decode_one, src.spec, size), list(src.names), key,
                                     f"{os.path.basename(os.path.normpath(source))}-{split}{d}", size), list(src.names)))
    (A, na), (B, nb) = domains
    return TranslationData(A, B, paired=False, name=os.path.basename(os.path.normpath(source)), source=source,
                           names_A=na, names_B=nb)


# --------------------------------------------------------------------------------------------------
# The built-in emoji tasks (Twemoji, CC-BY 4.0 by Twitter, Inc.)


def base_name(name: str) -> str:
    """An emoji file name without its skin-tone modifiers: the 'base emoji' the splits group by."""
    parts = [p for p in name[:-4].split("-") if p not in TONES]
    return "-".join(parts)


def heldout_bases(bases: list[str]) -> set[str]:
    """The held-out base emoji: a seeded (0) 10% of the sorted distinct bases."""
    distinct = sorted(set(bases))
    k = max(1, int(round(len(distinct) * HELDOUT_FRACTION)))
    return {distinct[i] for i in np.random.RandomState(0).permutation(len(distinct))[:k]}


def edge_map(image: np.ndarray) -> np.ndarray:
    """Black edges on white (uint8 [3, H, W]) of a uint8 [3, H, W] image: the Sobel gradient magnitude of
    its luma (replicate padding), thresholded at 0.25 of the largest possible magnitude. Deterministic."""
    luma = (image.astype(np.float64) * np.array([0.299, 0.587, 0.114])[:, None, None]).sum(0) / 255.0
    p = np.pad(luma, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    edges = np.hypot(gx, gy) > 0.25 * 4 * np.sqrt(2)
    return np.repeat(np.where(edges, 0, 255).astype(np.uint8)[None], 3, axis=0)


def _emoji_images(size: int, names: list[str]) -> np.ndarray:
    folder = _emoji.emoji_dir()
    key = {"kind": "emoji-translation", "size": size, "identity": _emoji.emoji_identity(folder, names)}
    return _decode_many(partial(decode_emoji_image, folder, size), names, key, "emoji-task", size)


def _emoji_edges(size: int, split: str, max_size: int | None = None) -> TranslationData:
    names = _emoji.emoji_files()
    held = heldout_bases([base_name(n) for n in names])
    keep = [n for n in names if (base_name(n) in held) == (split == "test")][:max_size]
    B = _emoji_images(size, keep)
    A = np.stack([edge_map(b) for b in B])
    return TranslationData(A, B, paired=True, name="emoji-edges", source="emoji-edges", names_A=keep, names_B=keep,
                           meta={"credit": _emoji.EMOJI_CREDIT})


def skintone_pairs() -> list[tuple[str, str]]:
    """(light, dark) file names of every emoji in a single tone that exists in both tones, sorted.

    Of the 488 files with U+1F3FB, 152 are couples of two people of different tones (e.g. light and
    dark holding hands); they belong to neither domain. The 336 others have a dark counterpart."""
    names = set(_emoji.emoji_files())
    pure = [n for n in sorted(names) if LIGHT in n and not any(t in n for t in TONES if t != LIGHT)]
    return [(n, n.replace(LIGHT, DARK)) for n in pure if n.replace(LIGHT, DARK) in names]


def skintone_split(split: str) -> tuple[list[str], list[str]]:
    """File names of domain A (light) and B (dark) of `emoji-skintone`'s split: 'test' has both tones of
    each held-out base (row i of A and B are counterparts); 'train' the light tones of the even-ranked
    remaining bases and the dark tones of the odd-ranked ones (disjoint bases, no pair seen)."""
    pairs = skintone_pairs()
    held = heldout_bases([base_name(a) for a, _ in pairs])
    if split == "test":
        chosen = [p for p in pairs if base_name(p[0]) in held]
        return [a for a, _ in chosen], [b for _, b in chosen]
    train = [p for p in pairs if base_name(p[0]) not in held]
    return [a for a, _ in train[0::2]], [b for _, b in train[1::2]]


def _emoji_skintone(size: int, split: str, max_size: int | None = None) -> TranslationData:
    na, nb = skintone_split(split)
    na, nb = na[:max_size], nb[:max_size]
    return TranslationData(_emoji_images(size, na), _emoji_images(size, nb), paired=split == "test",
                           name="emoji-skintone", source="emoji-skintone", names_A=na, names_B=nb,
                           meta={"credit": _emoji.EMOJI_CREDIT})
