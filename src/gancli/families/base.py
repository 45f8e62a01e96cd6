"""What a model family is: its recipe sections, its networks, its training step, its capabilities.

A family lives in one folder (`gancli/families/<name>/`) and is registered with one line in
`gancli/families/__init__.py`. It is a `Family` object that declares

- `kinds`: the `model.kind` values it trains (the recipe's `model.kind` selects the family);
- `model_config`, `loss_config`, `train_config`: its own dataclasses for the `model`, `loss` and
  `train` sections (subclasses of the common ones below), which validate those sections strictly;
- `modules`: the networks it trains and saves (`G_ema`, `G`, `D`; `G_AB`, `G_BA`, `D_A`, `D_B`;
  `encoder`, `decoder`, `prior`, ...) and `inference_module`, the one the commands load;
- `capabilities`: what its checkpoints can do in the commands (see `CAPABILITIES`);
- hooks: `validate` (checks across sections), `auto_settings` (recipe `auto: true`), `plan` (the
  dry-run lines), `describe` (`gancli info` lines), `build_generator`, `generate` (seeds -> images),
  and `training(trainer)`, which returns the object that owns the optimizers, the EMA, the training
  state and the step of one run (`FamilyTraining`).

The generic `Trainer` (gancli.train.loop) owns the run: the data stream, snapshots, logs, progress,
signals, NaN checks, metrics and processes. It never looks at `model.kind`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from gancli.errors import UserError

if TYPE_CHECKING:
    import torch

# What a checkpoint of a family can do; commands ask for these and say in one line what is missing.
CAPABILITIES: dict[str, str] = {
    "seeds": "generates images from seeds",
    "w": "has per-layer styles (a mapping network and W)",
    "noise": "has per-pixel noise inputs",
    "class": "can be class-conditional",
    "trunc_psi": "truncates in W toward the average W (psi)",
    "trunc_resample": "truncates by resampling z beyond a threshold",
    "trunc_temperature": "samples with a temperature (--trunc)",
    "image_in": "translates input images",
    "encode": "encodes images into codes",
    "project": "projects images into its latent space",
    "ppl": "has a perceptual path length in W",
}

# How a command says that a family lacks a capability: "<command>: a <kind> generator <LACKS[cap]>".
LACKS: dict[str, str] = {
    "seeds": "does not generate images from seeds",
    "w": "has no per-layer styles",
    "noise": "has no noise inputs",
    "class": "takes no class labels",
    "trunc_psi": "has no W to truncate",
    "trunc_resample": "has no z to truncate",
    "trunc_temperature": "has no sampling temperature",
    "image_in": "does not translate images",
    "encode": "has no encoder",
    "project": "has no latent space to project into",
    "ppl": "has no W for a perceptual path length",
}


# --------------------------------------------------------------------------------------------------
# The common part of the family sections. A family subclasses each one; the subclass's fields are the
# keys allowed in that section for its model kinds.


@dataclass
class ModelConfig:
    kind: str = "stylegan2"  # network family and variant: selects the family (`gancli recipes`, docs/families.md)
    z_dim: int = 512  # input latent size

    def validate(self, where: str) -> None:
        if self.z_dim < 1:
            raise UserError(f"{where}model.z_dim: must be a positive integer, got {self.z_dim}")


@dataclass
class LossConfig:
    kind: str = "stylegan2"  # adversarial loss (the family's own list)

    def validate(self, where: str) -> None:
        pass


@dataclass
class TrainConfig:
    batch: int = 32  # global minibatch size (all GPUs together)
    batch_gpu: Optional[int] = None  # per-device batch; smaller than batch/gpus means gradient accumulation
    total_kimg: float = 25000  # training length in thousands of real images shown to D
    g_lr: float = 0.002  # generator learning rate
    d_lr: float = 0.002  # discriminator learning rate
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.99])  # Adam betas
    eps: float = 1e-8  # Adam epsilon
    d_steps: int = 1  # discriminator steps per generator step
    ema_kimg: float = 10.0  # generator EMA half-life in thousands of images
    ema_rampup: Optional[float] = 0.05  # EMA ramp-up (half-life <= kimg * rampup); null: none
    precision: Literal["auto", "fp32", "mixed"] = "auto"  # 'auto': mixed on a GPU, float32 on a CPU
    seed: int = 0  # random seed of the run
    snapshot_kimg: float = 200  # write a checkpoint every N kimg (and at the end)
    image_kimg: float = 50  # write a fake-image grid every N kimg
    grid_seeds: Optional[int] = None  # images in the snapshot grid (default: fits the resolution)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # 'auto': the GPU when torch sees one
    threads: Optional[int] = None  # CPU threads for torch (null: torch's default)

    def validate(self, where: str) -> None:
        _positive(self.batch, f"{where}train.batch")
        if self.batch_gpu is not None:
            _positive(self.batch_gpu, f"{where}train.batch_gpu")
        for key in ("g_lr", "d_lr", "total_kimg", "snapshot_kimg", "image_kimg"):
            if getattr(self, key) <= 0:
                raise UserError(f"{where}train.{key}: must be > 0, got {getattr(self, key)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"{where}train.betas: must be two numbers in [0, 1), got {self.betas}")
        _positive(self.d_steps, f"{where}train.d_steps")
        if self.ema_kimg < 0:
            raise UserError(f"{where}train.ema_kimg: must be >= 0, got {self.ema_kimg}")
        if self.grid_seeds is not None:
            _positive(self.grid_seeds, f"{where}train.grid_seeds")


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise UserError(f"{key}: must be a positive integer, got {value}")


# --------------------------------------------------------------------------------------------------


class Family:
    """A model family. Subclass it in `families/<name>/__init__.py` and register one instance."""

    name: ClassVar[str]  # registry name (the folder), e.g. 'stylegan2'
    title: ClassVar[str]  # how messages name it, e.g. 'StyleGAN2'
    kinds: ClassVar[tuple[str, ...]]  # model.kind values it trains
    model_config: ClassVar[type] = ModelConfig
    loss_config: ClassVar[type] = LossConfig
    train_config: ClassVar[type] = TrainConfig
    capabilities: ClassVar[frozenset[str]] = frozenset()
    modules: ClassVar[tuple[str, ...]] = ("G_ema", "G", "D")  # what it trains and saves, in save order
    inference_module: ClassVar[str] = "G_ema"  # what the commands load
    data_kind: ClassVar[str] = "images"  # what its step reads: 'images' (image, label), 'pairs', 'unpaired'
    supports_augment: ClassVar[bool] = False  # ADA (augment.kind: ada) is wired into its step
    own_metrics: ClassVar[dict[str, str]] = {}  # `gancli evaluate` metrics of its own: name -> what it measures

    # ----------------------------------------------------------------------------------------------
    # Recipes

    def default_loss_kind(self) -> str:
        return _literal_default(self.loss_config, "kind")

    def validate(self, recipe, where: str) -> None:
        """Checks that span sections (the sections' own `validate` already ran)."""
        if recipe.augment.kind != "none" and not self.supports_augment:
            raise UserError(f"{where}augment.kind: {recipe.augment.kind!r} is not wired into the {self.title} family "
                            f"(model.kind {recipe.model.kind}); use augment.kind: none")
        if recipe.metrics.names and "seeds" not in self.capabilities:
            raise UserError(f"{where}metrics.names: the {self.title} family does not generate images from seeds, "
                            "so training-time metrics do not apply")

    def adopt_model(self, recipe_model: dict[str, Any], network_model: dict[str, Any]) -> dict[str, Any]:
        """The `model` section of a run started with `--init NETWORK`: by default the network's (its
        architecture replaces the recipe's). A family whose recipe adds networks on top of the file's
        (VQ-VAE-2's stage 2: priors over a stage-1 VQ-VAE) keeps the recipe's keys for those."""
        return network_model

    def requires_init(self, recipe) -> str | None:
        """Why this recipe cannot start from fresh weights (None: it can): a later stage that trains
        on top of an earlier stage's networks needs `--init`. Checked before a run directory is made."""
        return None

    def auto_settings(self, resolution: int, gpus: int) -> dict[str, Any] | None:
        """Recipe values derived from resolution and GPU count for `auto: true` (None: no such mode)."""
        return None

    def plan(self, recipe) -> dict[str, str]:
        """Dry-run lines by heading: 'model', 'optimizer', 'loss'; optionally 'steps' (the training line's
        "= N steps" part), 'augment_note' (appended to the augment line), and more headings of its own."""
        raise NotImplementedError

    def describe(self, model: dict[str, Any]) -> dict[str, Any]:
        """`gancli info` architecture rows from a checkpoint's embedded `model` section (plain data):
        its own keys (files from before the family split hold every family's keys; those of the
        others are left out)."""
        from gancli.families import all_families

        own = {f.name for f in dataclasses.fields(self.model_config)}
        others = {f.name for fam in all_families() for f in dataclasses.fields(fam.model_config)} - own
        return {k: v for k, v in model.items() if k not in others}

    # ----------------------------------------------------------------------------------------------
    # Networks and commands

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3) -> torch.nn.Module:
        raise NotImplementedError

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        """(G, D) for families of one generator and one discriminator."""
        raise UserError(f"the {self.title} family does not have one G and one D")

    def training(self, trainer) -> FamilyTraining:
        """The object that trains one run of this family (optimizers, EMA, state, step)."""
        raise NotImplementedError

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        """Refuse truncation values this generator cannot use (one line)."""

    def default_truncations(self) -> list[float]:
        """The values of `gancli truncate`'s default sweep."""
        raise UserError(f"a {self.title} generator has no truncation")

    def latents(self, seeds: list[int], z_dim: int, device, trunc: float | None = None) -> torch.Tensor:
        """z [N, z_dim] for the seeds: seed s is `numpy.random.RandomState(s).randn(z_dim)` (the official
        convention). Families that truncate by resampling z apply `trunc` here."""
        from gancli.latent import z_from_seeds

        return z_from_seeds(seeds, z_dim, device)

    def from_z(self, G, z: torch.Tensor, c: torch.Tensor, *, trunc: float | None = None, cutoff: int | None = None,
               noise_mode: str = "const", noise_seeds: list[int] | None = None) -> torch.Tensor:
        """Images for a batch of latents (the generator API: G(z, c)); `noise_seeds` seed random noise."""
        return G(z, c)

    def generate(self, G, seeds: list[int], *, trunc: float | None = None, cutoff: int | None = None,
                 c: torch.Tensor | None = None, noise_mode: str = "const", batch: int = 1,
                 progress: bool = False) -> torch.Tensor:
        """NCHW float images in [-1, 1] for the seeds: `trunc` None means no truncation; `c` is the
        one-hot class of each seed ([N, c_dim]). batch 1 renders every seed on its own, so its bytes
        never depend on the other seeds; a larger batch is faster and may round differently."""
        if "seeds" not in self.capabilities:
            raise UserError(f"a {self.title} generator does not generate images from seeds")
        import torch

        self.check_trunc(G, trunc, cutoff)
        device = next(G.parameters()).device
        if c is None:
            c = torch.zeros([len(seeds), int(getattr(G, "c_dim", 0))], device=device)
        z = self.latents(seeds, G.z_dim, device, trunc)
        return from_z_in_chunks(self, G, z, c, batch=batch, progress=progress, trunc=trunc, cutoff=cutoff,
                                noise_mode=noise_mode, noise_seeds=seeds)

    # Model-specific paths of `gancli mix` and `gancli project` for families with `encode` (the
    # style-based path of those commands is unchanged for the others).

    def mix_grid(self, loaded, rows: list[int], cols: list[int], *, trunc: float | None = None):
        """`mix` for families with `encode`: a uint8 HWC grid mixing the codes of the row and column seeds."""
        raise UserError(f"mix: a {self.title} network has no mixing of its own")

    def encode_images(self, loaded, images) -> dict[str, Any]:
        """`project` for families with `encode`: uint8 NHWC images -> {'recon': uint8 NHWC, 'psnr': [N],
        and the codes by name (arrays, saved in codes.npz)}."""
        raise UserError(f"project: a {self.title} network has no encoder")

    def interpolation_frames(self, loaded, seeds: list[int], *, frames: int, space: str | None, kind: str, loop: bool,
                             psi: float | None, class_idx: int | None, classes: list[int] | None):
        """`interpolate` for families with `encode`: frames [F, C, H, W] of a walk through the seeds."""
        raise UserError(f"interpolate: a {self.title} network has no walk of its own")

    def evaluate_own(self, loaded, names: list[str], *, data_source: str | None, num_real: int | None,
                     batch: int) -> dict[str, float]:
        """`gancli evaluate` for the names in `own_metrics`, on the real images of `data_source`
        (None: the checkpoint's training data): a flat dict of results (with 'n_images')."""
        raise UserError(f"evaluate: the {self.title} family has no metrics of its own")

    def lacks(self, capability: str) -> bool:
        return capability not in self.capabilities


