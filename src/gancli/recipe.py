"""Recipes: one YAML file per paper, a typed schema, `base:` inheritance, strict validation.

A recipe file looks like::

    base: stylegan2-ffhq.yaml        # optional; path relative to this file, or a built-in name
    name: stylegan2-ffhq256
    description: StyleGAN2 config 'paper256' (Karras et al. 2020, Table 1 / NVlabs cfg_specs).
    data:  {source: ~/ffhq256.zip, resolution: 256, xflip: true}
    model: {kind: stylegan2, z_dim: 512, w_dim: 512, mapping_layers: 8, channel_base: 16384}
    loss:  {kind: stylegan2, r1_gamma: 1.0}
    train: {batch: 64, total_kimg: 25000, g_lr: 0.0025, d_lr: 0.0025}

Every section is a dataclass below; the dataclass fields are the allowed keys and their types. An
unknown key, a wrong type or a value out of range is a `UserError` naming the file, the dotted key and
what is allowed. Command-line overrides (`--set train.batch=16`, or the explicit flags of `gancli
train`) are applied to the merged dictionary before validation, so they are checked the same way.

The resolved recipe (`Recipe.to_dict()`) is embedded in every checkpoint; `Recipe.from_dict()` reads
it back, so a checkpoint needs nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from gancli.errors import UserError

RECIPE_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# Schema. Field comments are shown by `gancli train --dry-run` and docs/recipes.md.


@dataclass
class DataConfig:
    source: str = "emoji"  # 'emoji' (built-in Twemoji), an image folder, or a training zip
    resolution: int = 64  # training resolution in pixels (a power of two)
    xflip: bool = False  # add horizontally mirrored copies (doubles the dataset)
    use_labels: bool = False  # class-conditional training from dataset.json labels
    max_size: Optional[int] = None  # use at most this many images (deterministic subset)
    allow_resize: bool = False  # resize images whose size differs from `resolution` when loading

    def validate(self, where: str) -> None:
        _power_of_two(self.resolution, f"{where}data.resolution", minimum=4)
        if self.max_size is not None and self.max_size < 1:
            raise UserError(f"{where}data.max_size: must be a positive integer or null, got {self.max_size}")


@dataclass
class ModelConfig:
    kind: Literal["stylegan2", "sngan", "sagan", "biggan"] = "stylegan2"  # network family: style-based, or the class-conditional ResNet family (docs/biggan.md)
    z_dim: int = 512  # input latent size
    w_dim: int = 512  # intermediate latent (W) size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995  # decay of the tracked average W (for truncation), as official StyleGAN2
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512  # upper bound on feature maps per layer
    num_fp16_res: int = 4  # run the N highest resolutions in float16 (GPU only; float32 on CPU)
    conv_clamp: Optional[float] = 256  # clamp convolution outputs to +-conv_clamp (null: off)
    g_architecture: Literal["orig", "skip", "resnet"] = "skip"  # generator: toRGB skips (StyleGAN2 default)
    d_architecture: Literal["orig", "skip", "resnet"] = "resnet"  # discriminator: residual blocks (default)
    mbstd_group_size: int = 4  # minibatch standard deviation group size
    mbstd_num_channels: int = 1  # minibatch standard deviation features (0: off)
    g_ch: int = 64  # ResNet family: generator base width (block channels = g_ch * multiplier)
    d_ch: int = 64  # ResNet family: discriminator base width
    g_ch_mult: Optional[list[int]] = None  # ResNet family: G width multipliers, block inputs then output (null: paper table)
    d_ch_mult: Optional[list[int]] = None  # ResNet family: D width multipliers per block (null: paper table)
    bottom_width: int = 4  # ResNet family: size of G's first feature map (resolution = bottom_width * 2^blocks)
    attn_res: list[int] = field(default_factory=list)  # ResNet family: self-attention at these resolutions in G and D (SAGAN)
    shared_dim: int = 0  # ResNet family: BigGAN shared class embedding size (0: per-layer class embeddings)
    hier: bool = False  # ResNet family: BigGAN hierarchical latents (z split across G's blocks)
    g_sn: bool = False  # ResNet family: spectral norm in G too (SAGAN, BigGAN); D always has it
    sn_iters: int = 1  # ResNet family: spectral-norm power iterations per training step
    init: Literal["ortho", "xavier", "default"] = "xavier"  # ResNet family: weight init ('ortho': BigGAN)

    def validate(self, where: str) -> None:
        if self.kind != "stylegan2":
            for key in ("g_ch", "d_ch", "bottom_width", "sn_iters"):
                _positive(getattr(self, key), f"{where}model.{key}")
            for key in ("g_ch_mult", "d_ch_mult"):
                if getattr(self, key) is not None and (not getattr(self, key) or min(getattr(self, key)) < 1):
                    raise UserError(f"{where}model.{key}: must be a non-empty list of positive integers or null")
            if self.shared_dim < 0:
                raise UserError(f"{where}model.shared_dim: must be >= 0, got {self.shared_dim}")
        for key in ("z_dim", "w_dim", "channel_base", "channel_max", "mbstd_group_size"):
            _positive(getattr(self, key), f"{where}model.{key}")
        if self.mapping_layers < 1:
            raise UserError(f"{where}model.mapping_layers: must be at least 1, got {self.mapping_layers}")
        if self.num_fp16_res < 0 or self.mbstd_num_channels < 0:
            raise UserError(f"{where}model: num_fp16_res and mbstd_num_channels must be >= 0")


@dataclass
class LossConfig:
    kind: Literal["stylegan2", "hinge", "bce"] = "stylegan2"  # 'stylegan2': logistic + R1/path length; 'hinge', 'bce': ResNet family
    r1_gamma: float = 10.0  # R1 regularization weight (gamma); 0 disables
    r1_interval: int = 16  # lazy regularization: R1 every N minibatches (0 or 1: every step)
    pl_weight: float = 2.0  # path length regularization weight; 0 disables
    pl_decay: float = 0.01  # decay of the running path-length mean
    pl_batch_shrink: int = 2  # path length penalty on batch / shrink images
    pl_interval: int = 4  # lazy regularization: path length every N minibatches
    style_mixing_prob: float = 0.9  # probability of style mixing regularization
    real_target: float = 1.0  # bce: target for reals (one-sided label smoothing, e.g. 0.9)
    ortho_reg: float = 0.0  # hinge/bce: BigGAN off-diagonal orthogonal regularization of G (1e-4 in the paper)

    def validate(self, where: str) -> None:
        if not 0 < self.real_target <= 1:
            raise UserError(f"{where}loss.real_target: must be in (0, 1], got {self.real_target}")
        if self.ortho_reg < 0:
            raise UserError(f"{where}loss.ortho_reg: must be >= 0, got {self.ortho_reg}")
        if not 0 <= self.style_mixing_prob <= 1:
            raise UserError(f"{where}loss.style_mixing_prob: must be in [0, 1], got {self.style_mixing_prob}")
        for key in ("r1_gamma", "pl_weight", "pl_decay", "r1_interval", "pl_interval"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}loss.{key}: must be >= 0, got {getattr(self, key)}")
        _positive(self.pl_batch_shrink, f"{where}loss.pl_batch_shrink")


@dataclass
class AugmentConfig:
    kind: Literal["none", "ada"] = "none"  # 'ada': adaptive discriminator augmentation (StyleGAN2-ADA)
    pipe: Literal["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"] = "bgc"  # preset of the ADA paper (docs/training.md)
    p: float = 0.0  # initial augmentation probability
    adaptive: bool = True  # tune p from the overfitting heuristic; false keeps p fixed
    target: float = 0.6  # target value of r_t = E[sign(D(real))]
    speed_kimg: float = 500.0  # images (in thousands) for p to go from 0 to 1
    interval: int = 4  # adjust p every N minibatches
    # Per-op multipliers: an op is applied to an image with probability p * multiplier.
    xflip: Optional[float] = None  # x-flip: probability multiplier (null: 1 if the preset has it, else 0)
    rotate90: Optional[float] = None  # 90-degree rotations: probability multiplier (null: 1 if the preset has it, else 0)
    xint: Optional[float] = None  # integer translation: probability multiplier (null: 1 if the preset has it, else 0)
    scale: Optional[float] = None  # isotropic scaling: probability multiplier (null: 1 if the preset has it, else 0)
    rotate: Optional[float] = None  # arbitrary rotation: probability multiplier (null: 1 if the preset has it, else 0)
    aniso: Optional[float] = None  # anisotropic scaling: probability multiplier (null: 1 if the preset has it, else 0)
    xfrac: Optional[float] = None  # fractional translation: probability multiplier (null: 1 if the preset has it, else 0)
    brightness: Optional[float] = None  # brightness: probability multiplier (null: 1 if the preset has it, else 0)
    contrast: Optional[float] = None  # contrast: probability multiplier (null: 1 if the preset has it, else 0)
    lumaflip: Optional[float] = None  # luma flip: probability multiplier (null: 1 if the preset has it, else 0)
    hue: Optional[float] = None  # hue rotation: probability multiplier (null: 1 if the preset has it, else 0)
    saturation: Optional[float] = None  # saturation: probability multiplier (null: 1 if the preset has it, else 0)
    imgfilter: Optional[float] = None  # image-space filtering (per frequency band): probability multiplier (null: 1 if the preset has it, else 0)
    noise: Optional[float] = None  # additive RGB noise: probability multiplier (null: 1 if the preset has it, else 0)
    cutout: Optional[float] = None  # cutout: probability multiplier (null: 1 if the preset has it, else 0)

    def validate(self, where: str) -> None:
        if not 0 <= self.p <= 1:
            raise UserError(f"{where}augment.p: must be in [0, 1], got {self.p}")
        if not 0 < self.target < 1:
            raise UserError(f"{where}augment.target: must be in (0, 1), got {self.target}")
        _positive(self.interval, f"{where}augment.interval")
        if self.speed_kimg <= 0:
            raise UserError(f"{where}augment.speed_kimg: must be > 0, got {self.speed_kimg}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("Optional[float]", Optional[float]) and value is not None and value < 0:
                raise UserError(f"{where}augment.{f.name}: a multiplier must be >= 0 or null, got {value}")


@dataclass
class TrainConfig:
    batch: int = 32  # global minibatch size (all GPUs together)
    batch_gpu: Optional[int] = None  # per-device batch; smaller than batch/gpus means gradient accumulation
    total_kimg: float = 25000  # training length in thousands of real images shown to D
    g_lr: float = 0.002  # generator learning rate
    d_lr: float = 0.002  # discriminator learning rate
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])  # Adam betas
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
    threads: Optional[int] = None  # CPU threads for torch (null: torch's default)
    ema_decay: Optional[float] = None  # ResNet family: EMA decay per G step (BigGAN 0.9999); null: the ema_kimg half-life
    ema_start: int = 0  # ResNet family, with ema_decay: G steps before the EMA starts (BigGAN 20000); copied until then
    lr_ref_batch: Optional[int] = None  # ResNet family: scale g_lr and d_lr by batch / lr_ref_batch (null: as given)
    d_loss_threshold: Optional[float] = None  # ResNet family (SAGAN option): extra D steps while the D loss is above this
    d_extra_steps: int = 0  # ResNet family: the most extra D steps per G step under d_loss_threshold
    standing_stats: int = 0  # ResNet family: batches of standing batch-norm statistics for G_ema at each snapshot (0: off)
    freeze_d: int = 0  # FreezeD: freeze the first N layers of D, counted from the highest resolution

    def validate(self, where: str) -> None:
        _positive(self.batch, f"{where}train.batch")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UserError(f"{where}train.ema_decay: must be in [0, 1) or null, got {self.ema_decay}")
        if self.lr_ref_batch is not None:
            _positive(self.lr_ref_batch, f"{where}train.lr_ref_batch")
        for key in ("ema_start", "d_extra_steps", "standing_stats", "keep_snapshots"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}train.{key}: must be >= 0, got {getattr(self, key)}")
        if (self.d_loss_threshold is None) != (self.d_extra_steps == 0):
            raise UserError(f"{where}train.d_loss_threshold and train.d_extra_steps: set both (extra D steps while the "
                            "D loss is above the threshold) or neither")
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
        if self.freeze_d < 0:
            raise UserError(f"{where}train.freeze_d: must be >= 0, got {self.freeze_d}")


@dataclass
class DistributedConfig:
    gpus: int = 1  # processes (GPUs) on this machine; torchrun's WORLD_SIZE overrides
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # 'auto': NCCL on GPUs, gloo on CPU
    timeout: float = 600  # seconds a collective may wait for the other processes before the job fails

    def validate(self, where: str) -> None:
        _positive(self.gpus, f"{where}distributed.gpus")
        if self.timeout <= 0:
            raise UserError(f"{where}distributed.timeout: must be > 0 seconds, got {self.timeout}")


@dataclass
class MetricsConfig:
    names: list[str] = field(default_factory=list)  # metrics computed during training: fid, kid, pr, is, ppl
    interval_kimg: Optional[float] = None  # compute every N kimg and at the end (null: at every snapshot)
    num: int = 50000  # generated images per metric (all real images are used)

    def validate(self, where: str) -> None:
        allowed = ("fid", "kid", "pr", "is", "ppl")
        for name in self.names:
            if name not in allowed:
                raise UserError(f"{where}metrics.names: unknown metric {name!r}; allowed: {', '.join(allowed)}")
        if self.num < 2:
            raise UserError(f"{where}metrics.num: must be at least 2, got {self.num}")
        if self.interval_kimg is not None and self.interval_kimg <= 0:
            raise UserError(f"{where}metrics.interval_kimg: must be > 0 or null, got {self.interval_kimg}")


@dataclass
class Recipe:
    name: str = "recipe"  # run name; runs go to runs/<name>-NNNNN/
    description: str = ""  # what this recipe reproduces
    source: str = ""  # where the settings come from (paper table, official config)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    ops: Literal["auto", "cuda", "ref"] = "auto"  # low-level kernels: CUDA when it builds, else reference
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    auto: bool = False  # derive batch, channels, lr, R1 gamma, EMA from resolution and GPUs (official 'auto')

    # ----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECIPE_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "recipe", *, strict: bool = True) -> Recipe:
        """Validate a plain dictionary (a merged YAML file or a checkpoint's embedded recipe).

        strict=False (for recipes embedded in checkpoints) drops keys this version no longer has,
        so a checkpoint keeps loading after a setting it recorded was retired; types are still checked.
        """
        data = dict(data)
        fmt = data.pop("format", RECIPE_FORMAT)
        if fmt != RECIPE_FORMAT:
            raise UserError(f"{origin}: recipe format {fmt!r} is not supported (this gancli reads format {RECIPE_FORMAT})")
        data.pop("base", None)
        recipe = _build(cls, data, origin, "", strict)
        recipe.validate(origin)
        return recipe

    def validate(self, origin: str) -> None:
        where = f"{origin}: "
        for section in (self.data, self.model, self.loss, self.augment, self.train, self.distributed, self.metrics):
            section.validate(where)
        _check_family(self, where)
        batch_gpu = self.train.batch_gpu
        gpus = self.distributed.gpus
        if self.train.batch % gpus:
            raise UserError(f"{where}train.batch ({self.train.batch}) must be divisible by distributed.gpus ({gpus})")
        if batch_gpu is not None and (self.train.batch // gpus) % batch_gpu:
            raise UserError(
                f"{where}train.batch_gpu ({batch_gpu}) must divide the per-GPU batch "
                f"({self.train.batch} / {gpus} = {self.train.batch // gpus})"
            )


# Keys that only one network family reads; setting one (to a non-default value) for the other family
# is an error rather than a silently ignored setting.
RESNET_FAMILY = ("sngan", "sagan", "biggan")
STYLE_ONLY = {
    "model": ("w_dim", "mapping_layers", "mapping_lr_multiplier", "w_avg_beta", "channel_base", "channel_max",
              "num_fp16_res", "conv_clamp", "g_architecture", "d_architecture", "mbstd_group_size", "mbstd_num_channels"),
    "loss": ("r1_gamma", "r1_interval", "pl_weight", "pl_decay", "pl_batch_shrink", "pl_interval", "style_mixing_prob"),
    "train": ("freeze_d",),
}
RESNET_ONLY = {
    "model": ("g_ch", "d_ch", "g_ch_mult", "d_ch_mult", "bottom_width", "attn_res", "shared_dim", "hier", "g_sn",
              "sn_iters", "init"),
    "loss": ("real_target", "ortho_reg"),
    "train": ("ema_decay", "ema_start", "lr_ref_batch", "d_loss_threshold", "d_extra_steps", "standing_stats"),
}


def _check_family(recipe: Recipe, where: str) -> None:
    """Model and loss kinds belong together, and no key of the other family is set."""
    resnet = recipe.model.kind in RESNET_FAMILY
    if resnet != (recipe.loss.kind in ("hinge", "bce")):
        allowed = "hinge or bce" if resnet else "stylegan2"
        raise UserError(f"{where}loss.kind: {recipe.loss.kind!r} does not train model.kind {recipe.model.kind!r}; "
                        f"use loss.kind {allowed}")
    if recipe.loss.kind != "bce" and recipe.loss.real_target != 1.0:
        raise UserError(f"{where}loss.real_target: applies to loss.kind bce only (got loss.kind {recipe.loss.kind!r})")
    if resnet:  # the generator grows from bottom_width by doubling; attention goes where a block outputs
        m, res = recipe.model, recipe.data.resolution
        sizes = [m.bottom_width * 2**k for k in range(1, 12) if m.bottom_width * 2**k <= res]
        if res not in sizes:
            raise UserError(f"{where}model.bottom_width: {m.bottom_width} does not double up to data.resolution {res} "
                            "(the resolution must be bottom_width * 2^k)")
        bad = [r for r in m.attn_res if r not in sizes]
        if bad:
            raise UserError(f"{where}model.attn_res: no generator block outputs {bad[0]} px (they output "
                            f"{', '.join(map(str, sizes))} px)")
    other = STYLE_ONLY if resnet else RESNET_ONLY
    for section, keys in other.items():
        cfg, default = getattr(recipe, section), type(getattr(recipe, section))()
        for key in keys:
            if getattr(cfg, key) != getattr(default, key):
                family = "model.kind stylegan2" if resnet else "the ResNet family (model.kind sngan, sagan, biggan)"
                raise UserError(f"{where}{section}.{key}: applies only to {family}, not to model.kind "
                                f"{recipe.model.kind!r}; remove it")


# --------------------------------------------------------------------------------------------------
# Building typed objects from dictionaries with precise errors.


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}s"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, origin: str, key: str, strict: bool = True) -> Any:
    """Check `value` against the annotation `tp`; return it converted (int -> float where allowed)."""
    t_origin = typing.get_origin(tp)
    bad = UserError(f"{origin}: {key}: expected {_type_name(tp)}, got {value!r}")
    if t_origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, float) and not math.isfinite(value) and float in args:
            return _convert(float, value, origin, key, strict)  # say "finite", not "expected a number"
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, origin, key, strict)
            except UserError:
                pass
        raise bad
    if t_origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise bad
        return value
    if t_origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise bad
        return [_convert(inner, v, origin, f"{key}[{i}]", strict) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, origin, key + ".", strict)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):  # .nan / .inf in YAML, `--kimg nan` on the command line
            raise UserError(f"{origin}: {key}: must be a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported recipe field type {tp!r}")  # a bug in the schema, not user input


def _build(cls: type, data: dict[str, Any], origin: str, prefix: str, strict: bool = True) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not strict:
        data = {k: v for k, v in data.items() if k in names}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserError(
                f"{origin}: unknown key {prefix}{key}{hint}; allowed in {prefix.rstrip('.') or 'the top level'}: "
                + ", ".join(names)
            )
    kwargs = {k: _convert(hints[k], v, origin, prefix + k, strict) for k, v in data.items()}
    return cls(**kwargs)


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise UserError(f"{key}: must be a positive integer, got {value}")


def _power_of_two(value: int, key: str, minimum: int) -> None:
    if value < minimum or value & (value - 1):
        raise UserError(f"{key}: must be a power of two >= {minimum}, got {value}")


# --------------------------------------------------------------------------------------------------
# Files, inheritance and overrides.


def builtin_recipe_dir() -> Path:
    """The `recipes/` folder shipped with gancli (repository root in an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "recipes", here.parents[1] / "recipes"):
        if candidate.is_dir():
            return candidate
    return here.parents[1] / "recipes"


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in builtin_recipe_dir().glob("*.yaml"))


