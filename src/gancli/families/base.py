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
    keep_snapshots: int = 0  # keep only the N newest checkpoints, removing older ones after each save (0: keep all)
    image_kimg: float = 50  # write a fake-image grid every N kimg
    grid_seeds: Optional[int] = None  # images in the snapshot grid (default: fits the resolution)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # 'auto': the GPU when torch sees one
    threads: Optional[int] = None  # CPU threads for torch (null: OMP_NUM_THREADS, else the cores not busy with other work)

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
        if self.threads is not None:
            _positive(self.threads, f"{where}train.threads")
        if self.ema_kimg < 0:
            raise UserError(f"{where}train.ema_kimg: must be >= 0, got {self.ema_kimg}")
        if self.grid_seeds is not None:
            _positive(self.grid_seeds, f"{where}train.grid_seeds")
        if self.keep_snapshots < 0:
            raise UserError(f"{where}train.keep_snapshots: must be >= 0, got {self.keep_snapshots}")


# The adversarial-loss zoo (gancli.losses.LOSS_KINDS) as recipe values; 'bce' is 'nonsat' (the ResNet
# family's older name for it).
AdversarialKind = Literal["hinge", "bce", "nonsat", "minimax", "wgan", "wgan-gp", "lsgan", "rasgan", "rals", "rahinge"]
_SMOOTHABLE = ("bce", "nonsat", "minimax")


@dataclass
class AdversarialLossConfig(LossConfig):
    """The loss keys shared by the families that take their loss from the zoo (ResNet, DCGAN)."""

    kind: AdversarialKind = "hinge"  # adversarial loss: nonsat|bce, minimax, wgan, wgan-gp, lsgan, hinge, rasgan, rals, rahinge (docs/dcgan.md)
    real_target: float = 1.0  # bce/nonsat/minimax: target for reals (one-sided label smoothing, e.g. 0.9)
    gp_weight: float = 10.0  # wgan-gp: gradient penalty weight lambda (Gulrajani et al. 2017: 10)
    wgan_clip: float = 0.01  # wgan: critic weights clipped to [-c, c] after each D update (Arjovsky et al. 2017: 0.01)
    lsgan_a: float = 0.0  # lsgan: D's target for fakes (Mao et al. 2017, Eq. 9: 0)
    lsgan_b: float = 1.0  # lsgan: D's target for reals (1)
    lsgan_c: float = 1.0  # lsgan: G's target for fakes (1)

    def validate(self, where: str) -> None:
        if not 0 < self.real_target <= 1:
            raise UserError(f"{where}loss.real_target: must be in (0, 1], got {self.real_target}")
        if self.kind not in _SMOOTHABLE and self.real_target != 1.0:
            raise UserError(f"{where}loss.real_target: applies to loss.kind bce, nonsat and minimax only "
                            f"(got loss.kind {self.kind!r})")
        if self.gp_weight < 0:
            raise UserError(f"{where}loss.gp_weight: must be >= 0, got {self.gp_weight}")
        if self.wgan_clip <= 0:
            raise UserError(f"{where}loss.wgan_clip: must be > 0, got {self.wgan_clip}")

    def make(self):
        """The `gancli.losses.AdversarialLoss` of this section."""
        from gancli.losses import adversarial_loss

        return adversarial_loss(self.kind, real_target=self.real_target, lsgan_abc=(self.lsgan_a, self.lsgan_b, self.lsgan_c))

    def describe(self) -> str:
        """The dry-run line of the adversarial part."""
        from gancli.losses import LOSS_KINDS

        text = f"{self.kind}: {LOSS_KINDS.get(self.kind, LOSS_KINDS['nonsat'])}"
        if self.real_target != 1.0:
            text += f", real target {self.real_target:g}"
        extra = {"wgan": f", weights clipped to +-{self.wgan_clip:g}", "wgan-gp": f", gradient penalty {self.gp_weight:g}",
                 "lsgan": f", a {self.lsgan_a:g} b {self.lsgan_b:g} c {self.lsgan_c:g}"}
        return text + extra.get(self.kind, "")


