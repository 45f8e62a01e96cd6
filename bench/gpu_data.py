"""Small synthetic training zips for the GPU check (bench/gpu_prepare.sh): they must travel in the 64 MiB.

    python bench/gpu_data.py --out .gpudata [--count256 2000] [--count32 5000]

Writes `.gpudata/paper256.zip` (256 px, unlabelled) and `.gpudata/cifar32.zip` (32 px, 10 classes from
class folders) through `gancli dataset`, i.e. the official dataset_tool.py layout that both gancli and
the official code read (PNG members, dataset.json labels). The images are flat shapes on a linear
gradient: PNG compresses them to a few KB at 256 px, where noise would take ~190 KB each. Speed does
not depend on the pixels; the FID values computed against them are meaningless anyway (stand-in detector).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def image(rng: np.random.RandomState, size: int) -> Image.Image:
    a, b = rng.randint(0, 256, 3), rng.randint(0, 256, 3)
    t = np.linspace(0, 1, size)[None, :, None] if rng.rand() < 0.5 else np.linspace(0, 1, size)[:, None, None]
    base = (a * (1 - t) + b * t).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(base, (size, size, 3)).copy())
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randint(-size // 4, size, 2)
        w, h = rng.randint(size // 8, size // 2, 2)
        color = tuple(int(c) for c in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
    return img


def folder(root: Path, count: int, size: int, classes: int, seed: int) -> None:
    rng = np.random.RandomState(seed)
    for i in range(count):
        sub = root / (f"class{i % classes}" if classes else "")
        sub.mkdir(parents=True, exist_ok=True)
        image(rng, size).save(sub / f"img{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".gpudata")
    parser.add_argument("--count256", type=int, default=2000)
    parser.add_argument("--count32", type=int, default=5000)
    args = parser.parse_args()
    from gancli.cli import main as gancli

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, count, size, classes, extra in (("paper256", args.count256, 256, 0, []),
                                              ("cifar32", args.count32, 32, 10, ["--labels", "dirs"])):
        dest = out / f"{name}.zip"
        if dest.exists():
            print(f"{dest}: exists, kept")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder(Path(tmp), count, size, classes, seed=size)
            code = gancli(["dataset", tmp, str(dest), "--resolution", str(size), *extra])
            if code:
                raise SystemExit(f"gancli dataset failed for {dest} (exit code {code})")
        print(f"{dest}: {count} images at {size} px, {dest.stat().st_size / 2**20:.1f} MiB")
    shutil.rmtree(out / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