class FamilyTraining:
    """One run's training of a family: built by `Family.training(trainer)`.

    `trainer` is the generic Trainer. A step reads and may use: `recipe`, `device`, `ddp` (rank,
    world_size, is_main), `batch` (global), `batch_rank` (this process's share), `batch_gpu` (per
    accumulation round), `state` (step, cur_nimg: the step must advance both), `c_dim`,
    `next_batch(n=None)` (this rank's share of the next n images of the global stream, default
    `batch`; a step may take any number, so the batch may change during training), `next_indices(n=None)`
    (the same share as dataset indices, images not read: for steps on precomputed data), and
    `fake_labels(n, generator)`.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks trained and saved, by the family's module names (in save order)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond weights, optimizers, counters and data position (tensors on CPU)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def weights_from_init(self, modules: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        """The weights `--init` loads (all of `modules()`, strictly), from those of the network file:
        by default the file's as they are. A stage that trains new networks beside frozen ones from an
        earlier stage (VQ-VAE-2's priors) declares it here: it fills the new ones with their fresh
        weights, so the file need hold only the earlier stage's."""
        return modules

    def train_step(self, stats) -> None:
        """One training step: read data with trainer.next_batch, update, advance trainer.state."""
        raise NotImplementedError

    def before_snapshot(self) -> None:
        """Called on rank 0 before each checkpoint is written (e.g. standing statistics)."""

    def log_values(self) -> dict[str, float]:
        """Extra values for the log and the progress bar (e.g. 'augment/p')."""
        return {}

    def render_grid(self, seeds: list[int], c) -> torch.Tensor:
        """The training grid's images (NCHW in [-1, 1]) for fixed seeds and labels."""
        tr = self.trainer
        G = self.modules()[tr.family.inference_module]
        return tr.family.generate(G, seeds, c=c, noise_mode="const", batch=16)


def from_z_in_chunks(family: Family, G, z, c, *, batch: int = 1, progress: bool = False,
                     noise_seeds: list[int] | None = None, **kwargs) -> torch.Tensor:
    """`family.from_z` over chunks of `batch` rows (rows never mix across chunks), with a progress bar
    (rate, ETA) for long renders when `progress`."""
    import torch

    n = z.shape[0]
    starts = list(range(0, n, max(1, batch)))
    out = []
    with torch.no_grad():
        for i in render_steps(starts, progress and n >= 16, n):
            j = min(i + max(1, batch), n)
            seeds = noise_seeds[i:j] if noise_seeds is not None else list(range(i, j))
            out.append(family.from_z(G, z[i:j], c[i:j], noise_seeds=seeds, **kwargs))
    return torch.cat(out)


def render_steps(starts: list[int], enabled: bool, total: int):
    """Iterate `starts`; with `enabled`, show a rich progress bar of `total` images."""
    if not enabled:
        yield from starts
        return
    from gancli.progress import image_progress

    progress, task = image_progress(total, "rendering", transient=True)
    with progress:
        for k, i in enumerate(starts):
            yield i
            nxt = starts[k + 1] if k + 1 < len(starts) else total
            progress.update(task, advance=nxt - i)


def _literal_default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)
