"""A toy model family for the tests: a linear G and D with a logistic step. Nothing outside this folder
knows it; `gancli.families.register(FAMILY)` is its registry line."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch

from gancli.families import base
from gancli.train.seeding import step_seed
from gancli.train.updates import half_life_beta, sanitize_grads, update_ema


@dataclass
class ToyModel(base.ModelConfig):
    kind: Literal["toy"] = "toy"  # the toy family
    z_dim: int = 8  # input latent size


@dataclass
class ToyLoss(base.LossConfig):
    kind: Literal["logistic"] = "logistic"  # non-saturating logistic loss


class ToyG(torch.nn.Module):
    def __init__(self, z_dim: int, c_dim: int, resolution: int, channels: int):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.shape = z_dim, c_dim, resolution, (channels, resolution, resolution)
        self.fc = torch.nn.Linear(z_dim, channels * resolution * resolution)

    def forward(self, z, c=None, **_):
        return torch.tanh(self.fc(z)).reshape(-1, *self.shape)


class ToyTraining(base.FamilyTraining):
    def __init__(self, trainer):
        super().__init__(trainer)
        r = trainer.recipe
        self.G = ToyG(r.model.z_dim, trainer.c_dim, r.data.resolution, trainer.img_channels)
        self.D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(trainer.img_channels * r.data.resolution**2, 1))
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt = {"G": torch.optim.Adam(self.G.parameters(), 1e-3), "D": torch.optim.Adam(self.D.parameters(), 1e-3)}

    def modules(self):
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}

    def optimizers(self):
        return self.opt

    def train_step(self, stats):
        tr = self.trainer
        reals, _ = tr.next_batch()
        gen = torch.Generator().manual_seed(step_seed(tr.recipe.train.seed, tr.state.step))
        z = torch.randn([tr.batch, self.G.z_dim], generator=gen)
        f = torch.nn.functional.softplus
        for name, loss in (("D", lambda: f(self.D(self.G(z).detach())).mean() + f(-self.D(reals)).mean()),
                           ("G", lambda: f(-self.D(self.G(z))).mean())):
            self.opt[name].zero_grad(set_to_none=True)
            value = loss()
            value.backward()
            sanitize_grads(self.G if name == "G" else self.D)
            self.opt[name].step()
            stats.add(f"loss/{name}", value)
        t = tr.recipe.train
        update_ema(self.G_ema, self.G, half_life_beta(tr.batch, t.ema_kimg, t.ema_rampup, tr.state.cur_nimg))
        tr.state.cur_nimg += tr.batch
        tr.state.step += 1


class ToyFamily(base.Family):
    name, title, kinds = "toy", "Toy", ("toy",)
    model_config, loss_config = ToyModel, ToyLoss
    capabilities = frozenset({"seeds"})

    def plan(self, recipe):
        return {"model": f"toy: linear G and D, z {recipe.model.z_dim}", "optimizer": "Adam 1e-3", "loss": "logistic"}

    def build_generator(self, recipe, c_dim, img_channels=3):
        return ToyG(recipe.model.z_dim, c_dim, recipe.data.resolution, img_channels)

    def training(self, trainer):
        return ToyTraining(trainer)


FAMILY = ToyFamily()
