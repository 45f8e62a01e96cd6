"""The latent-space commands' library: sample, style mixing, interpolation, truncation sweeps.

Everything here uses the generator API only (`G(z, c)`; `mapping`/`synthesis` for style-based
generators). The bytes of the image for a seed never depend on the other seeds or on their order:
each seed's latent comes from its own RandomState, with `noise_mode='random'` its noise comes from a
generator seeded by the seed itself, and every image goes through the networks on its own (batch 1),
because matrix products and convolutions of a batch round differently from those of a single image,
which moves pixels that sit on a rounding edge by one level.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from gancli.errors import UserError
from gancli.latent import z_from_seeds

if TYPE_CHECKING:
    from gancli.models import LoadedGenerator

# StyleGAN paper, Sec. 3.1: coarse = resolutions 4x4-8x8, middle = 16x16-32x32, fine = 64x64 and up,
# as W+ layer indices of the StyleGAN2 synthesis network (two layers per resolution).
STYLE_PRESETS = {"coarse": (0, 4, "4x4-8x8"), "middle": (4, 8, "16x16-32x32"), "fine": (8, None, "64x64 and up")}


def class_vector(loaded: LoadedGenerator, class_idx: int | None, n: int, device) -> torch.Tensor:
    c_dim = loaded.G.c_dim
    c = torch.zeros([n, c_dim], device=device)
    if c_dim == 0:
        if class_idx is not None:
            raise UserError(f"--class {class_idx}: {loaded.path.name} is unconditional (it has no classes)")
        return c
    if class_idx is None:
        raise UserError(f"{loaded.path.name} is class-conditional: choose a class with --class 0..{c_dim - 1}")
    if not 0 <= class_idx < c_dim:
        raise UserError(f"--class {class_idx}: must be in 0..{c_dim - 1} for {loaded.path.name}")
    c[:, class_idx] = 1
    return c


def require_style(loaded: LoadedGenerator, command: str) -> None:
    """Per-layer styles (a mapping network and W): mix, noise, projected latents, walks in W."""
    loaded.require(command, "w")


def check_noise_mode(mode: str) -> str:
    if mode not in ("const", "random", "none"):
        raise UserError(f"--noise-mode {mode}: must be const, random or none")
    return mode


MAX_PSI_COUNT = 1000  # columns of a truncation sweep; more could never be shown in one image


def check_finite(value: float, option: str = "--trunc") -> float:
    """NaN or inf psi would render black images: refuse it in one line."""
    if not math.isfinite(value):
        raise UserError(f"{option} {value}: must be a finite number")
    return value


def check_trunc(loaded: LoadedGenerator, psi: float | None, cutoff: int | None) -> None:
    """The family's own limits on --trunc and --trunc-cutoff (psi in W, or a resampling threshold)."""
    if psi is not None:
        check_finite(psi)
    loaded.family.check_trunc(loaded.G, psi, cutoff)


