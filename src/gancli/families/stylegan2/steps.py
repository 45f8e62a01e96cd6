"""The StyleGAN2 training step: phases with lazy regularization, gradient accumulation, ADA.

One training step (a minibatch of `train.batch` reals) runs the phases in order: Gmain, Greg, Dmain,
Dreg (Karras et al. 2020, lazy regularization: a regularization phase runs every `interval` steps with
its loss scaled by `interval`, and the optimizer's lr and betas are corrected by interval/(interval+1)).
Each phase accumulates gradients over its rounds (`batch / world_size / batch_gpu` per process), each
round's loss scaled by 1/rounds, so the gradient is that of the mean loss over the whole global batch
whatever the split; with several processes `distributed.sync_grads` averages it over the ranks before
every rank takes the same Adam step (see `gancli.train.distributed`).

With `augment.kind: ada` the ADA pipeline (`gancli.augment`) is the loss's `augment` (every image D
sees) and an `AdaController` updates its p from the real logits every `augment.interval` steps; p is
training state.

Every random draw in step `k` comes from generators seeded by (train.seed, k): latents and fake labels
are drawn for the whole global batch, and each process takes its share; torch's global RNG (noise
inputs, mixing cutoffs, path-length noise) is seeded per (seed, step, phase, global round). Global round
j holds rows j, j + rounds, j + 2 rounds ... of the global batch, so one process with 2 rounds computes
exactly what 2 processes with one round each compute.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from gancli.families.base import FamilyTraining
from gancli.losses import LossStats, StyleGAN2Loss
from gancli.train import distributed
from gancli.train.seeding import step_seed
from gancli.train.updates import half_life_beta, sanitize_grads, update_ema


@dataclass
class Phase:
    name: str  # 'G' or 'D' followed by 'main', 'reg' or 'both'
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int  # run when step % interval == 0
    parts: list[str]  # loss phases accumulated into this optimizer step


def build_networks(recipe, c_dim: int, img_channels: int = 3):
    """(G, D) for a stylegan2 recipe, freshly initialised (G first: the order fixes the weights of a seed)."""
    from gancli.families.stylegan2.nets import Discriminator, Generator

    m = recipe.model
    # float16 runs only on CUDA (the networks keep float32 elsewhere); 'fp32' turns it off everywhere.
    fp16_res = 0 if recipe.train.precision == "fp32" else m.num_fp16_res
    G = Generator(
        z_dim=m.z_dim, c_dim=c_dim, w_dim=m.w_dim, img_resolution=recipe.data.resolution,
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=m.mapping_layers, lr_multiplier=m.mapping_lr_multiplier, w_avg_beta=m.w_avg_beta),
        synthesis_kwargs=dict(channel_base=m.channel_base, channel_max=m.channel_max, num_fp16_res=fp16_res,
                              conv_clamp=m.conv_clamp, architecture=m.g_architecture),
    )
    D = Discriminator(
        c_dim=c_dim, img_resolution=recipe.data.resolution, img_channels=img_channels,
        architecture=m.d_architecture, channel_base=m.channel_base, channel_max=m.channel_max,
        num_fp16_res=fp16_res, conv_clamp=m.conv_clamp,
        block_kwargs=dict(freeze_layers=recipe.train.freeze_d),  # FreezeD: frozen layers are buffers
        epilogue_kwargs=dict(mbstd_group_size=m.mbstd_group_size, mbstd_num_channels=m.mbstd_num_channels),
    )
    return G, D


class StyleGAN2Training(FamilyTraining):
    """G, G_ema and D, the four phases' optimizers, the path-length mean and ADA of one run."""

    def __init__(self, trainer):
        super().__init__(trainer)
        recipe, device = trainer.recipe, trainer.device
        self.G, self.D = build_networks(recipe, c_dim=trainer.c_dim, img_channels=trainer.img_channels)
        self.G.train().requires_grad_(False).to(device)
        self.D.train().requires_grad_(False).to(device)
        self.G_ema = copy.deepcopy(self.G).eval()
        distributed.broadcast_modules(self.G, self.D, self.G_ema)
        loss = recipe.loss
        self.loss = StyleGAN2Loss(self.G, self.D, r1_gamma=loss.r1_gamma, pl_weight=loss.pl_weight,
                                  pl_decay=loss.pl_decay, pl_batch_shrink=loss.pl_batch_shrink,
                                  style_mixing_prob=loss.style_mixing_prob).to(device)
        self.ada = self._make_augment()  # AdaController (owns the ADA pipe and p), or None
        self.phases = self._make_phases()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}

    def _make_phases(self) -> list[Phase]:
        t, loss = self.trainer.recipe.train, self.trainer.recipe.loss
        phases = []
        for prefix, module, lr, weight, interval in (
            ("G", self.G, t.g_lr, loss.pl_weight, loss.pl_interval),
            ("D", self.D, t.d_lr, loss.r1_gamma, loss.r1_interval),
        ):
            betas = tuple(t.betas)
            if weight > 0 and interval > 1:  # lazy regularization (StyleGAN2 Appendix B)
                ratio = interval / (interval + 1)
                opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=tuple(b ** ratio for b in betas), eps=t.eps)
                phases.append(Phase(prefix + "main", module, opt, 1, [prefix + "main"]))
                phases.append(Phase(prefix + "reg", module, opt, interval, [prefix + "reg"]))
            else:
                opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=t.eps)
                parts = [prefix + "main"] + ([prefix + "reg"] if weight > 0 else [])
                if prefix == "D" and len(parts) == 2:
                    parts = ["Dboth"]
                phases.append(Phase(prefix + ("both" if weight > 0 else "main"), module, opt, 1, parts))
        return phases

    def _make_augment(self):
        """ADA: the pipeline becomes the loss's `augment`, the controller sees the real logits."""
        a = self.trainer.recipe.augment
        if a.kind != "ada":
            return None
        from gancli.augment import AdaController, build_augment_pipe

        pipe = build_augment_pipe(a).to(self.trainer.device)
        ada = AdaController(pipe, target=a.target, speed_kimg=a.speed_kimg, interval=a.interval,
                            batch=self.trainer.recipe.train.batch, adaptive=a.adaptive).to(self.trainer.device)
        self.loss.augment = pipe
        self.loss.ada_stats = ada
        return ada

    # ----------------------------------------------------------------------------------------------
    # State (resume)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.phases[0].opt, "D": next(p.opt for p in self.phases if p.name.startswith("D"))}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"pl_mean": self.loss.pl_mean.detach().cpu()}
        if self.ada is not None:
            state["augment"] = self.ada.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.pl_mean.copy_(state["pl_mean"].to(self.trainer.device))
        if self.ada is not None:
            self.ada.load_state_dict(state["augment"])

    def log_values(self) -> dict[str, float]:
        values = {"pl_mean": float(self.loss.pl_mean)}
        if self.ada is not None:
            values["augment/p"] = float(self.ada.p)
        return values

    # ----------------------------------------------------------------------------------------------
    # One step

    def train_step(self, stats: LossStats) -> None:
        """One step on this process's share of the next global batch (rows rank, rank + W, ...)."""
        tr = self.trainer
        reals, real_c = tr.next_batch()
        step, seed = tr.state.step, tr.recipe.train.seed
        rank, world = tr.ddp.rank, tr.ddp.world_size
        gen = torch.Generator().manual_seed(step_seed(seed + 1, step))
        reals = reals.to(tr.device, non_blocking=True)
        real_c = real_c.to(tr.device)
        # Latents and labels of the global batch (the same on every rank); this rank takes its rows.
        all_z = torch.randn([len(self.phases), tr.batch, self.G.z_dim], generator=gen)[:, rank::world].to(tr.device)
        all_c = [tr.fake_labels(tr.batch, gen)[rank::world] for _ in self.phases]
        n_rounds = reals.shape[0] // tr.batch_gpu
        ada_before = self.ada.signs.clone() if self.ada is not None and world > 1 else None
        for index, (phase, z, c) in enumerate(zip(self.phases, all_z, all_c)):
            if step % phase.interval:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for r in range(n_rounds):  # local round r is global round rank + world * r
                torch.manual_seed(step_seed(seed, (step, index, rank + world * r)))  # noise, mixing, pl noise
                rows = slice(r, None, n_rounds)
                for part in phase.parts:
                    self.loss.accumulate_gradients(part, reals[rows], real_c[rows], z[rows], c[rows],
                                                   gain=phase.interval / n_rounds, stats=stats)
            phase.module.requires_grad_(False)
            distributed.sync_grads(phase.module)
            sanitize_grads(phase.module)
            phase.opt.step()
        self.loss.update_pl_mean(distributed.all_reduce_sum_)
        if ada_before is not None:  # ADA's sign statistics of the whole global batch, the same on every rank
            step_signs = self.ada.signs - ada_before
            distributed.all_reduce_sum_(step_signs)
            self.ada.signs = ada_before + step_signs
        if tr.ddp.is_main:
            t = tr.recipe.train
            update_ema(self.G_ema, self.G, half_life_beta(tr.batch, t.ema_kimg, t.ema_rampup, tr.state.cur_nimg))
        if self.ada is not None and (step + 1) % self.ada.interval == 0:
            self.ada.update()  # p from the sign statistics of the last `interval` minibatches
        tr.state.cur_nimg += tr.batch
        tr.state.step += 1