@dataclass
class AdversarialTrainConfig(TrainConfig):
    """The training keys shared by the families of several D steps per G step (ResNet, DCGAN): the
    optimizer, BigGAN's EMA with a start step, the linear lr scaling rule, the adaptive D steps and the
    learning-rate schedule (gancli.train.schedules)."""

    optimizer: Literal["adam", "rmsprop"] = "adam"  # 'rmsprop': WGAN's choice (Arjovsky et al. 2017, Algorithm 1); betas unused then
    ema_decay: Optional[float] = None  # EMA decay per G step (BigGAN 0.9999); null: the ema_kimg half-life
    ema_start: int = 0  # with ema_decay: G steps before the EMA starts (BigGAN 20000); copied until then
    lr_ref_batch: Optional[int] = None  # scale g_lr and d_lr by batch / lr_ref_batch (null: as given)
    d_loss_threshold: Optional[float] = None  # extra D steps while the D loss is above this (SAGAN option, any loss)
    d_extra_steps: int = 0  # the most extra D steps per G step under d_loss_threshold
    lr_schedule: Literal["constant", "linear", "exponential", "cosine"] = "constant"  # lr multiplier over training (docs/dcgan.md)
    lr_decay_start_kimg: float = 0.0  # linear/exponential/cosine: the schedule starts here (constant lr before)
    lr_gamma: float = 0.99  # exponential: lr multiplier per kimg after lr_decay_start_kimg
    lr_period_kimg: float = 100.0  # cosine: length of the first annealing period (SGDR T_0) in kimg
    lr_period_mult: float = 1.0  # cosine: each period is this many times longer than the last (SGDR T_mult)
    lr_min: float = 0.0  # cosine: lowest multiplier (SGDR eta_min / lr)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UserError(f"{where}train.ema_decay: must be in [0, 1) or null, got {self.ema_decay}")
        if self.lr_ref_batch is not None:
            _positive(self.lr_ref_batch, f"{where}train.lr_ref_batch")
        for key in ("ema_start", "d_extra_steps", "lr_decay_start_kimg"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}train.{key}: must be >= 0, got {getattr(self, key)}")
        if (self.d_loss_threshold is None) != (self.d_extra_steps == 0):
            raise UserError(f"{where}train.d_loss_threshold and train.d_extra_steps: set both (extra D steps while the "
                            "D loss is above the threshold) or neither")
        if self.lr_schedule == "linear" and self.lr_decay_start_kimg >= self.total_kimg:
            raise UserError(f"{where}train.lr_decay_start_kimg: the linear decay must start before train.total_kimg "
                            f"({self.total_kimg:g}), got {self.lr_decay_start_kimg:g}")
        if not 0 < self.lr_gamma <= 1:
            raise UserError(f"{where}train.lr_gamma: must be in (0, 1], got {self.lr_gamma}")
        if self.lr_period_kimg <= 0:
            raise UserError(f"{where}train.lr_period_kimg: must be > 0, got {self.lr_period_kimg}")
        if self.lr_period_mult < 1:
            raise UserError(f"{where}train.lr_period_mult: must be >= 1, got {self.lr_period_mult}")
        if not 0 <= self.lr_min <= 1:
            raise UserError(f"{where}train.lr_min: must be in [0, 1], got {self.lr_min}")


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise UserError(f"{key}: must be a positive integer, got {value}")


# --------------------------------------------------------------------------------------------------
# Resolution rules (Family.check_resolution). Which sizes a family takes is a property of its networks:
# powers of two (style-based, progressive), base x 2^k (ResNet, DCGAN: they grow from a small base map by
# doubling), or multiples of the total downsampling factor (the image-to-image translators).

POWERS_OF_TWO = ", ".join(str(2**k) for k in range(2, 11))  # 4, 8, ..., 1024
DOUBLING_BASES = (4, 5, 6, 7)  # first feature map sizes of the doubling generators: one octave, so b is unique


def require_power_of_two(res: int, where: str, family: Family) -> None:
    if res < 4 or res & (res - 1):
        raise UserError(f"{where}data.resolution: the {family.title} family (model.kind {', '.join(family.kinds)}) "
                        f"needs a power of two ({POWERS_OF_TWO}), got {res}")


