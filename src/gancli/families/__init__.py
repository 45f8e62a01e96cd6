"""The registry of model families: `model.kind` -> the `Family` that trains and serves it.

A new family is a folder `families/<name>/` with a `Family` subclass (see `families/base.py` and
docs/families.md) and one line in `_BUILTIN` below. Families are imported lazily: looking one up
imports only its own `__init__` (no networks, no torch until it builds something).
"""

from __future__ import annotations

import importlib

from gancli.errors import UserError
from gancli.families.base import CAPABILITIES, LACKS, Family, FamilyTraining  # noqa: F401  (the public API)

DEFAULT_KIND = "stylegan2"  # model.kind of a recipe that names none

# name -> module holding `FAMILY`, the family object. One line per family.
_BUILTIN: dict[str, str] = {
    "stylegan2": "gancli.families.stylegan2",
    "resnet": "gancli.families.resnet",
    "pggan": "gancli.families.pggan",
    "stylegan": "gancli.families.stylegan",
    "dcgan": "gancli.families.dcgan",
    "vqvae2": "gancli.families.vqvae2",
    "pix2pix": "gancli.families.pix2pix",
    "cyclegan": "gancli.families.cyclegan",
    "cut": "gancli.families.cut",
}

_families: dict[str, Family] = {}  # loaded (or registered) families by name
_registered_kinds: dict[str, str] = {}  # model.kind -> family name, for families registered at run time


def register(family: Family) -> Family:
    """Add a family at run time (plug-ins, tests). Its kinds must be new."""
    for kind in family.kinds:
        owner = family_name_of(kind)
        if owner is not None and owner != family.name:
            raise ValueError(f"model.kind {kind!r} already belongs to the {owner} family")
    _families[family.name] = family
    for kind in family.kinds:
        _registered_kinds[kind] = family.name
    return family


def unregister(name: str) -> None:
    family = _families.pop(name, None)
    if family is not None:
        for kind in family.kinds:
            _registered_kinds.pop(kind, None)


def _load(name: str) -> Family:
    if name not in _families:
        _families[name] = importlib.import_module(_BUILTIN[name]).FAMILY
    return _families[name]


def all_families() -> list[Family]:
    for name in _BUILTIN:
        _load(name)
    return list(_families.values())


def family_name_of(kind: str) -> str | None:
    if kind in _registered_kinds:
        return _registered_kinds[kind]
    for family in all_families():
        if kind in family.kinds:
            return family.name
    return None


def all_kinds() -> list[str]:
    return [kind for family in all_families() for kind in family.kinds]


def get_family(kind: str, where: str = "") -> Family:
    """The family that trains `model.kind` `kind`; a one-line error naming the known kinds otherwise."""
    name = family_name_of(kind) if isinstance(kind, str) else None
    if name is None:
        raise UserError(f"{where}model.kind: unknown model kind {kind!r}; allowed: {', '.join(all_kinds())}")
    return _load(name) if name in _BUILTIN else _families[name]


def family_of_key(section: str, key: str, exclude: Family | None = None) -> Family | None:
    """The (first) other family whose `section` has `key`, for "belongs to" errors."""
    import dataclasses

    for family in all_families():
        if family is exclude:
            continue
        cls = {"model": family.model_config, "loss": family.loss_config, "train": family.train_config}[section]
        if key in {f.name for f in dataclasses.fields(cls)}:
            return family
    return None


def require(family: Family, kind: str, command: str, *capabilities: str) -> None:
    """Refuse a command in one line when the family lacks one of the capabilities it needs."""
    for cap in capabilities:
        if cap not in CAPABILITIES:
            raise KeyError(cap)
        if family.lacks(cap):
            hint = "; it translates images: use gancli translate" if "image_in" in family.capabilities else ""
            raise UserError(f"{command}: a {kind} generator {LACKS[cap]}{hint}")
