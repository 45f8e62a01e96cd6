"""Pixels out: float images to uint8, image grids, PNG and GIF/MP4 writing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from gancli.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW float in [-1, 1] -> NHWC uint8 with the official rounding: clamp(x * 127.5 + 128, 0, 255)."""
    import torch

    x = (images.detach().float().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.cpu().numpy()


def grid_shape(count: int, spec: str | None = None) -> tuple[int, int]:
    """Rows and columns for `count` images: from a 'ROWSxCOLS' spec, or as square as possible."""
    if spec:
        try:
            rows, cols = (int(v) for v in spec.lower().split("x"))
        except ValueError:
            raise UserError(f"--grid {spec}: expected ROWSxCOLS, e.g. 4x8") from None
        if rows < 1 or cols < 1:
            raise UserError(f"--grid {spec}: rows and columns must be positive")
        if rows * cols < count:
            raise UserError(f"--grid {spec}: {rows}x{cols} = {rows * cols} cells cannot hold {count} images")
        return rows, cols
    cols = max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / cols), cols


MAX_GRID_PIXELS = 16384 * 16384  # one grid image; more could not be written or viewed


def check_grid_size(rows: int, cols: int, height: int, width: int | None = None, what: str = "grid") -> None:
    """Refuse, before any image is rendered, a grid whose image could never be made."""
    pixels = rows * cols * height * (width or height)
    if pixels > MAX_GRID_PIXELS:
        raise UserError(f"{what}: {rows}x{cols} images of {width or height}x{height} pixels make a "
                        f"{pixels / 1e6:,.0f}-megapixel image; at most {MAX_GRID_PIXELS / 1e6:,.0f} megapixels "
                        "(16384x16384) fit in one grid")


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 0, fill: int = 255) -> np.ndarray:
    """NHWC uint8 images -> one HWC uint8 grid, filled row by row (empty cells get `fill`)."""
    import numpy as np

    n, h, w, c = images.shape
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), fill, dtype=np.uint8)
    for i in range(min(n, rows * cols)):
        r, q = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = images[i]
    return grid


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write an HWC uint8 image atomically (RGB, or L for one channel)."""
    import io

    from PIL import Image

    from gancli.fileio import atomic_write_bytes

    array = image[:, :, 0] if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def check_upscale(factor: int, filter_name: str) -> None:
    if not 1 <= factor <= 16:
        raise UserError(f"--upscale {factor}: must be between 1 and 16")
    if filter_name not in ("nearest", "lanczos"):
        raise UserError(f"--upscale-filter {filter_name}: must be nearest or lanczos")


def upscale_frames(frames: list[np.ndarray], factor: int, filter_name: str = "nearest") -> list[np.ndarray]:
    """Frames (HWC uint8) scaled up by an integer factor with nearest-neighbour (sharp pixels) or Lanczos."""
    import numpy as np
    from PIL import Image

    check_upscale(factor, filter_name)
    if factor == 1:
        return list(frames)
    if filter_name == "nearest":
        return [np.repeat(np.repeat(f, factor, axis=0), factor, axis=1) for f in frames]
    out = []
    for f in frames:
        image = Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f)
        scaled = np.asarray(image.resize((f.shape[1] * factor, f.shape[0] * factor), Image.Resampling.LANCZOS))
        out.append(scaled[:, :, None] if scaled.ndim == 2 else scaled)
    return out


def check_animation_writer(path: str | Path) -> None:
    """Fail now, before any rendering, when `path`'s format cannot be written here (MP4 without imageio-ffmpeg)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError(f"{path}: writing MP4 needs imageio's ffmpeg plugin: pip install imageio-ffmpeg (or write a .gif)") from None
    elif suffix != ".gif":
        raise UserError(f"{path}: unsupported animation format {suffix or '(none)'}; use .gif or .mp4")


def save_animation(frames: list[np.ndarray], path: str | Path, fps: int = 24) -> None:
    """Frames (HWC uint8) to a looping GIF, or to MP4 when imageio's ffmpeg plugin is installed."""
    import io

    import imageio.v3 as iio

    from gancli.fileio import atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        buffer = io.BytesIO()
        iio.imwrite(buffer, frames, extension=".gif", duration=1000 / fps, loop=0)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".mp4":
        check_animation_writer(path)
        tmp = path.with_name(f".{path.name}.tmp.mp4")
        try:
            iio.imwrite(tmp, frames, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        raise UserError(f"{path}: unsupported animation format {suffix or '(none)'}; use .gif or .mp4")