def doubling_base(res: int, min_doublings: int = 1) -> int | None:
    """The base b in DOUBLING_BASES with res = b * 2^k, k >= min_doublings (48 -> 6, 32 -> 4, 40 -> 5), or
    None when res has no such form (50 = 25 * 2)."""
    for b in DOUBLING_BASES:
        k = 0
        while b * 2**k < res:
            k += 1
        if b * 2**k == res and k >= min_doublings:
            return b
    return None


def doubling_sizes(limit: int, min_doublings: int = 1) -> list[int]:
    """Every b * 2^k (b in DOUBLING_BASES, k >= min_doublings) up to `limit`, sorted."""
    sizes = {b * 2**k for b in DOUBLING_BASES for k in range(min_doublings, 16) if b * 2**k <= limit}
    return sorted(sizes)


def nearest(sizes: list[int], res: int) -> str:
    """The allowed sizes next to `res`: the largest below and the smallest above, e.g. '48, 56'."""
    below = [s for s in sizes if s < res][-1:]
    above = [s for s in sizes if s > res][:1]
    return ", ".join(str(s) for s in below + above)


def require_doubling(res: int, where: str, what: str, min_doublings: int = 1) -> int:
    """The base b of res = b * 2^k (b in 4..7, k >= min_doublings); otherwise one line with the nearest
    allowed sizes. `what` says which network grows, e.g. 'a ResNet generator'."""
    base = doubling_base(res, min_doublings)
    if base is None:
        sizes = doubling_sizes(max(2 * res, 64), min_doublings)
        raise UserError(f"{where}data.resolution: {what} grows from a {min(DOUBLING_BASES)}x{min(DOUBLING_BASES)} to "
                        f"{max(DOUBLING_BASES)}x{max(DOUBLING_BASES)} map by doubling, so it takes b x 2^k px with b in "
                        f"{', '.join(map(str, DOUBLING_BASES))} and k >= {min_doublings} ({', '.join(map(str, sizes[:12]))}, ...), "
                        f"got {res}; nearest allowed: {nearest(sizes, res)}")
    return base


