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
from gancli.families.base import LossConfig, ModelConfig, TrainConfig

RECIPE_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# Schema. Field comments are shown by `gancli train --dry-run` and docs/recipes.md.


@dataclass
class DataConfig:
    source: str = "emoji"  # 'emoji' (built-in Twemoji), an image folder, or a training zip
    resolution: int = 64  # training resolution in pixels: the family decides which sizes (powers of two; ResNet, DCGAN: b x 2^k, b 4-7; translators: multiples of their downsampling; docs/datasets.md)
    width: Optional[int] = None  # non-square training (image-to-image families only): the crop width in px, data.resolution its height; null: square
    xflip: bool = False  # add horizontally mirrored copies (doubles the dataset)
    use_labels: bool = False  # class-conditional training from dataset.json labels
    max_size: Optional[int] = None  # use at most this many images (deterministic subset)
    allow_resize: bool = False  # resize images whose size differs from `resolution` when loading
    random_crop: Optional[int] = None  # training reals: the images' stored size; each is read as a random `resolution` crop (e.g. 80 for 64 px); evaluation uses the centre crop
    color_jitter: Optional[list[float]] = None  # training reals only: brightness, contrast, saturation, hue strengths, e.g. [0.1, 0.1, 0.1, 0.02]
    workers: Optional[int] = None  # processes per rank that decode a streamed dataset (null: CPU cores / ranks, at least 1; 0: decode in the training process)
    cache_max_gb: Optional[float] = None  # size limit of the decoded-image cache folder in GiB (null: $GANCLI_CACHE_MAX_GB, else 8); larger datasets stream from their source
    skip_bad: bool = False  # a corrupt image met while streaming is skipped (the next good image is read instead, one warning line) instead of stopping the run

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the training images: (resolution, width), square when width is null."""
        return self.resolution, self.width if self.width is not None else self.resolution

    def validate(self, where: str) -> None:
        if self.resolution < 4:  # which sizes above that: the family's own rule (Family.check_resolution)
            raise UserError(f"{where}data.resolution: must be at least 4 px, got {self.resolution}")
        if self.width is not None and self.width < 4:
            raise UserError(f"{where}data.width: must be at least 4 px or null (square), got {self.width}")
        if self.random_crop is not None and self.random_crop <= self.resolution:
            raise UserError(f"{where}data.random_crop: the stored size must be larger than data.resolution "
                            f"({self.resolution}), got {self.random_crop}")
        if self.color_jitter is not None:
            j = self.color_jitter
            if len(j) != 4 or not all(0 <= v < 1 for v in j[:3]) or not 0 <= j[3] <= 0.5:
                raise UserError(f"{where}data.color_jitter: expected [brightness, contrast, saturation, hue] with the first "
                                f"three in [0, 1) and hue in [0, 0.5] (turns), got {j}")
        if self.max_size is not None and self.max_size < 1:
            raise UserError(f"{where}data.max_size: must be a positive integer or null, got {self.max_size}")
        if self.workers is not None and self.workers < 0:
            raise UserError(f"{where}data.workers: must be a whole number >= 0 or null (one per CPU core), got {self.workers}")
        if self.cache_max_gb is not None and not self.cache_max_gb >= 0:
            raise UserError(f"{where}data.cache_max_gb: must be a number of GiB >= 0 or null (8, or $GANCLI_CACHE_MAX_GB), "
                            f"got {self.cache_max_gb}")


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

    def describe(self) -> str:
        """The dry-run's augment line: 'none', or the preset, target and how p moves."""
        if self.kind not in ("ada",):
            return self.kind
        moves = f" adaptive (0 to 1 in {self.speed_kimg:g} kimg)" if self.adaptive else " fixed"
        return f"{self.kind} ({self.pipe}, target {self.target:g}), p {self.p:g}{moves}"

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
    model: ModelConfig = field(default_factory=lambda: _default_family().model_config())  # the family's own model section
    loss: LossConfig = field(default_factory=lambda: _default_family().loss_config())  # the family's own loss section
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=lambda: _default_family().train_config())  # common keys + the family's extras
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
        for section in ("model", "loss", "train"):  # absent: the family's own defaults, not another family's
            data.setdefault(section, {})
        family = _family_of_data(data, origin)
        sections = {"model": family.model_config, "loss": family.loss_config, "train": family.train_config}
        recipe = _build(cls, data, origin, "", strict, sections=sections, family=family)
        recipe.validate(origin)
        return recipe

    @property
    def family(self):
        """The `gancli.families.Family` of model.kind."""
        from gancli.families import get_family

        return get_family(self.model.kind)

    def validate(self, origin: str) -> None:
        where = f"{origin}: "
        for section in (self.data, self.model, self.loss, self.augment, self.train, self.distributed, self.metrics):
            section.validate(where)
        self.family.check_image_shape(self, where)
        self.family.validate(self, where)
        batch_gpu = self.train.batch_gpu
        gpus = self.distributed.gpus
        if self.train.batch % gpus:
            raise UserError(f"{where}train.batch ({self.train.batch}) must be divisible by distributed.gpus ({gpus})")
        if batch_gpu is not None and (self.train.batch // gpus) % batch_gpu:
            raise UserError(
                f"{where}train.batch_gpu ({batch_gpu}) must divide the per-GPU batch "
                f"({self.train.batch} / {gpus} = {self.train.batch // gpus})"
            )


def _default_family():
    from gancli.families import DEFAULT_KIND, get_family

    return get_family(DEFAULT_KIND)


def _family_of_data(data: dict[str, Any], origin: str):
    """The family that `model.kind` of a recipe dictionary selects (the default kind when absent)."""
    from gancli.families import DEFAULT_KIND, get_family

    model = data.get("model")
    kind = model.get("kind", DEFAULT_KIND) if isinstance(model, dict) else DEFAULT_KIND
    return get_family(kind, f"{origin}: ")


def _foreign_key_hint(prefix: str, key: str, family) -> str:
    """' (it belongs to the X family ...)' when another family's section has this key."""
    from gancli.families import family_of_key

    section = prefix.rstrip(".")
    if family is None or section not in ("model", "loss", "train"):
        return ""
    other = family_of_key(section, str(key), exclude=family)
    if other is None:
        return ""
    return (f": belongs to the {other.title} family (model.kind {', '.join(other.kinds)}), not to the "
            f"{family.title} family (model.kind {', '.join(family.kinds)}); remove it")


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
        if dataclasses.is_dataclass(inner):
            return "a list of mappings"
        return f"a list of {_type_name(inner)}s"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, origin: str, key: str, strict: bool = True, family=None) -> Any:
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
                return _convert(arg, value, origin, key, strict, family)
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
        return _build(tp, value, origin, key + ".", strict, family=family)
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