def _one_by_one(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """fn applied to each row of the tensors separately, results concatenated (see module docstring)."""
    return torch.cat([fn(*(t[i: i + 1] for t in tensors)) for i in range(tensors[0].shape[0])])


_progress = {"enabled": False}


def show_progress(enabled: bool) -> None:
    """Show progress (rate, ETA) on stderr for renders of many images: a bar on a terminal, plain lines otherwise (the CLI turns it on)."""
    _progress["enabled"] = enabled


def _steps(n: int, what: str = "rendering"):
    if not _progress["enabled"] or n < 16:
        yield from range(n)
        return
    from gancli.progress import image_progress

    progress, task = image_progress(n, what, transient=True)
    with progress:
        for i in range(n):
            yield i
            progress.update(task, advance=1)


@torch.no_grad()
def synthesize_ws(loaded: LoadedGenerator, ws: torch.Tensor, seeds: list[int] | None, noise_mode: str) -> torch.Tensor:
    """Images for W latents [N, num_ws, w_dim]; with noise_mode 'random', noise seeded per seed (or index)."""
    G = loaded.G
    out = []
    for i in _steps(ws.shape[0]):
        if noise_mode == "random":
            torch.manual_seed(seeds[i] if seeds is not None else i)
        out.append(G.synthesis(ws[i: i + 1], noise_mode=noise_mode))
    return torch.cat(out)


@torch.no_grad()
def seed_ws(loaded: LoadedGenerator, seeds: list[int], psi: float, cutoff: int | None, c: torch.Tensor) -> torch.Tensor:
    check_finite(psi)
    z = z_from_seeds(seeds, loaded.G.z_dim, c.device)
    return _one_by_one(lambda zi, ci: loaded.G.mapping(zi, ci, truncation_psi=psi, truncation_cutoff=cutoff), z, c)


@torch.no_grad()
def sample(loaded: LoadedGenerator, seeds: list[int], *, psi: float | None = None, cutoff: int | None = None,
           class_idx: int | None = None, noise_mode: str = "const", batch: int = 1) -> torch.Tensor:
    """NCHW float images for the seeds, through the family's `generate`. psi None: no truncation
    (--trunc means the family's truncation: psi in W for style-based generators, a resampling
    threshold for z for the others)."""
    loaded.require("sample", "seeds")
    check_noise_mode(noise_mode)
    device = next(loaded.G.parameters()).device
    c = class_vector(loaded, class_idx, len(seeds), device)
    return loaded.generate(seeds, trunc=psi, cutoff=cutoff, c=c, noise_mode=noise_mode, batch=batch,
                           progress=_progress["enabled"])


def sample_batched(loaded: LoadedGenerator, seeds: list[int], batch: int, *, psi: float | None = None,
                   cutoff: int | None = None, class_idx: int | None = None, noise_mode: str = "const") -> torch.Tensor:
    """`sample` with `batch` seeds per forward pass (mapping and synthesis), for throughput.

    Each seed keeps its own latent, but a batched matrix product or convolution rounds differently from
    a single one, so an image can differ from `sample`'s by float rounding (a few 1e-6, which moves a
    pixel on a rounding edge by one level; docs/commands.md has the measured figures). batch 1 is
    `sample` itself. Random noise is drawn per seed only one image at a time, so it needs batch 1.
    """
    if batch < 1:
        raise UserError(f"--batch {batch}: must be at least 1")
    if batch > 1 and noise_mode == "random":
        raise UserError(f"--batch {batch} with --noise-mode random: random noise is seeded per seed only one image "
                        "at a time; use --batch 1, or --noise-mode const or none")
    return sample(loaded, seeds, psi=psi, cutoff=cutoff, class_idx=class_idx, noise_mode=noise_mode, batch=batch)


def parse_styles(text: str, num_ws: int) -> list[int]:
    """'0-6', '8,9', or a preset (coarse, middle, fine) -> layer indices into W+."""
    if text in STYLE_PRESETS:
        lo, hi, resolutions = STYLE_PRESETS[text]
        layers = list(range(lo, min(hi if hi is not None else num_ws, num_ws)))
        if not layers:
            raise UserError(f"--styles {text}: the {text} layers are those of resolutions {resolutions}, and this "
                            f"generator has only {num_ws} layers of W (give layer numbers such as 0-{num_ws - 1})")
        return layers
    from gancli.latent import parse_seeds

    layers = parse_seeds(text, option="--styles")
    bad = [i for i in layers if i >= num_ws]
    if bad:
        raise UserError(f"--styles {text}: layer {bad[0]} does not exist; this generator has layers 0..{num_ws - 1} "
                        "(or use coarse, middle, fine)")
    return layers


@torch.no_grad()
def style_mix_grid(loaded: LoadedGenerator, rows: list[int], cols: list[int], styles: list[int], *,
                   psi: float = 1.0, class_idx: int | None = None, noise_mode: str = "const") -> np.ndarray:
    """The StyleGAN paper's style-mixing figure as one uint8 image (HWC).

    Top row: the column seeds' images; left column: the row seeds' images; cell (r, c): row r's W
    with the layers in `styles` taken from column c's W. The top-left corner is white.
    """
    from gancli.render import make_grid, to_uint8

    require_style(loaded, "mix")
    check_noise_mode(noise_mode)
    device = next(loaded.G.parameters()).device
    all_seeds = list(dict.fromkeys(rows + cols))
    c = class_vector(loaded, class_idx, len(all_seeds), device)
    ws = seed_ws(loaded, all_seeds, psi, None, c)
    w_of = {s: ws[i] for i, s in enumerate(all_seeds)}
    base_ws = torch.stack([w_of[s] for s in rows + cols])
    mixed = []
    for r in rows:
        for col in cols:
            w = w_of[r].clone()
            w[styles] = w_of[col][styles]
            mixed.append(w)
    mixed_ws = torch.stack(mixed)
    base = to_uint8(synthesize_ws(loaded, base_ws, rows + cols, noise_mode))
    cells = to_uint8(synthesize_ws(loaded, mixed_ws, [r for r in rows for _ in cols], noise_mode))
    h, w, ch = base.shape[1:]
    blank = np.full((1, h, w, ch), 255, dtype=np.uint8)
    tiles = [blank, base[len(rows):]]
    for i in range(len(rows)):
        tiles.append(base[i: i + 1])
        tiles.append(cells[i * len(cols): (i + 1) * len(cols)])
    return make_grid(np.concatenate(tiles), len(rows) + 1, len(cols) + 1)


def mix_cell_names(rows: list[int], cols: list[int]) -> dict[str, tuple[int, int]]:
    """File name -> (grid row, grid column) of each image in `style_mix_grid`'s figure, named as the
    official style_mixing.py names them: ROW-COL.png for a mix, SEED-SEED.png for a seed's own image."""
    names = {f"{c}-{c}.png": (0, j + 1) for j, c in enumerate(cols)}
    for i, r in enumerate(rows):
        names[f"{r}-{r}.png"] = (i + 1, 0)
        for j, c in enumerate(cols):
            names[f"{r}-{c}.png"] = (i + 1, j + 1)
    return names


def grid_tile(grid: np.ndarray, tile: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """One image (HWC) out of a `make_grid` image of rows x cols equal tiles without padding."""
    h, w = grid.shape[0] // rows, grid.shape[1] // cols
    r, c = tile
    return grid[r * h: (r + 1) * h, c * w: (c + 1) * w]


def default_psis(loaded: LoadedGenerator) -> list[float]:
    """The default sweep of `gancli truncate`, the family's own: psi -1..1 in W for style-based
    generators; for the ResNet family the resampling thresholds of BigGAN's Fig. 2(a), from 2.0
    (little truncation) down to 0.04 (almost z = 0)."""
    return loaded.family.default_truncations()


def parse_psi(text: str) -> list[float]:
    """'-1:1:9' (start:stop:count, inclusive) or '1,0.7,0.5' -> list of psi values."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            if n > MAX_PSI_COUNT:
                raise UserError(f"--psi {text}: {n} values; a sweep has at most {MAX_PSI_COUNT} columns")
            bounds = [float(start), float(stop)]
            values = None
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
            if not values:
                raise ValueError
            bounds = values
    except ValueError:
        raise UserError(f"--psi {text}: expected START:STOP:COUNT (e.g. -1:1:9) or a list (e.g. 1,0.7,0.5)") from None
    for value in bounds:
        check_finite(value, f"--psi {text}: psi")
    if values is None:
        values = [float(v) for v in np.linspace(bounds[0], bounds[1], n)]
    if len(values) > MAX_PSI_COUNT:
        raise UserError(f"--psi: {len(values)} values; a sweep has at most {MAX_PSI_COUNT} columns")
    return values


@torch.no_grad()
def truncation_grid(loaded: LoadedGenerator, seeds: list[int], psis: list[float] | None, *, cutoff: int | None = None,
                    class_idx: int | None = None, noise_mode: str = "const") -> np.ndarray:
    """Rows: seeds; columns: truncation values (None: `default_psis`), each through the family's
    `generate`: W-space truncation toward w_avg (on the first `cutoff` layers) for style-based
    generators, a resampling threshold for z (BigGAN's truncation trick) for the ResNet family."""
    from gancli.render import make_grid, to_uint8

    if not any(loaded.has(kind) for kind in ("trunc_psi", "trunc_resample", "trunc_temperature")):
        loaded.require("truncate", "trunc_psi")
    check_trunc(loaded, None, cutoff)
    device = next(loaded.G.parameters()).device
    c = class_vector(loaded, class_idx, len(seeds), device)
    if psis is None:
        psis = default_psis(loaded)
    for psi in psis:
        check_trunc(loaded, psi, cutoff)
    columns = [to_uint8(loaded.generate(seeds, trunc=psi, cutoff=cutoff, c=c, noise_mode=noise_mode,
                                        progress=_progress["enabled"])) for psi in psis]
    images = np.stack(columns, axis=1).reshape(-1, *columns[0].shape[1:])  # seed-major: row = seed
    return make_grid(images, len(seeds), len(psis))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation along the last dimension (falls back to lerp for parallel vectors)."""
    a_n = a / a.norm(dim=-1, keepdim=True)
    b_n = b / b.norm(dim=-1, keepdim=True)
    dot = (a_n * b_n).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    safe = so.abs() > 1e-6
    wa = torch.where(safe, torch.sin((1 - t) * omega) / so.where(safe, torch.ones_like(so)), torch.full_like(so, 1 - t))
    wb = torch.where(safe, torch.sin(t * omega) / so.where(safe, torch.ones_like(so)), torch.full_like(so, t))
    return wa * a + wb * b


def path_points(keys: torch.Tensor, frames: int, curve: str, loop: bool) -> torch.Tensor:
    """Latents along a path through keyframes [K, ...]: `frames` steps per segment.

    linear and slerp interpolate each segment; cubic is a Catmull-Rom spline through the keyframes
    (smooth velocity at keyframes). The last keyframe is included unless the path loops.
    """
    if curve not in ("linear", "slerp", "cubic"):
        raise UserError(f"--kind {curve}: must be linear, slerp or cubic")
    if frames < 1:
        raise UserError(f"--frames {frames}: must be at least 1")
    k = keys.shape[0]
    segments = k if loop else k - 1
    out = []
    for s in range(segments):
        for f in range(frames):
            t = f / frames
            i0, i1 = s, (s + 1) % k
            if curve == "linear":
                out.append(keys[i0].lerp(keys[i1], t))
            elif curve == "slerp":
                out.append(slerp(keys[i0], keys[i1], t))
            else:
                im1 = (s - 1) % k if loop else max(s - 1, 0)
                i2 = (s + 2) % k if loop else min(s + 2, k - 1)
                p0, p1, p2, p3 = keys[im1], keys[i0], keys[i1], keys[i2]
                t2, t3 = t * t, t * t * t
                out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    if not loop:
        out.append(keys[-1])
    return torch.stack(out)


def class_keyframes(loaded: LoadedGenerator, seeds: list[int], classes: list[int]) -> tuple[list[int], torch.Tensor]:
    """Keyframes (seeds, one-hot labels) for a walk between classes: one seed held fixed, or one seed per class."""
    c_dim = loaded.G.c_dim
    if c_dim == 0:
        raise UserError(f"--classes: {loaded.path.name} is unconditional (it has no classes)")
    bad = [k for k in classes if not 0 <= k < c_dim]
    if bad:
        raise UserError(f"--classes: class {bad[0]} must be in 0..{c_dim - 1} for {loaded.path.name}")
    if len(seeds) == 1:
        seeds = seeds * len(classes)
    if len(classes) == 1:
        classes = classes * len(seeds)
    if len(seeds) != len(classes):
        raise UserError(f"--seeds and --classes: give one seed, or as many seeds as classes (got {len(seeds)} and {len(classes)})")
    if len(seeds) < 2:
        raise UserError("--classes: a walk between classes needs at least two keyframes, e.g. --classes 3,7")
    return seeds, torch.eye(c_dim)[classes]


@torch.no_grad()
def interpolation_frames(loaded: LoadedGenerator, seeds: list[int], *, frames: int = 40, space: str | None = None,
                         kind: str = "linear", loop: bool = False, psi: float = 1.0,
                         class_idx: int | None = None, classes: list[int] | None = None) -> torch.Tensor:
    """Images [F, C, H, W] along a walk through the seeds' latents in Z or W.

    space None: W for style-based generators, Z for the others. With `classes`, the labels move too:
    the one-hot keyframes are blended linearly, which for the ResNet family (and any generator whose
    class input is linear) is exactly a linear walk through the class embedding.
    """
    G = loaded.G
    space = space or ("w" if loaded.has("w") else "z")
    if space not in ("z", "w"):
        raise UserError(f"--space {space}: must be z or w")
    c_keys = None
    if classes:
        if class_idx is not None:
            raise UserError("--class and --classes: give one of them (--classes walks between classes)")
        seeds, c_keys = class_keyframes(loaded, seeds, classes)
    if len(seeds) < 2:
        raise UserError("--seeds: an interpolation needs at least two seeds, e.g. --seeds 1,5")
    check_trunc(loaded, psi, None)
    device = next(G.parameters()).device
    z = z_from_seeds(seeds, G.z_dim, device)
    if c_keys is not None:
        c_keys = c_keys.to(device)
        c_path = path_points(c_keys, frames, "linear", loop)
        if space == "w":
            require_style(loaded, "interpolate --space w")
            keys = _one_by_one(lambda zi, ci: G.mapping(zi, ci, truncation_psi=psi), z, c_keys)[:, 0]
            points = path_points(keys, frames, kind, loop)
            return synthesize_ws(loaded, points[:, None, :].repeat(1, G.num_ws, 1), None, "const")
        points = path_points(z, frames, kind, loop)
        return _z_walk(loaded, points, c_path, psi)
    if space == "w":
        require_style(loaded, "interpolate --space w")
        c = class_vector(loaded, class_idx, len(seeds), device)
        keys = seed_ws(loaded, seeds, psi, None, c)[:, 0]  # W (all layers equal before mixing)
        points = path_points(keys, frames, kind, loop)
        return synthesize_ws(loaded, points[:, None, :].repeat(1, G.num_ws, 1), None, "const")
    points = path_points(z, frames, kind, loop)
    c = class_vector(loaded, class_idx, points.shape[0], device)
    return _z_walk(loaded, points, c, psi)


def _z_walk(loaded: LoadedGenerator, points: torch.Tensor, c: torch.Tensor, psi: float) -> torch.Tensor:
    """Images of a walk through Z, one frame at a time, through the family's z -> image (truncated in W
    by psi for style-based generators)."""
    trunc = None if psi == 1.0 else psi
    return torch.cat([loaded.family.from_z(loaded.G, points[i:i + 1], c[i:i + 1], trunc=trunc)
                      for i in _steps(points.shape[0])])


def animation_grid(walks: list[np.ndarray], rows: int, cols: int) -> list[np.ndarray]:
    """Tile several equally long walks (each [F, H, W, C] uint8) into one walk of grids."""
    from gancli.render import make_grid

    return [make_grid(np.stack([w[f] for w in walks]), rows, cols) for f in range(walks[0].shape[0])]


def noise_layer_groups(img_resolution: int) -> tuple[list[int], list[int]]:
    """(coarse, fine) block resolutions for the noise figure: the StyleGAN paper's split (coarse 4-32,
    fine 64 and up) from 128 px on; smaller generators split their resolutions in half."""
    resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
    if img_resolution >= 128:
        return [r for r in resolutions if r <= 32], [r for r in resolutions if r > 32]
    half = (len(resolutions) + 1) // 2
    return resolutions[:half], resolutions[half:]


@torch.no_grad()
def noise_grid(loaded: LoadedGenerator, seeds: list[int], *, draws: int = 4, psi: float = 1.0,
               class_idx: int | None = None) -> tuple[np.ndarray, list[str]]:
    """What the noise inputs do (StyleGAN paper, Figs. 4 and 5), one row per seed.

    Columns: the constant-noise image; `draws` images with fresh noise (draw k of seed s is seeded by
    (s, k)); the per-pixel standard deviation over those draws (white = no change, black = most);
    no noise at all; fresh noise in the coarse layers only; fresh noise in the fine layers only.
    Returns the grid and the column titles.
    """
    from gancli.render import make_grid, to_uint8

    loaded.require("noise", "noise")
    if draws < 2:
        raise UserError(f"--draws {draws}: needs at least 2 noise draws for a standard deviation")
    G = loaded.G
    device = next(G.parameters()).device
    c = class_vector(loaded, class_idx, len(seeds), device)
    ws = seed_ws(loaded, seeds, psi, None, c)
    coarse, fine = noise_layer_groups(G.img_resolution)
    res_all = coarse + fine
    rows = []
    for i, s in enumerate(seeds):
        w = ws[i: i + 1]
        const = G.synthesis(w, noise_mode="const")
        samples = []
        for k in range(draws):
            torch.manual_seed(int(np.random.SeedSequence([s, k]).generate_state(1)[0]))
            samples.append(G.synthesis(w, noise_mode="random"))
        stack = torch.cat(samples)
        std = stack.std(dim=0).mean(dim=0, keepdim=True)  # [1, H, W]
        std_img = (1 - 2 * std / std.max().clamp(min=1e-8)).expand(3, -1, -1)[None]  # white = no variation
        torch.manual_seed(s)
        only_coarse = G.synthesis(w, noise_mode={r: "random" if r in coarse else "none" for r in res_all})
        torch.manual_seed(s)
        only_fine = G.synthesis(w, noise_mode={r: "random" if r in fine else "none" for r in res_all})
        none = G.synthesis(w, noise_mode="none")
        rows.append(torch.cat([const, stack, std_img, none, only_coarse, only_fine]))
    images = to_uint8(torch.cat(rows))
    titles = ["const"] + [f"draw {k}" for k in range(draws)] + ["std dev", "no noise",
                                                                 f"coarse noise ({coarse[0]}-{coarse[-1]})",
                                                                 f"fine noise ({fine[0]}-{fine[-1]})"]
    return make_grid(images, len(seeds), draws + 5), titles