def require_multiple(res: int, where: str, factor: int, what: str, minimum: int = 0, key: str = "data.resolution") -> None:
    """res must be a multiple of `factor` (a network's total downsampling) and >= minimum; otherwise one
    line (naming `key`) with the nearest allowed sizes."""
    low = max(factor, -(-minimum // factor) * factor)  # the smallest allowed size
    if res % factor == 0 and res >= low:
        return
    sizes = [low] if res < low else [res // factor * factor, res // factor * factor + factor]
    raise UserError(f"{where}{key}: {what} takes {low} px or a multiple of {factor} above it ({low + factor}, "
                    f"{low + 2 * factor}, ...), got {res}; nearest allowed: {', '.join(map(str, sizes))}")


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
    non_square: ClassVar[bool] = False  # trains on H x W images (recipe data.width); the others need squares
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

    def check_image_shape(self, recipe, where: str) -> None:
        """The recipe's image size against what this family's networks take (called before `validate`):
        `data.width` (non-square) only where `non_square`, then `check_resolution`."""
        if recipe.data.width is not None and not self.non_square:
            raise UserError(f"{where}data.width: the {self.title} family (model.kind {', '.join(self.kinds)}) trains on "
                            f"square images only (data.resolution x data.resolution); remove data.width (non-square "
                            "training: the image-to-image families pix2pix, cyclegan, cut)")
        self.check_resolution(recipe, where)

    def check_resolution(self, recipe, where: str) -> None:
        """Refuse a `data.resolution` this family's networks cannot take, in one line naming the key and
        the allowed sizes. Called before `validate`. Default: powers of two >= 4 (the style-based and
        progressive families grow or halve by two from 4x4 all the way)."""
        require_power_of_two(recipe.data.resolution, where, self)

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

    # ----------------------------------------------------------------------------------------------
    # Data (what `data_kind` means): the dataset a run trains on and the stream its step reads.

    def open_dataset(self, recipe):
        """The training dataset of the recipe's `data` section (default: images and labels through
        `gancli.data.open_dataset`). It must offer `num_images`, `num_channels`, `c_dim` (and `labels`
        when c_dim > 0); `FamilyTraining.reals_grid` shows it."""
        from gancli.data import open_dataset

        d = recipe.data
        return open_dataset(d.source, d.random_crop or d.resolution, use_labels=d.use_labels, xflip=d.xflip,
                            max_size=d.max_size, any_size=d.random_crop is not None, allow_resize=d.allow_resize,
                            skip_bad=d.skip_bad, cache_max_gb=d.cache_max_gb)

    def data_plan(self, recipe) -> str | None:
        """The dry run's `storage` line: images, decoded size and where they are read from (index only);
        None for data that is not a `gancli.data.open_dataset` image set."""
        from gancli.data.dataset import storage_plan

        d = recipe.data
        return storage_plan(d.source, d.random_crop or d.resolution, allow_resize=d.allow_resize, max_size=d.max_size,
                            cache_max_gb=d.cache_max_gb)

    def data_stream(self, recipe, dataset, batch_rank: int, *, start_index: int, rank: int, world_size: int):
        """The endless, seeded, resumable stream the step reads with `Trainer.next_batch(n)`: anything
        with `take(n)` and `position` (samples of the global stream consumed; saved for the resume).
        Default: (images, labels) batches (`gancli.data.batches`), decoded by `data.workers` processes
        when the dataset streams from its source. A stream may have `close()` (the trainer calls it)."""
        import os

        from gancli.data import batches
        from gancli.data.loader import resolve_workers

        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE") or world_size)  # torchrun sets it on each node
        return batches(dataset, batch_rank, seed=recipe.train.seed, start_index=start_index, rank=rank,
                       world_size=world_size, workers=resolve_workers(recipe.data.workers, per_machine),
                       pin_memory=_trains_on_cuda(recipe))

    # ----------------------------------------------------------------------------------------------
    # Images in, images out (capability `image_in`)

    def translation_module(self, recipe, direction: str | None) -> str:
        """The module that translates in `direction` ('AtoB', 'BtoA'; None: the trained one)."""
        raise UserError(f"a {self.title} generator does not translate images")

    def translate(self, G, images: torch.Tensor) -> torch.Tensor:
        """Translated images (NCHW in [-1, 1]) for input images (NCHW in [-1, 1])."""
        raise UserError(f"a {self.title} generator does not translate images")

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        """Refuse truncation values this generator cannot use (one line)."""

    def sampling_truncation(self, recipe) -> tuple[float | None, int | None]:
        """(trunc, cutoff) that `gancli sample` uses when --trunc is not given (the recipe's sampling
        default, e.g. StyleGAN's psi 0.7 on the first 8 layers); (None, None): no truncation."""
        return None, None

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

    def grid(self, seeds: list[int], c):
        """The training grid (HWC uint8) written as fakes-NNNNNN.png: `render_grid`'s images, as square
        as possible. Translation families lay out input | output | target instead."""
        from gancli.render import grid_shape, make_grid, to_uint8

        images = self.render_grid(seeds, c)
        rows, cols = grid_shape(self.trainer.grid_size)
        return make_grid(to_uint8(images), rows, cols)

    def reals_grid(self):
        """The grid of training data written as reals.png (HWC uint8): a fair sample of the images."""
        import numpy as np

        from gancli.render import grid_shape, make_grid

        tr = self.trainer
        n = min(tr.grid_size, tr.dataset.num_images)
        picks = np.random.RandomState(0).choice(tr.dataset.num_images, n, replace=False)  # a fair sample
        images = np.stack([tr.dataset[int(i)][0] for i in picks]).transpose(0, 2, 3, 1)
        rows, cols = grid_shape(tr.grid_size)
        return make_grid(images, rows, cols)


def _trains_on_cuda(recipe) -> bool:
    """Whether the run's device is a GPU (its batches then come in pinned memory, for async copies)."""
    import torch

    return recipe.train.device != "cpu" and torch.cuda.is_available()


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
