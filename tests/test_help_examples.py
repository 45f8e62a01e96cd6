"""Every example in every command's --help runs, as written, in a folder laid out as the examples assume.

The folder holds a tiny trained run (runs/quickstart-00000), `ckpt.safetensors` (its snapshot), a tiny
class-conditional BigGAN with 1000 classes (`biggan.safetensors`), the official 32 px test network as
`network-snapshot*.pkl`, small image folders and zips, and a HOME for the `~/...` paths. Only flags
that shorten the work are appended (fewer kimg, steps, frames or images; later flags win), listed per
example in EXTRA; an example that needs hardware or data this machine lacks runs as `--dry-run`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image

from gancli.cli import app

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PKL = REPO.parent / "shared" / "testdata" / "stylegan2-ada" / "sg2-uncond-32-nosrc.pkl"
TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2", "model.channel_base=128",
    "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null", "model.mbstd_group_size=2",
    "train.batch=4", "train.image_kimg=1000", "train.snapshot_kimg=1000", "train.grid_seeds=4",
]
TINY_SETS = [arg for item in TINY for arg in ("--set", item)]
SHORT_TRAINING = TINY_SETS + ["--kimg", "0.008"]

# Commands in the order a user meets them (later examples use what earlier ones wrote).
ORDER = ["dataset", "train", "convert", "info", "project", "sample", "mix", "interpolate", "noise", "truncate",
         "evaluate", "translate", "report", "recipes", "doctor"]
EXTRA = {
    "gancli train quickstart": SHORT_TRAINING,
    "gancli train recipes/stylegan2-ffhq256.yaml --data ~/ffhq256.zip --gpus 8": ["--dry-run"],  # 8 GPUs, FFHQ
    "gancli train quickstart --set train.batch=16 --set loss.r1_gamma=0.5 --kimg 100": SHORT_TRAINING,
    "gancli train --resume runs/quickstart-00000": ["--kimg", "0.016"],
    "gancli train quickstart --data faces32.zip --resume network-snapshot.pkl": ["--kimg", "0.004", "--set", "train.batch=4",
                                                                                 "--set", "train.image_kimg=1000"],
    "gancli train quickstart-ada --data my-emoji --init runs/quickstart-00000 --set train.freeze_d=4": SHORT_TRAINING,
    "gancli dataset emoji emoji32.zip --resolution 32": ["--max-images", "16"],
    "gancli project ckpt.safetensors face.png --steps 1000": ["--steps", "2"],
    "gancli project ckpt.safetensors a.png b.png --space w+ --video": ["--steps", "2"],
    "gancli interpolate ckpt.safetensors --seeds 1,5 --frames 40 --out walk.gif": ["--frames", "2"],
    "gancli interpolate ckpt.safetensors --seeds 1,5,9 --loop --kind slerp --space z --out walk.mp4": ["--frames", "2"],
    "gancli interpolate ckpt.safetensors --seeds 1,5 --upscale 8 --upscale-filter lanczos --out walk-big.gif": ["--frames", "2"],
    "gancli project ckpt.safetensors face.png --video --upscale 4 --outdir out/big": ["--steps", "2"],
    "gancli interpolate biggan.safetensors --seeds 3 --classes 207,281 --out dog-to-cat.gif": ["--frames", "2"],
    "gancli evaluate ckpt.safetensors --metrics fid,kid,pr --data ~/ffhq.zip": ["--num", "8", "--num-real", "8"],
}


def help_examples() -> dict[str, list[str]]:
    """command -> the example lines of its --help (the epilog's Examples section)."""
    group = typer.main.get_command(app)
    return {name: re.findall(r"\[cyan\](.*?)\[/cyan\]", cmd.epilog or "") for name, cmd in group.commands.items()}


def _images(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        image = np.full((size[1], size[0], 3), 255, np.uint8)
        y, x = rng.randint(0, min(size) // 2, 2)
        image[y: y + size[1] // 3, x: x + size[0] // 3] = rng.randint(0, 255, 3)
        Image.fromarray(image).save(folder / f"img{i:02d}.png")


def _zip_of(folder: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w") as z:
        for path in sorted(folder.glob("*.png")):
            z.write(path, path.name)


def _biggan_1000_classes(dest: Path) -> None:
    from gancli.families.resnet.nets import standing_statistics
    from gancli.models import build_networks
    from gancli.recipe import load_recipe, parse_override
    from gancli.train.checkpoint import save_checkpoint

    tiny = ["data.resolution=16", "model.g_ch=2", "model.d_ch=2", "model.z_dim=12", "model.g_ch_mult=null",
            "model.d_ch_mult=null", "model.shared_dim=4", "train.device=cpu"]
    recipe = load_recipe("biggan-cifar10", [parse_override(s) for s in tiny])
    torch.manual_seed(5)
    G, D = build_networks(recipe, c_dim=1000)
    standing_statistics(G, 4, 8, torch.Generator().manual_seed(1))
    meta = {"step": 0, "cur_nimg": 0, "c_dim": 1000, "img_channels": 3, "resolution": 16}
    run = dest.parent / "biggan-run"
    pair = save_checkpoint(run, 0, step=0, modules={"G_ema": G.state_dict(), "G": G.state_dict(), "D": D.state_dict()},
                           recipe=recipe.to_dict(), meta=meta, state={"step": 0})
    shutil.copy(pair.snapshot, dest)


def _other_families(root: Path) -> None:
    """Tiny runs of the families other help examples name: a VQ-VAE-2 prior (stage 1, then stage 2
    with --init) as vqvae2-prior-run/, and pix2pix and CycleGAN translators as pix2pix-run/ and cyclegan-run/, with their inputs."""
    from test_vqvae2 import TINY_MODEL

    from gancli.cli import main

    model = ", ".join(f"{k}: {v}" for k, v in TINY_MODEL.items())
    common = "data: {resolution: 16}\ntrain: {batch: 4, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 4, lr: 0.001}\n"
    (root / "vq1.yaml").write_text(f"name: vq1\nmodel: {{{model}, stage: 1}}\n{common}")
    (root / "vq2.yaml").write_text(f"name: vq2\nmodel: {{{model}, stage: 2}}\n{common}")
    _images(root / "vqdata", 8, (16, 16), 9)
    assert main(["train", str(root / "vq1.yaml"), "--data", str(root / "vqdata"), "--kimg", "0.008",
                 "--outdir", str(root / "vq1")]) == 0
    (stage1,) = (root / "vq1").iterdir()
    assert main(["train", str(root / "vq2.yaml"), "--data", str(root / "vqdata"), "--kimg", "0.008",
                 "--init", str(stage1), "--outdir", str(root / "vq2")]) == 0
    (stage2,) = (root / "vq2").iterdir()
    shutil.move(str(stage2), str(root / "vqvae2-prior-run"))
    shutil.move(str(stage1), str(root / "vqvae2-run"))
    tiny = {"pix2pix-emoji-edges": "model: {ngf: 4, ndf: 4}", "cyclegan-emoji-skintone": "model: {ngf: 4, ndf: 4, n_blocks: 1}"}
    for name, model_keys in tiny.items():
        recipe = root / f"{name}-tiny.yaml"
        recipe.write_text(f"base: {name}\nname: {name}\ndata: {{max_size: 4}}\n{model_keys}\n"
                          "train: {threads: 1, batch: 2, snapshot_kimg: 1000, image_kimg: 1000, grid_seeds: 2}\n")
        assert main(["train", str(recipe), "--kimg", "0.004", "--outdir", str(root / name)]) == 0
        (run,) = (root / name).iterdir()
        shutil.move(str(run), str(root / f"{name.split('-')[0]}-run"))
    _images(root / "edges", 2, (32, 32), 10)
    _images(root / "dark-imgs", 1, (32, 32), 11)
    shutil.move(str(root / "dark-imgs" / "img00.png"), str(root / "dark.png"))
    Image.open(root / "dark.png").convert("RGB").save(root / "photo.jpg")


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    _images(home / "photos", 6, (80, 60), 0)
    _images(home / "pets" / "cat", 3, (40, 40), 1)
    _images(home / "pets" / "dog", 3, (40, 40), 2)
    _images(home / "stl10" / "unlabeled", 3, (96, 96), 4)  # STL-10's 96 px images, converted to 48 px
    _images(home / "cars", 3, (120, 80), 5)  # wide subjects for center-crop-wide
    _images(home / "dogs" / "Images" / "n01-beagle", 2, (40, 30), 8)  # Stanford Dogs layout, VOC boxes
    for i in range(2):
        note = home / "dogs" / "Annotation" / "n01-beagle" / f"img{i:02d}"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text("<annotation><size><width>40</width><height>30</height><depth>3</depth></size><object>"
                        "<name>beagle</name><bndbox><xmin>5</xmin><ymin>4</ymin><xmax>30</xmax><ymax>26</ymax>"
                        "</bndbox></object></annotation>")
    _images(tmp_path / "sq16", 12, (16, 16), 3)
    _zip_of(tmp_path / "sq16", home / "ffhq.zip")
    _zip_of(tmp_path / "sq16", home / "ffhq256.zip")
    _images(tmp_path / "sq32", 8, (32, 32), 4)
    _zip_of(tmp_path / "sq32", tmp_path / "faces32.zip")
    _images(tmp_path / "my-emoji", 12, (16, 16), 5)
    _images(tmp_path / "real", 8, (16, 16), 6)
    _images(tmp_path / "fake", 8, (16, 16), 7)
    for name in ("face.png", "a.png", "b.png"):
        shutil.copy(tmp_path / "sq16" / f"img0{'fab'.index(name[0])}.png", tmp_path / name)
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    if OFFICIAL_PKL.is_file():
        for name in ("network-snapshot.pkl", "network-snapshot-025000.pkl"):
            shutil.copy(OFFICIAL_PKL, tmp_path / name)
    _biggan_1000_classes(tmp_path / "biggan.safetensors")
    _other_families(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_extra_names_a_real_example():
    examples = {line for lines in help_examples().values() for line in lines}
    assert set(EXTRA) - examples == set()
    assert set(help_examples()) == set(ORDER)


@pytest.mark.slow  # about 40 s on 2 cores: 6 tiny trainings, 2 projections, a small FID
def test_every_help_example_runs(cli, world):
    examples = help_examples()
    has_ffmpeg = importlib.util.find_spec("imageio_ffmpeg") is not None
    failures, ran = [], 0
    for command in ORDER:
        for line in examples[command]:
            if "network-snapshot" in line and not OFFICIAL_PKL.is_file():
                pytest.skip(f"the official test network {OFFICIAL_PKL} is missing (../shared/testdata)")
            args = [os.path.expanduser(a) if a.startswith("~") else a for a in shlex.split(line)[1:]]
            result = cli(*args, *EXTRA.get(line, []))
            ran += 1
            if command == "train" and line == "gancli train quickstart":
                # The examples that follow use this run's snapshot as ckpt.safetensors.
                snapshots = sorted((world / "runs" / "quickstart-00000").glob("snapshot-*.safetensors"))
                if snapshots:
                    shutil.copy(snapshots[-1], world / "ckpt.safetensors")
            if ".mp4" in line and not has_ffmpeg:  # the dependency is missing here: it must be said before any work
                if result.code != 2 or "imageio-ffmpeg" not in result.err:
                    failures.append(f"{line}: without imageio-ffmpeg expected one line naming it, got {result}")
                continue
            ok_codes = (0, 1) if command == "doctor" else (0,)  # doctor: 1 = it found something to fix here
            if result.code not in ok_codes or "Traceback" in result.err + result.out:
                failures.append(f"{line}: {result}")
    assert ran == sum(len(v) for v in examples.values())
    assert not failures, "\n".join(failures)
    assert (world / "out" / "face" / "projected_w.npz").is_file()
    assert (world / "mix.png").is_file() and (world / "mix-middle.png").is_file()