def _build(cls: type, data: dict[str, Any], origin: str, prefix: str, strict: bool = True, *,
           sections: dict[str, type] | None = None, family=None) -> Any:
    """`cls(**data)` with every value checked; `sections` replaces the classes of some fields (the
    family's own model, loss and train sections)."""
    hints = dict(typing.get_type_hints(cls))
    hints.update(sections or {})
    names = [f.name for f in dataclasses.fields(cls)]
    if not strict:
        data = {k: v for k, v in data.items() if k in names}
    for key in data:
        if key not in names:
            foreign = _foreign_key_hint(prefix, key, family)
            if foreign:
                raise UserError(f"{origin}: {prefix}{key}{foreign}")
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserError(
                f"{origin}: unknown key {prefix}{key}{hint}; allowed in {prefix.rstrip('.') or 'the top level'}: "
                + ", ".join(names)
            )
    kwargs = {k: _convert(hints[k], v, origin, prefix + k, strict, family) for k, v in data.items()}
    return cls(**kwargs)


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise UserError(f"{key}: must be a positive integer, got {value}")


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


def _check_override_key(keys: list[str], value: Any, family) -> None:
    """An override must name a key of the schema (of the recipe's family, for model, loss and train);
    say so in terms of the flag, not of the file."""
    cls: Any = Recipe
    sections = {"model": family.model_config, "loss": family.loss_config, "train": family.train_config}
    for depth, part in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            raise UserError(f"--set {'.'.join(keys)}={value}: {'.'.join(keys[:depth])} is not a section")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            prefix = ".".join(keys[:depth]) + "." if depth else ""
            foreign = _foreign_key_hint(prefix, part, family)
            if foreign:
                raise UserError(f"--set {'.'.join(keys)}={value}: {prefix}{part}{foreign}")
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserError(f"--set {'.'.join(keys)}={value}: unknown key {prefix}{part}{hint}; allowed: {', '.join(names)}")
        cls = sections[part] if depth == 0 and part in sections else typing.get_type_hints(cls)[part]


