"""`gancli translate`: images in, images out, through a translation checkpoint (capability `image_in`).

The checkpoint carries the architecture and the direction it was trained for, so nothing from the
training command is repeated. Inputs are image files or folders (searched recursively); every input
must be RGB (or RGBA / palette, composited onto white) and exactly the model's size (data.resolution)
unless `resize` is asked for; anything else is one line naming the file and what is wrong. Outputs keep
the inputs' names (relative to a given folder) as PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gancli.errors import UserError

_COLOUR_MODES = ("RGB", "RGBA", "P", "RGBa")


def collect_inputs(specs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, output name relative to the output folder) for files and folders of images."""
    from gancli.data.images import IMAGE_EXTENSIONS, find_images

    out = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            for rel in find_images(str(path)):
                out.append((path / rel, Path(rel).with_suffix(".png")))
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise UserError(f"{spec}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
            out.append((path, Path(path.name).with_suffix(".png")))
        else:
            raise UserError(f"{spec}: no such image file or folder")
    names = [rel for _, rel in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"two inputs would both be written as {dup}; translate them into separate --outdir folders")
    return out


def read_input(path: Path, size: int | tuple[int, int], resize: bool) -> np.ndarray:
    """uint8 [3, H, W] of one input image (size: H = W, or (H, W)), or a UserError naming the file."""
    from PIL import Image

    from gancli.data.images import composite_rgb

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _COLOUR_MODES:
                bands = len(img.getbands())
                raise UserError(f"{path}: has {bands} channel{'s' if bands != 1 else ''} ({mode}); the model takes "
                                "RGB colour images (3 channels, or RGBA composited onto white)")
            rgb = composite_rgb(img)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: cannot read image ({str(e).strip() or type(e).__name__})") from None
    h, w = (size, size) if isinstance(size, int) else size
    if rgb.size != (w, h):
        if not resize:
            raise UserError(f"{path}: is {rgb.size[0]}x{rgb.size[1]}, the model takes {w}x{h} "
                            "(pass --resize to resize it)")
        rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def translate_files(loaded, inputs: list[tuple[Path, Path]], outdir: Path, *, side_by_side: bool = False,
                    resize: bool = False, batch: int = 8, progress: bool = False) -> int:
    """Translate `inputs` with the loaded translator into `outdir`; returns the number written."""
    import torch

    from gancli.render import save_png, to_uint8

    size = tuple(int(v) for v in loaded.recipe.data.shape)  # (height, width)
    images = [read_input(path, size, resize) for path, _ in inputs]  # every input is checked before any is written
    device = next(loaded.G.parameters()).device
    from gancli.families.base import render_steps

    starts = list(range(0, len(images), max(1, batch)))
    written = 0
    for i in render_steps(starts, progress and len(images) >= 8, len(images)):
        chunk = images[i:i + batch]
        x = torch.from_numpy(np.stack(chunk)).to(device).float().div(127.5).sub(1)
        y = to_uint8(loaded.family.translate(loaded.G, x))
        for k, out in enumerate(y):
            if side_by_side:
                out = np.concatenate([chunk[k].transpose(1, 2, 0), out], axis=1)
            dest = outdir / inputs[i + k][1]
            os.makedirs(dest.parent, exist_ok=True)
            save_png(out, dest)
            written += 1
    return written
