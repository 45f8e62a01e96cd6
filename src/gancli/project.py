"""Image -> latent: find the W (or W+) latent and the noise maps that make a generator reproduce an image.

The method is the projector of StyleGAN2 (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", CVPR 2020, Appendix D), written here from the paper's description:

- Statistics of W: `w_avg` = mean of `w_avg_samples` mapped z (z from `RandomState(seed)`), and
  `w_std` = sqrt(mean_i ||w_i - w_avg||^2), the RMS distance of a mapped w from the mean.
- Variables: the latent (W: one w `[1, w_dim]` per target, broadcast to every layer; W+: one w per
  layer, `[num_ws, w_dim]`), starting at `w_avg`, and every per-pixel noise map of the synthesis
  network, starting from N(0, 1). Both are optimized with Adam (betas 0.9, 0.999).
- Step t of T (t/T = s): learning rate `lr * rampup(s) * rampdown(s)` with a linear ramp-up over the
  first 5% of the steps and a cosine ramp-down over the last 25%. The latent fed to the network is
  `w + N(0, 1) * w_std * 0.05 * max(0, 1 - s / 0.75)^2` (noise that decays to nothing at 75%), which
  makes the early search explore more broadly.
- Loss per target: perceptual distance (ST-LPIPS by default) between the synthesized image and the
  target, + `mse` * mean squared pixel error (pixels in [-1, 1]), + `noise_reg` * the noise
  regularizer: for each noise map n and each of its successive 2x average-pooled versions down to
  8x8, `mean(n * roll(n, 1, x))^2 + mean(n * roll(n, 1, y))^2`. It penalizes spatial
  autocorrelation, so the noise maps cannot smuggle the image in; after each step every map is
  renormalized to zero mean and unit variance.
- Images are compared by the perceptual network at a size within [64, 256] (`Perceptual`): larger
  images are area-downsampled to 256 (as in the paper), smaller ones bilinearly upsampled to 64 (at
  16-32 px VGG16's deeper layers see only a few pixels).
- Noise maps start from N(0, 1) (`noise_init='random'`, the paper) or from the network's own
  constant noise (`noise_init='const'`, which helps only for images rendered with it).

Several targets are projected in one batch with one optimizer. Every term of the loss is a sum of
per-target terms, Adam acts element-wise, and every target sees the same random draws (the noise-map
start and the latent noise of each step come from one generator seeded with `seed`), so each target's
result is the one it would get if projected alone (up to floating-point rounding of batched kernels).

The result of a target is its latent `w [1, num_ws, w_dim]` and its noise maps. Rendering it with its
own noise maps (`render`) gives `proj.png`; `gancli sample --projected-w` reads both back from
`projected_w.npz` and renders the identical image (`render_projected`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import UserError

if TYPE_CHECKING:
    from gancli.metrics.stlpips import STLPIPS
    from gancli.models import LoadedGenerator

SPACES = ("w", "w+")
NOISE_KEY = "noise."  # prefix of the noise-map arrays in projected_w.npz (then the layer name)


@dataclass
class ProjectConfig:
    """Settings of one projection (defaults: the StyleGAN2 paper's)."""

    steps: int = 1000
    lr: float = 0.1
    space: str = "w"
    noise_reg: float = 1e5
    mse: float = 0.0
    seed: int = 303
    w_avg_samples: int = 10000
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampup_length: float = 0.05
    lr_rampdown_length: float = 0.25
    betas: tuple[float, float] = (0.9, 0.999)
    noise_init: str = "random"  # 'random': N(0, 1) maps (the paper); 'const': the network's own constant noise

    def validate(self) -> ProjectConfig:
        if self.space not in SPACES:
            raise UserError(f"--space {self.space}: must be w or w+")
        if self.steps < 1:
            raise UserError(f"--steps {self.steps}: must be at least 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UserError(f"--lr {self.lr}: must be a positive number")
        if not self.noise_reg >= 0 or not math.isfinite(self.noise_reg):
            raise UserError(f"--noise-reg {self.noise_reg}: must be >= 0")
        if not self.mse >= 0 or not math.isfinite(self.mse):
            raise UserError(f"--mse {self.mse}: must be >= 0")
        if self.noise_init not in ("random", "const"):
            raise UserError(f"--noise-init {self.noise_init}: must be random or const")
        return self


# --------------------------------------------------------------------------------------------------
# Targets


def read_target(path: str | Path) -> np.ndarray:
    """A target image file as uint8 RGB [H, W, 3]; UserError naming the file if it is not an image."""
    from gancli.data.images import read_image

    return read_image(str(path))


def prepare_target(image: np.ndarray, resolution: int, resize_filter: str = "lanczos") -> np.ndarray:
    """uint8 [H, W, 3] -> centre-cropped to a square and resized to `resolution` (as `gancli dataset`)."""
    from PIL import Image

    from gancli.data.convert import RESIZE_FILTERS, prepare_image

    if resize_filter not in RESIZE_FILTERS:
        raise UserError(f"--resize-filter {resize_filter}: must be one of {', '.join(RESIZE_FILTERS)}")
    return np.asarray(prepare_image(Image.fromarray(image), resolution, "center-crop", resize_filter), dtype=np.uint8)


def to_float(images: np.ndarray, device) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [-1, 1] (the inverse of `render.to_uint8` up to its rounding)."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


# --------------------------------------------------------------------------------------------------
# Schedules and regularizer (closed forms, tested against the formulas of the paper)


def learning_rate(step: int, cfg: ProjectConfig) -> float:
    """lr at `step`: linear ramp-up over the first `lr_rampup_length`, cosine ramp-down over the last
    `lr_rampdown_length` of the run (fractions of `steps`)."""
    t = step / cfg.steps
    down = min(1.0, (1.0 - t) / cfg.lr_rampdown_length)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    up = min(1.0, t / cfg.lr_rampup_length)
    return cfg.lr * down * up


def latent_noise_scale(step: int, cfg: ProjectConfig, w_std: float) -> float:
    """Std of the noise added to w at `step`: w_std * initial_noise_factor * max(0, 1 - t/ramp)^2."""
    t = step / cfg.steps
    return w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2


def noise_regularization(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-target multi-scale autocorrelation of noise maps [N, 1, H, W] -> [N].

    For each map and its successive 2x average-poolings down to 8x8 (a map of 8x8 or smaller is used
    as is): mean(n * roll(n, 1, x))^2 + mean(n * roll(n, 1, y))^2, summed.
    """
    total = maps[0].new_zeros(maps[0].shape[0])
    for n in maps:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * n.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


@torch.no_grad()
def normalize_noise_(maps: list[torch.Tensor]) -> None:
    """Each target's noise map to zero mean and unit (population) variance, in place."""
    for n in maps:
        n -= n.mean(dim=(1, 2, 3), keepdim=True)
        n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


@torch.no_grad()
def w_statistics(G, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std): the mean of `samples` mapped z and the RMS distance of w from it."""
    device = next(G.parameters()).device
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).float().to(device)
    c = torch.zeros([samples, G.c_dim], device=device)
    w = G.mapping(z, c)[:, 0, :].double()
    w_avg = w.mean(dim=0)
    w_std = float((w - w_avg).square().sum(dim=1).mean().sqrt())
    return w_avg.float(), w_std


# --------------------------------------------------------------------------------------------------
# Noise maps of the synthesis network


def noise_layers(G) -> list[tuple[str, torch.nn.Module]]:
    """(name, layer) of every synthesis layer with a noise input, in network order; name e.g. 'b16.conv0'."""
    return [(name, module) for name, module in G.synthesis.named_modules()
            if getattr(module, "use_noise", False) and hasattr(module, "noise_const")]


@contextmanager
def noise_maps(G, maps: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the synthesis network with `maps` ([N, 1, res, res] per layer) as its 'const' noise.

    The layers scale `noise_const` by their learned strength and add it to every channel, so a
    per-sample map broadcasts like the stored [res, res] one. The stored buffers are put back after.
    """
    saved = {}
    try:
        for name, layer in noise_layers(G):
            saved[name] = layer.noise_const
            layer.noise_const = maps[name]
        yield
    finally:
        for name, layer in noise_layers(G):
            if name in saved:
                layer.noise_const = saved[name]


@torch.no_grad()
def render(G, ws: torch.Tensor, maps: dict[str, torch.Tensor] | None, noise_mode: str = "const") -> torch.Tensor:
    """Images for ws [N, num_ws, w_dim], one at a time (as `gancli sample` renders), each with its own
    noise maps ([N, res, res] or [N, 1, res, res] per layer) when given."""
    out = []
    for i in range(ws.shape[0]):
        if maps is None:
            out.append(G.synthesis(ws[i: i + 1], noise_mode=noise_mode))
            continue
        one = {name: m[i].reshape(1, 1, *m.shape[-2:]) for name, m in maps.items()}
        with noise_maps(G, one):
            out.append(G.synthesis(ws[i: i + 1], noise_mode="const"))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------
# Perceptual distance with the target's features computed once


class Perceptual:
    """ST-LPIPS (or a user's VGG16 LPIPS) split into features and distance, so that the targets'
    features are computed once. `distance(features(x), features(y))` equals `model(x, y)` for images
    whose size is within [min_size, max_size]; others are resized into that range first."""

    def __init__(self, model: STLPIPS, min_size: int = 64, max_size: int = 256):
        self.model, self.min_size, self.max_size = model, min_size, max_size

    @property
    def name(self) -> str:
        return self.model.info()["name"]

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2]
        if size > self.max_size:
            return F.interpolate(x, size=(self.max_size, self.max_size), mode="area")
        if size < self.min_size:
            return F.interpolate(x, size=(self.min_size, self.min_size), mode="bilinear", align_corners=False)
        return x

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        feats = m.net(m.scaling_layer(self.resize(x)))
        return [f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for f in feats]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        total = fx[0].new_zeros(fx[0].shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            total = total + getattr(self.model, f"lin{k}")((a - b).square()).mean(dim=(1, 2, 3))
        return total


def load_perceptual(weights: str | Path | None, device, min_size: int = 64) -> Perceptual:
    """ST-LPIPS (VGG, stlpips-pytorch's weights), or a user's weight file (see `load_weight_file`)."""
    from gancli.metrics.stlpips import load_stlpips

    model = load_weight_file(weights, device) if weights is not None else load_stlpips("vgg", device=str(device))
    return Perceptual(model, min_size=min_size)


def load_weight_file(path: str | Path, device) -> STLPIPS:
    """A user's perceptual weights, read without running code: a .pth/.pt state_dict through
    `torch.load(weights_only=True)` or a .safetensors file. Accepted layouts (keys as in the
    `lpips`/`stlpips_pytorch` packages' state_dicts): the vanilla VGG16 LPIPS network
    (`net.slice1.0.weight` ... `net.slice5.28.bias`, `lin0.model.1.weight` ... `lin4.model.1.weight`,
    optionally `scaling_layer.shift/scale`), or a full ST-LPIPS VGG/AlexNet file."""
    from gancli.metrics.stlpips import STLPIPS

    path = Path(path).expanduser()
    if path.suffix.lower() != ".safetensors":
        return STLPIPS.from_file(path, device=str(device))
    from gancli.metrics.stlpips import _guess_net

    if not path.is_file():
        raise UserError(f"--lpips-weights {path}: no such file")
    try:
        from safetensors.torch import load_file

        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"--lpips-weights {path}: not a readable .safetensors file ({type(e).__name__})") from None
    net = _guess_net(state)
    if net is None:
        raise UserError(f"--lpips-weights {path}: keys match neither VGG16 LPIPS nor ST-LPIPS "
                        f"(expected net.slice*.* and lin*.model.1.weight; first keys: {list(state)[:3]})")
    model = STLPIPS(net)
    if "scaling_layer.shift" not in state:
        state = {**state, **{f"scaling_layer.{k}": v for k, v in model.scaling_layer.state_dict().items()}}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"--lpips-weights {path}: weights do not match the {net} network "
                        f"({str(e).splitlines()[0] if str(e) else 'mismatch'})") from None
    model.path = path
    return model.to(device)


# --------------------------------------------------------------------------------------------------
# The optimization


@dataclass
class Projection:
    """Result for N targets: ws [N, num_ws, w_dim], noise maps {layer: [N, res, res]}, the final
    images (rendered one at a time with their own noise) and the perceptual distance of every step."""

    ws: torch.Tensor
    noise: dict[str, torch.Tensor]
    images: torch.Tensor
    history: list[list[float]] = field(default_factory=list)  # [step][target] perceptual distance


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255); inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def check_projectable(loaded: LoadedGenerator) -> None:
    G = loaded.G
    loaded.require("project", "project")
    if getattr(G, "c_dim", 0):
        raise UserError(f"gancli project: {loaded.path.name} is class-conditional; projection supports unconditional generators")


