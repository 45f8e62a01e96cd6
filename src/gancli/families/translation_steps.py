"""The training object the image-to-image families share (`TranslationTraining`): the lr schedule by
epoch (`gancli.families.translation.lr_factor`), per-step randomness, and the grids of input | output |
target. pix2pix, CycleGAN and CUT subclass it with their networks and `step`."""

from __future__ import annotations

import torch

from gancli.families import base
from gancli.families.translation import lr_factor


class TranslationTraining(base.FamilyTraining):
    """The schedule, the per-step randomness and the grids of a translation run; subclasses build the
    networks and take the step (`step(stats, gen)`)."""

    optimizer_lrs: dict[str, float]  # optimizer name -> initial lr

    def __init__(self, trainer):
        super().__init__(trainer)
        self.t = trainer.recipe.train
        data = trainer.dataset
        from gancli.data.translation import center_crop

        k = min(self.t.grid_seeds or 8, len(data.A), len(data.B))
        picks = torch.linspace(0, min(len(data.A), len(data.B)) - 1, k).round().long().tolist()
        crop = trainer.recipe.data.shape
        self.grid_A = torch.from_numpy(center_crop(data.A[picks], crop).copy()).float().div(127.5).sub(1).to(trainer.device)
        self.grid_B = torch.from_numpy(center_crop(data.B[picks], crop).copy()).float().div(127.5).sub(1).to(trainer.device)

    # Schedule -------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.trainer.state.cur_nimg // self.trainer.dataset.num_images

    def lr_factor(self) -> float:
        return lr_factor(self.epoch, self.t.epochs, self.t.epochs_decay)

    def set_lrs(self) -> None:
        f = self.lr_factor()
        for name, opt in self.optimizers().items():
            for group in opt.param_groups:
                group["lr"] = self.optimizer_lrs[name] * f

    def log_values(self) -> dict[str, float]:
        return {"epoch": float(self.epoch), "lr": self.optimizer_lrs["G"] * self.lr_factor()}

    def train_step(self, stats) -> None:
        tr = self.trainer
        from gancli.train.seeding import step_seed

        self.set_lrs()
        seed = step_seed(tr.recipe.train.seed, tr.state.step)
        torch.manual_seed(seed)  # dropout (pix2pix's noise) draws from the global generator
        gen = torch.Generator(device=tr.device).manual_seed(seed)
        self.step(stats, gen)
        tr.state.cur_nimg += tr.batch
        tr.state.step += 1

    def step(self, stats, gen: torch.Generator) -> None:
        raise NotImplementedError

    @staticmethod
    def update(opt: torch.optim.Optimizer, loss: torch.Tensor, *modules: torch.nn.Module) -> None:
        from gancli.train.updates import sanitize_grads

        opt.zero_grad(set_to_none=True)
        loss.backward()
        for m in modules:
            sanitize_grads(m)
        opt.step()

    # Grids ----------------------------------------------------------------------------------------

    def grid_columns(self, A: torch.Tensor, B: torch.Tensor) -> list[torch.Tensor]:
        """The grid's columns for inputs A and their counterparts B: input | output | target."""
        G = self.modules()[self.trainer.family.inference_module]
        return [A, self.trainer.family.translate(G, A), B]

    def grid(self, seeds, c):
        from gancli.render import make_grid, to_uint8

        modules = list(self.modules().values())
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            with torch.no_grad():
                columns = self.grid_columns(self.grid_A, self.grid_B)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        images = torch.stack(columns, 1).flatten(0, 1)  # row by row: one input and what became of it
        return make_grid(to_uint8(images), len(self.grid_A), len(columns))

    def reals_grid(self):
        from gancli.render import make_grid, to_uint8

        images = torch.stack([self.grid_A, self.grid_B], 1).flatten(0, 1)
        return make_grid(to_uint8(images), len(self.grid_A), 2)
