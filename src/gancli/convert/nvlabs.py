"""Import official NVlabs StyleGAN2-ADA (PyTorch) network pickles, safely.

`load_nvlabs_pickle` reads the file with `gancli.convert.safe_pickle` (no code from the file runs;
the embedded module source is ignored) and turns each persistent network (`G_ema`, `G`, `D`) into
`NetworkRecord(class_name, init_kwargs, state_dict)`: the constructor keyword arguments the official
code recorded, and a flat state dict rebuilt by walking the modules' `_parameters`, `_buffers` and
`_modules` (the same names `nn.Module.state_dict()` gives). gancli's StyleGAN2 networks use the
official constructor arguments and parameter names, so they load these with `strict=True`.

`recipe_from_nvlabs_kwargs` maps the constructor arguments onto a gancli `Recipe`; an argument
that the recipe cannot express and that is not at its official default is an error (nothing is
silently dropped). `gancli.convert.convert_to_snapshot` writes a gancli snapshot that `gancli sample` and
`gancli.models.load_generator` read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from gancli.convert.safe_pickle import PersistentObject, safe_load
from gancli.errors import UserError
from gancli.recipe import Recipe

SOURCE_FORMAT = "nvlabs-stylegan2-ada"
NETWORK_KEYS = ("G_ema", "G", "D")

__all__ = [
    "NetworkRecord",
    "load_nvlabs_pickle",
    "recipe_from_nvlabs_kwargs",
    "open_nvlabs",
]


class NetworkRecord(NamedTuple):
    class_name: str  # 'Generator' or 'Discriminator'
    init_kwargs: dict[str, Any]  # official constructor keyword arguments (plain dicts)
    state_dict: dict[str, Any]  # flat {dotted name: tensor}, parameters and persistent buffers


# ---------------------------------------------------------------------------------------------------
# Reading the pickle


def _plain(value: Any) -> Any:
    """EasyDicts, OrderedDicts and tuples inside kwargs -> plain dicts and lists; numpy scalars -> numbers."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flat_state(obj: PersistentObject, prefix: str, out: dict[str, Any], where: str) -> None:
    import torch

    st = obj.state
    skip = st.get("_non_persistent_buffers_set") or set()
    for attr in ("_parameters", "_buffers"):
        items = st.get(attr) or {}
        if not isinstance(items, dict):
            raise UserError(f"{where}: is not a valid network pickle ({prefix or 'network'} {attr} is not a dict)")
        for name, t in items.items():
            if t is None or (attr == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise UserError(f"{where}: is not a valid network pickle ({prefix}{name} is not a tensor)")
            out[f"{prefix}{name}"] = t
    for name, sub in (st.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentObject):
            raise UserError(f"{where}: is not a valid network pickle (submodule {prefix}{name} is not a network module)")
        _flat_state(sub, f"{prefix}{name}.", out, where)


def load_nvlabs_pickle(path: str | os.PathLike[str]) -> dict[str, NetworkRecord]:
    """{'G_ema': NetworkRecord, 'G': ..., 'D': ...} (those present; G_ema is required)."""
    path = Path(path)
    data = safe_load(path)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentObject):
        raise UserError(f"{path}: is not an official StyleGAN2-ADA network pickle (it has no G_ema network)")
    out: dict[str, NetworkRecord] = {}
    for key in NETWORK_KEYS:
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, PersistentObject):
            raise UserError(f"{path}: is not a valid network pickle ({key} is not a network)")
        kwargs = obj.state.get("_init_kwargs")
        args = obj.state.get("_init_args") or ()
        if not isinstance(kwargs, dict) or args:
            raise UserError(f"{path}: {key} does not record its constructor keyword arguments; cannot rebuild it")
        sd: dict[str, Any] = {}
        _flat_state(obj, "", sd, str(path))
        out[key] = NetworkRecord(obj.class_name, _plain(kwargs), sd)
    return out


# ---------------------------------------------------------------------------------------------------
# Building gancli networks from the records