def project(
    G,
    targets: np.ndarray,
    cfg: ProjectConfig,
    perceptual: Perceptual,
    on_step: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> Projection:
    """Project uint8 targets [N, R, R, 3] (R = the generator's resolution).

    on_step(step, images, distances, losses) is called after each step with that step's synthesized
    images [N, 3, R, R] (float, detached) and per-target distances and losses [N].
    """
    cfg.validate()
    device = next(G.parameters()).device
    n = targets.shape[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed)
    layers = 1 if cfg.space == "w" else G.num_ws
    w_opt = w_avg.reshape(1, 1, -1).repeat(n, layers, 1).clone().requires_grad_(True)
    maps = {}
    for name, layer in noise_layers(G):  # every target starts from the same maps (see the module docstring)
        shape = [1, 1, *layer.noise_const.shape[-2:]]
        start = torch.randn(shape, generator=gen).to(device) if cfg.noise_init == "random" else layer.noise_const.reshape(shape)
        maps[name] = start.repeat(n, 1, 1, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt, *maps.values()], lr=cfg.lr, betas=cfg.betas)

    target_images = to_float(targets, device)
    with torch.no_grad():
        target_features = perceptual.features(target_images)
    history: list[list[float]] = []
    for step in range(cfg.steps):
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        scale = latent_noise_scale(step, cfg, w_std)
        w_noise = torch.randn([1, layers, w_opt.shape[2]], generator=gen).to(device) * scale
        ws = (w_opt + w_noise).expand(n, G.num_ws, -1) if layers == 1 else w_opt + w_noise
        with noise_maps(G, maps):
            images = G.synthesis(ws, noise_mode="const")
        dist = perceptual.distance(perceptual.features(images), target_features)
        loss = dist
        if cfg.mse > 0:
            loss = loss + cfg.mse * (images - target_images).square().mean(dim=(1, 2, 3))
        if cfg.noise_reg > 0:
            loss = loss + cfg.noise_reg * noise_regularization(list(maps.values()))
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # a sum: each target's gradient is its own loss's
        optimizer.step()
        normalize_noise_(list(maps.values()))
        history.append([float(d) for d in dist.detach()])
        if on_step is not None:
            on_step(step, images.detach(), dist.detach(), loss.detach())

    final_ws = w_opt.detach().expand(n, G.num_ws, -1).clone() if layers == 1 else w_opt.detach().clone()
    final_noise = {name: m.detach()[:, 0].clone() for name, m in maps.items()}
    return Projection(ws=final_ws, noise=final_noise, images=render(G, final_ws, final_noise), history=history)