def find_recipe(spec: str, relative_to: Path | None = None) -> Path:
    """A recipe path: as given, relative to `relative_to`, or the name of a built-in recipe.

    Only a bare name (no '/', no .yaml) means a built-in recipe; a path is a path, and a missing one is
    an error, never silently replaced by the built-in recipe of the same file name.
    """
    candidates = []
    path = Path(spec).expanduser()
    bare_name = not spec.endswith((".yaml", ".yml")) and "/" not in spec and os.sep not in spec
    if relative_to is not None and not path.is_absolute():
        candidates.append(relative_to / path)
    if relative_to is None or path.is_absolute():
        candidates.append(path)
    if bare_name:
        candidates.append(builtin_recipe_dir() / f"{spec}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.exists():
            raise UserError(f"{candidate}: is a {'directory' if candidate.is_dir() else 'special file'}, expected a recipe YAML file")
    if not bare_name:
        where = f" (looked for {candidates[0]})" if relative_to is not None and not path.is_absolute() else ""
        raise UserError(f"{spec}: recipe file not found{where}; a path is only a path: built-in recipes are "
                        f"given by bare name, without .yaml ({', '.join(builtin_recipes())})")
    raise UserError(
        f"{spec}: recipe not found (give a path to a .yaml file or a built-in recipe: {', '.join(builtin_recipes())})"
    )


class _AliasRefused(Exception):
    def __init__(self, mark: Any, what: str):
        super().__init__(what)
        self.mark, self.what = mark, what


def _yaml_load(text: str) -> Any:
    """yaml.safe_load, refusing anchors and aliases (`&a`, `*a`): not part of the recipe format, and an
    alias bomb (billion laughs) would expand a small file into gigabytes."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise _AliasRefused(event.start_mark, f"alias *{event.anchor}")
            if getattr(event, "anchor", None) is not None:
                raise _AliasRefused(event.start_mark, f"anchor &{event.anchor}")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: is not a text file (expected a YAML recipe)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read recipe ({e.strerror})") from None
    try:
        data = _yaml_load(text)
    except _AliasRefused as e:
        raise UserError(f"{path}: YAML {e.what} at line {e.mark.line + 1}: anchors and aliases are not allowed "
                        "in recipes; write the values out") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: invalid YAML{at}: {problem}") from None
    if data is None:
        raise UserError(f"{path}: recipe is empty (expected a mapping with sections such as data, model, train)")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping (key: value), got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_recipe_dict(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it inherits through `base:`, merged (child wins)."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise UserError(f"{path}: `base:` inheritance loops ({cycle})")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"{path}: base: expected a file name (string), got {base!r}")
    try:
        base_path = find_recipe(base, relative_to=path.parent)
    except UserError as e:
        raise UserError(f"{path}: base: {e}") from None
    return deep_merge(load_recipe_dict(base_path, (*_chain, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.batch=16` -> (['train', 'batch'], 16). Values are read as YAML scalars/lists."""
    import yaml

    if "=" not in text:
        raise UserError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. --set train.batch=16")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. --set train.batch=16")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except _AliasRefused as e:
        raise UserError(f"--set {text}: YAML {e.what}: anchors and aliases are not allowed in values") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _check_override_key(keys: list[str], value: Any) -> None:
    """An override must name a key of the schema; say so in terms of the flag, not of the file."""
    cls: Any = Recipe
    for depth, part in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            raise UserError(f"--set {'.'.join(keys)}={value}: {'.'.join(keys[:depth])} is not a section")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            prefix = ".".join(keys[:depth]) + "." if depth else ""
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserError(f"--set {'.'.join(keys)}={value}: unknown key {prefix}{part}{hint}; allowed: {', '.join(names)}")
        cls = typing.get_type_hints(cls)[part]