def _load_strict(net: Any, state: dict[str, Any], where: str) -> None:
    mine = net.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    if missing or unexpected:
        raise UserError(
            f"{where}: weights do not match a StyleGAN2 network of its recorded configuration "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); StyleGAN3 and other variants are not supported"
        )
    for name, t in state.items():
        if tuple(mine[name].shape) != tuple(t.shape):
            raise UserError(f"{where}: weight {name} has shape {list(t.shape)}, expected {list(mine[name].shape)}")
    net.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------------
# Recipe from the constructor arguments

# Official constructor defaults of every argument the recipe does NOT express. A file whose value
# differs from these cannot be represented by a gancli recipe and is refused, naming the argument.
_G_FIXED = {
    "mapping_kwargs.embed_features": None,
    "mapping_kwargs.layer_features": None,
    "mapping_kwargs.activation": "lrelu",
    "synthesis_kwargs.resample_filter": [1, 3, 3, 1],
    "synthesis_kwargs.use_noise": True,
    "synthesis_kwargs.activation": "lrelu",
    "synthesis_kwargs.kernel_size": 3,
}
_D_FIXED = {
    "cmap_dim": None,
    "block_kwargs.activation": "lrelu",
    "block_kwargs.resample_filter": [1, 3, 3, 1],
    "epilogue_kwargs.activation": "lrelu",
    "mapping_kwargs.num_layers": 8,
    "mapping_kwargs.embed_features": None,
    "mapping_kwargs.layer_features": None,
    "mapping_kwargs.activation": "lrelu",
    "mapping_kwargs.lr_multiplier": 0.01,
}
# Arguments that change neither the weights nor the outputs (memory layout, training-time freezing).
_IGNORABLE = {"synthesis_kwargs.fp16_channels_last", "block_kwargs.fp16_channels_last", "block_kwargs.freeze_layers"}


