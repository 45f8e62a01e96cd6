"""From checkpoint to a ready generator, with its family.

Commands never reach into a paper's module: they call `load_generator`, check what they need with
`LoadedGenerator.require(command, capability...)`, and turn seeds into images with
`LoadedGenerator.generate` (the family's own); style-based generators also offer the generator API's
`mapping`, `synthesis`, `num_ws`, `w_avg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gancli.errors import UserError
from gancli.recipe import Recipe


def build_networks(recipe: Recipe, c_dim: int, img_channels: int = 3):
    """(G, D), freshly initialised, for a family of one generator and one discriminator."""
    from gancli.families import get_family

    return get_family(recipe.model.kind).build_networks(recipe, c_dim, img_channels)


def build_generator(recipe: Recipe, c_dim: int, img_channels: int = 3):
    """The generator of the recipe's model family, freshly initialised."""
    from gancli.families import get_family

    return get_family(recipe.model.kind).build_generator(recipe, c_dim, img_channels)


@dataclass
class LoadedGenerator:
    G: Any  # torch.nn.Module with the generator API, in eval mode
    recipe: Recipe
    meta: dict
    path: Path
    family: Any = None  # gancli.families.Family; None: the recipe's

    def __post_init__(self):
        if self.family is None:
            from gancli.families import get_family

            self.family = get_family(self.recipe.model.kind)

    @property
    def kind(self) -> str:
        return self.recipe.model.kind if self.recipe is not None else self.family.kinds[0]

    def has(self, capability: str) -> bool:
        return capability in self.family.capabilities

    def require(self, command: str, *capabilities: str) -> None:
        """One line naming the command, the kind and what it lacks, e.g. "mix: a biggan generator has
        no per-layer styles"."""
        from gancli.families import require

        require(self.family, self.kind, command, *capabilities)

    def generate(self, seeds: list[int], *, trunc: float | None = None, cutoff: int | None = None,
                 c=None, noise_mode: str = "const", batch: int = 1, progress: bool = False):
        """Images (NCHW, [-1, 1]) for the seeds through the family's `generate`."""
        return self.family.generate(self.G, seeds, trunc=trunc, cutoff=cutoff, c=c, noise_mode=noise_mode,
                                    batch=batch, progress=progress)


def load_generator(spec: str | Path, device: str = "cpu", which: str | None = None) -> LoadedGenerator:
    """Build the generator a network file describes and load its weights (the family's inference
    module by default: the EMA weights `G_ema`).

    `spec` is a gancli snapshot, a run directory (its newest snapshot) or an official StyleGAN2-ADA
    network pickle, read without running any code from it (`gancli.convert`).
    """
    from gancli.convert import open_network
    from gancli.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(spec).snapshot
    modules, recipe, meta = open_network(path)
    from gancli.families import get_family

    family = get_family(recipe.model.kind, f"{path} (embedded recipe): ")
    which = which or family.inference_module
    G = family.build_generator(recipe, c_dim=int(meta.get("c_dim", 0)), img_channels=int(meta.get("img_channels", 3)))
    state = modules.get(which)
    if state is None:
        raise UserError(f"{path}: has no {which} weights (it holds {', '.join(sorted(modules))})")
    missing, unexpected = G.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: {which} weights do not match the embedded recipe "
                        f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G=G, recipe=recipe, meta=meta, path=path, family=family)