def apply_overrides(data: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    data = deep_merge({}, data)
    kinds = [value for keys, value in overrides if keys == ["model", "kind"]]  # a new kind changes the schema
    probe = deep_merge(data, {"model": {"kind": kinds[-1]}}) if kinds and isinstance(data.get("model", {}), dict) else data
    family = _family_of_data(probe, "--set model.kind")
    for keys, value in overrides:
        _check_override_key(keys, value, family)
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


def load_recipe(spec: str | Path, overrides: list[tuple[list[str], Any]] | None = None) -> Recipe:
    """Find, read, inherit, override and validate a recipe.

    With `auto: true`, the family's auto settings (`Family.auto_settings`; StyleGAN2: the official
    `auto` configuration) are computed from the (overridden) resolution and GPU count and merged in;
    explicit command-line overrides still win over them.
    """
    path = find_recipe(str(spec))
    data = load_recipe_dict(path)
    if overrides:
        data = apply_overrides(data, overrides)
    if data.get("auto") is True:
        data_cfg, dist_cfg = data.get("data") or {}, data.get("distributed") or {}
        resolution, gpus = data_cfg.get("resolution", DataConfig.resolution), dist_cfg.get("gpus", DistributedConfig.gpus)
        if isinstance(resolution, int) and isinstance(gpus, int) and resolution >= 4 and gpus >= 1:
            family = _family_of_data(data, str(path))
            auto = family.auto_settings(resolution, gpus)
            if auto is None:
                raise UserError(f"{path}: auto: the {family.title} family has no automatic settings; remove `auto: true`")
            data = apply_overrides(deep_merge(data, auto), overrides or [])
    data.setdefault("name", path.stem)
    return Recipe.from_dict(data, origin=str(path))


def field_comments(family=None) -> dict[str, str]:
    """`section.key` -> the comment written beside the field in its dataclass (for docs and --dry-run).

    family: whose model, loss and train sections (None: the default family's)."""
    import inspect
    import re

    family = family or _default_family()
    comments: dict[str, str] = {}
    section_of: list[tuple[type, str]] = [
        (DataConfig, "data"), (AugmentConfig, "augment"), (DistributedConfig, "distributed"),
        (MetricsConfig, "metrics"), (Recipe, ""),
    ]
    for section, cls in (("model", family.model_config), ("loss", family.loss_config), ("train", family.train_config)):
        section_of += [(klass, section) for klass in reversed(cls.__mro__) if dataclasses.is_dataclass(klass)]
    for cls, section in section_of:
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+): .*?#\s*(.+)$", line)
            if m:
                comments[f"{section}.{m.group(1)}".lstrip(".")] = m.group(2).strip()
    return comments


def _rows(section: str, cls: type, values: dict[str, Any], comments: dict[str, str], keep=None) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f"| `{section}.{sub}` | {_type_name(hints[sub])} | `{value!r}` | {comments.get(f'{section}.{sub}', '')} |"
            for sub, value in values.items() if keep is None or sub in keep]


def schema_markdown() -> str:
    """The recipe reference tables (docs/recipes.md embeds them; a test keeps the two equal): the
    sections every recipe has, then each family's own model, loss and train keys."""
    from gancli.families import all_families
    from gancli.families.base import LossConfig as CommonLoss
    from gancli.families.base import ModelConfig as CommonModel
    from gancli.families.base import TrainConfig as CommonTrain

    common = {"model": CommonModel, "loss": CommonLoss, "train": CommonTrain}
    comments = field_comments()
    lines = ["### Every recipe", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    defaults = Recipe().to_dict()
    defaults.pop("format")
    hints = typing.get_type_hints(Recipe)
    for key, value in defaults.items():
        if key in common:
            names = [f.name for f in dataclasses.fields(common[key])]
            lines += _rows(key, common[key], value, comments, keep=names)
        elif isinstance(value, dict):
            lines += _rows(key, hints[key], value, comments)
        else:
            lines.append(f"| `{key}` | {_type_name(hints[key])} | `{value!r}` | {comments.get(key, '')} |")
    for family in all_families():
        comments = field_comments(family)
        lines += ["", f"### The {family.title} family (model.kind {', '.join(family.kinds)})", "",
                  "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for section, cls in (("model", family.model_config), ("loss", family.loss_config), ("train", family.train_config)):
            base_names = {f.name for f in dataclasses.fields(common[section])} - {"kind"}
            values = dataclasses.asdict(cls())
            lines += _rows(section, cls, values, comments, keep=[k for k in values if k not in base_names])
    return "\n".join(lines)