def _flatten(kwargs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if isinstance(v, dict) and k.endswith("_kwargs"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Constructor arguments that only StyleGAN3's synthesis network has (NVlabs stylegan3, networks_stylegan3.py).
STYLEGAN3_ONLY_KWARGS = {"magnitude_ema_beta", "first_cutoff", "first_stopband", "last_stopband_rel",
                         "margin_size", "conv_kernel", "use_radial_filters", "num_critical", "filter_size",
                         "lrelu_upsampling"}


def recipe_from_nvlabs_kwargs(
    g_kwargs: dict[str, Any],
    d_kwargs: dict[str, Any] | None,
    resolution: int,
    c_dim: int,
    *,
    name: str = "converted",
    origin: str = "network file",
) -> Recipe:
    """A gancli Recipe (model kind stylegan2) equivalent to the official G and D constructor kwargs.

    Raises UserError naming the first argument that the recipe cannot express (not at its default),
    or a value G and D disagree on where the recipe has one field for both.
    """
    g = _flatten(g_kwargs)
    d = _flatten(d_kwargs or {})
    where = f"{origin}: "
    alias_free = {k for k in g if k.rsplit(".", 1)[-1] in STYLEGAN3_ONLY_KWARGS}
    if alias_free:
        raise UserError(f"{where}is a StyleGAN3 (alias-free) network (it has {sorted(alias_free)[0]}); this gancli "
                        "reads StyleGAN2 and StyleGAN2-ADA networks only")

    def take(flat: dict[str, Any], key: str, default: Any) -> Any:
        return flat.pop(key, default)

    for flat in (g, d):
        for key in ("c_dim", "img_resolution", "img_channels"):
            flat.pop(key, None)
    if int(g_kwargs.get("c_dim", c_dim)) != c_dim or (d_kwargs and int(d_kwargs.get("c_dim", c_dim)) != c_dim):
        raise UserError(f"{where}G and D disagree on the label count (c_dim)")

    model: dict[str, Any] = dict(
        kind="stylegan2",
        z_dim=take(g, "z_dim", 512),
        w_dim=take(g, "w_dim", 512),
        mapping_layers=take(g, "mapping_kwargs.num_layers", 8),
        mapping_lr_multiplier=take(g, "mapping_kwargs.lr_multiplier", 0.01),
        w_avg_beta=take(g, "mapping_kwargs.w_avg_beta", 0.995),
        channel_base=take(g, "synthesis_kwargs.channel_base", 32768),
        channel_max=take(g, "synthesis_kwargs.channel_max", 512),
        num_fp16_res=take(g, "synthesis_kwargs.num_fp16_res", 0),
        conv_clamp=take(g, "synthesis_kwargs.conv_clamp", None),
        g_architecture=take(g, "synthesis_kwargs.architecture", "skip"),
    )
    if d_kwargs is not None:
        shared = {
            "channel_base": take(d, "channel_base", 32768),
            "channel_max": take(d, "channel_max", 512),
            "num_fp16_res": take(d, "num_fp16_res", 0),
            "conv_clamp": take(d, "conv_clamp", None),
        }
        for key, value in shared.items():
            if value != model[key]:
                raise UserError(
                    f"{where}G and D use different {key} ({model[key]} vs {value}); a gancli recipe has one "
                    f"model.{key} for both"
                )
        model["d_architecture"] = take(d, "architecture", "resnet")
        model["mbstd_group_size"] = take(d, "epilogue_kwargs.mbstd_group_size", 4)
        model["mbstd_num_channels"] = take(d, "epilogue_kwargs.mbstd_num_channels", 1)
        if model["mbstd_group_size"] is None:
            raise UserError(f"{where}D uses mbstd_group_size=None (whole batch), which a gancli recipe cannot express")

    for flat, fixed, net in ((g, _G_FIXED, "G"), (d, _D_FIXED, "D")):
        for key, value in flat.items():
            if key in _IGNORABLE:
                continue
            if key not in fixed:
                raise UserError(f"{where}{net} argument {key}={value!r} has no gancli recipe field; cannot convert")
            if _plain(value) != fixed[key]:
                raise UserError(
                    f"{where}{net} argument {key}={value!r} differs from the official default "
                    f"({fixed[key]!r}) and has no gancli recipe field; cannot convert"
                )

    recipe_d = {
        "name": name,
        "description": f"converted from an official StyleGAN2-ADA network ({origin})",
        "source": "NVlabs stylegan2-ada-pytorch network pickle",
        "data": {"resolution": int(resolution)},
        "model": model,
    }
    return Recipe.from_dict(recipe_d, origin=origin)


# ---------------------------------------------------------------------------------------------------
# Whole-file entry points


def open_nvlabs(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], Recipe, dict[str, Any]]:
    """(modules {'G_ema', 'G', 'D': state_dict}, recipe, meta) for an official network pickle.

    The state dicts are checked to load strictly into the networks the recipe builds.
    """
    from gancli.models import build_networks  # the recipe is model.kind stylegan2: its family builds them

    path = Path(path)
    recs = load_nvlabs_pickle(path)
    g = recs["G_ema"]
    if g.class_name != "Generator":
        raise UserError(f"{path}: G_ema is a {g.class_name!r} network; gancli reads StyleGAN2-ADA Generator networks")
    if "D" in recs and recs["D"].class_name != "Discriminator":
        raise UserError(f"{path}: D is a {recs['D'].class_name!r} network; gancli reads StyleGAN2-ADA Discriminator networks")
    try:
        resolution = int(g.init_kwargs["img_resolution"])
        c_dim = int(g.init_kwargs.get("c_dim", 0))
        img_channels = int(g.init_kwargs.get("img_channels", 3))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: G_ema does not record img_resolution / c_dim / img_channels") from None
    recipe = recipe_from_nvlabs_kwargs(
        g.init_kwargs, recs["D"].init_kwargs if "D" in recs else None, resolution, c_dim,
        name=path.stem, origin=str(path),
    )
    # Prove now that the recipe rebuilds networks these weights fit (names and shapes).
    G, D = build_networks(recipe, c_dim=c_dim, img_channels=img_channels)
    for key, rec in recs.items():
        _load_strict(D if key == "D" else G, rec.state_dict, f"{path}: {key}")
    modules = {key: rec.state_dict for key, rec in recs.items()}
    buffers = {key: sorted(n for n, _ in (D if key == "D" else G).named_buffers()) for key in recs}
    meta = {
        "c_dim": c_dim,
        "img_channels": img_channels,
        "resolution": resolution,
        "converted_from": path.name,
        "source_format": SOURCE_FORMAT,
        "source_kwargs": {key: rec.init_kwargs for key, rec in recs.items()},
        "buffers": buffers,
    }
    return modules, recipe, meta