# --------------------------------------------------------------------------------------------------
# Files


def save_projected(path: Path, ws: torch.Tensor, noise: dict[str, torch.Tensor]) -> None:
    """projected_w.npz: 'w' [N, num_ws, w_dim] float32 and 'noise.<layer>' [N, res, res] float32."""
    import io

    from gancli.fileio import atomic_write_bytes

    arrays = {"w": ws.detach().cpu().float().numpy()}
    arrays.update({NOISE_KEY + name: m.detach().cpu().float().numpy() for name, m in noise.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_projected_noise(path: Path, loaded: LoadedGenerator, count: int) -> dict[str, torch.Tensor] | None:
    """The noise maps stored beside 'w' in a projected_w.npz, checked against the generator; None if absent."""
    with np.load(path, allow_pickle=False) as data:
        keys = [k for k in data.files if k.startswith(NOISE_KEY)]
        if not keys:
            return None
        stored = {k[len(NOISE_KEY):]: data[k] for k in keys}
    device = next(loaded.G.parameters()).device
    maps = {}
    for name, layer in noise_layers(loaded.G):
        expected = (count, *layer.noise_const.shape[-2:])
        array = stored.pop(name, None)
        if array is None or tuple(array.shape) != expected:
            got = "missing" if array is None else f"shape {list(array.shape)}"
            raise UserError(f"--projected-w {path}: noise map {NOISE_KEY}{name} is {got}, expected {list(expected)} "
                            f"for {loaded.path.name} (was it projected with another network?)")
        maps[name] = torch.from_numpy(array.astype(np.float32)).to(device)
    if stored:
        raise UserError(f"--projected-w {path}: noise maps {sorted(stored)[:3]} do not belong to {loaded.path.name}")
    return maps


def render_projected(loaded: LoadedGenerator, path: Path, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
    """`gancli sample --projected-w`: with noise_mode 'const', the file's own noise maps when it has
    them (so the image is the projection's proj.png); otherwise the network's noise as for seeds."""
    from gancli import explore

    maps = read_projected_noise(path, loaded, ws.shape[0]) if noise_mode == "const" else None
    if maps is None:
        return explore.synthesize_ws(loaded, ws, None, noise_mode)
    return render(loaded.G, ws, maps)


def side_by_side(target: np.ndarray, image: np.ndarray) -> np.ndarray:
    """One video frame: target | fit, HWC uint8."""
    return np.concatenate([target, image], axis=1)


def video_format(requested: str) -> tuple[str, str | None]:
    """('mp4' | 'gif', note): 'auto' is mp4 when imageio-ffmpeg is installed, else gif with a note."""
    if requested not in ("auto", "mp4", "gif"):
        raise UserError(f"--video-format {requested}: must be auto, mp4 or gif")
    try:
        import imageio_ffmpeg  # noqa: F401

        has_ffmpeg = True
    except ImportError:
        has_ffmpeg = False
    if requested == "mp4" and not has_ffmpeg:
        raise UserError("--video-format mp4: needs imageio's ffmpeg plugin (pip install imageio-ffmpeg); or use --video-format gif")
    if requested == "auto":
        if has_ffmpeg:
            return "mp4", None
        return "gif", "writing GIF videos: MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg)"
    return requested, None


def progress_bar(steps: int, enabled: bool):
    """(progress, task): a rich bar with step, loss and PSNR (fields 'loss' and 'psnr' of the task)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from gancli.progress import task_progress

    columns = [TextColumn("projecting"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  PSNR {task.fields[psnr]:.2f} dB")]
    return task_progress(steps, "projecting", columns, enabled=enabled, unit="steps", loss=float("nan"), psnr=float("nan"))


def step_psnr(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of float images in [-1, 1] (peak-to-peak 2, so the same scale as uint8 / 255)."""
    mse = (images.clamp(-1, 1) - targets).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