def apply_overrides(data: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    data = deep_merge({}, data)
    for keys, value in overrides:
        _check_override_key(keys, value)
        node = data
        for part in keys[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UserError(f"--set {'.'.join(keys)}: {part} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def auto_settings(resolution: int, gpus: int) -> dict[str, Any]:
    """The official StyleGAN2-ADA `auto` configuration for a resolution and GPU count.

    batch = max(min(gpus * min(4096 // res, 32), 64), gpus); minibatch-std group min(batch // gpus, 4);
    feature maps x1 from 512 px (else x0.5); lr 0.002 at 1024 px (else 0.0025);
    R1 gamma = 0.0002 * res^2 / batch; EMA half-life batch * 10 / 32 kimg with ramp-up 0.05; 2 mapping layers.
    """
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    lr = 0.002 if resolution >= 1024 else 0.0025
    return {
        "model": {"mapping_layers": 2, "channel_base": int((1 if resolution >= 512 else 0.5) * 32768),
                  "channel_max": 512, "mbstd_group_size": min(batch // gpus, 4)},
        "loss": {"r1_gamma": 0.0002 * resolution**2 / batch},
        "train": {"batch": batch, "g_lr": lr, "d_lr": lr, "ema_kimg": batch * 10 / 32, "ema_rampup": 0.05},
    }


def load_recipe(spec: str | Path, overrides: list[tuple[list[str], Any]] | None = None) -> Recipe:
    """Find, read, inherit, override and validate a recipe.

    With `auto: true`, the official auto settings are computed from the (overridden) resolution and
    GPU count and merged in; explicit command-line overrides still win over them.
    """
    path = find_recipe(str(spec))
    data = load_recipe_dict(path)
    if overrides:
        data = apply_overrides(data, overrides)
    if data.get("auto") is True:
        data_cfg, dist_cfg = data.get("data") or {}, data.get("distributed") or {}
        resolution, gpus = data_cfg.get("resolution", DataConfig.resolution), dist_cfg.get("gpus", DistributedConfig.gpus)
        if isinstance(resolution, int) and isinstance(gpus, int) and resolution >= 4 and gpus >= 1:
            data = apply_overrides(deep_merge(data, auto_settings(resolution, gpus)), overrides or [])
    data.setdefault("name", path.stem)
    return Recipe.from_dict(data, origin=str(path))


def field_comments() -> dict[str, str]:
    """`section.key` -> the comment written beside the field in this file (for docs and --dry-run)."""
    import inspect
    import re

    comments: dict[str, str] = {}
    section_of = {
        DataConfig: "data", ModelConfig: "model", LossConfig: "loss", AugmentConfig: "augment",
        TrainConfig: "train", DistributedConfig: "distributed", MetricsConfig: "metrics", Recipe: "",
    }
    for cls, section in section_of.items():
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+): .*?#\s*(.+)$", line)
            if m:
                comments[f"{section}.{m.group(1)}".lstrip(".")] = m.group(2).strip()
    return comments


def schema_markdown() -> str:
    """The recipe reference table (docs/recipes.md embeds it; a test keeps the two equal)."""
    comments = field_comments()
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    defaults = Recipe().to_dict()
    defaults.pop("format")
    hints = typing.get_type_hints(Recipe)
    for key, value in defaults.items():
        if isinstance(value, dict):
            section_hints = typing.get_type_hints(hints[key])
            for sub, sub_value in value.items():
                lines.append(f"| `{key}.{sub}` | {_type_name(section_hints[sub])} | `{sub_value!r}` | "
                             f"{comments.get(f'{key}.{sub}', '')} |")
        else:
            lines.append(f"| `{key}` | {_type_name(hints[key])} | `{value!r}` | {comments.get(key, '')} |")
    return "\n".join(lines)
