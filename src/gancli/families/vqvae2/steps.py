"""VQ-VAE-2 training: stage 1 (the VQ-VAE) and stage 2 (the priors over its codes).

Stage 1 step: loss = MSE(x, decode(quantize(encode(x)))) + beta * commitment, Adam on the encoders
and decoders; the codebooks move by their EMA inside the forward pass (paper Sec. 3.1, Eq. 2 with
the EMA codebook of VQ-VAE Appendix A.1). Stage 2 step: the cross-entropy of the top codes under the
top prior plus that of the bottom codes under the bottom prior given the top codes (the priors share
no weights, so one Adam over both is the same as training them apart on the same batches). The
stage-1 network is frozen in stage 2, and the codes of every training image (mirrors included) are
extracted once into `codes.npz` in the run directory (`CodeCache`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import UserError
from gancli.families import base
from gancli.families.vqvae2.nets import VQVAE2, perplexity
from gancli.train import distributed
from gancli.train.seeding import step_seed
from gancli.train.updates import sanitize_grads

MODULE = "vqvae2"  # the one module of every stage: the VQ-VAE, plus the priors from stage 2 on


def build(recipe, img_channels: int = 3) -> VQVAE2:
    return VQVAE2(recipe.model, recipe.data.resolution, img_channels)


class _Training(base.FamilyTraining):
    def __init__(self, trainer):
        super().__init__(trainer)
        self.model = build(trainer.recipe, trainer.img_channels).to(trainer.device)
        distributed.broadcast_modules(self.model)

    def modules(self):
        return {MODULE: self.model}

    def optimizers(self):
        return {"adam": self.opt}

    def _advance(self, n: int) -> None:
        self.trainer.state.cur_nimg += n
        self.trainer.state.step += 1


class Stage1Training(_Training):
    """The VQ-VAE: encoders, EMA codebooks, decoder."""

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.recipe.train
        self.opt = torch.optim.Adam(self.model.vqvae.parameters(), lr=t.lr, betas=tuple(t.betas), eps=t.eps)

    def train_step(self, stats) -> None:
        tr, t = self.trainer, self.trainer.recipe.train
        vq = self.model.vqvae.train()
        gen = torch.Generator().manual_seed(step_seed(t.seed, tr.state.step))  # dead-code restarts
        reals, _ = tr.next_batch()
        # The EMA counts start at 0: restarts begin once they have had one time constant to settle.
        warm = tr.state.step >= round(1 / (1 - tr.recipe.model.codebook_decay))
        recon, commitment, codes_top, codes_bottom, restarted = vq(reals, t.dead_code_threshold if warm else 0.0, gen)
        mse = F.mse_loss(recon, reals)
        loss = mse + tr.recipe.loss.beta * commitment
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.sync_grads(vq)
        sanitize_grads(vq)
        self.opt.step()
        n = self.model.n_embed
        stats.add("loss/mse", mse)
        stats.add("loss/commitment", commitment)
        stats.add("loss/psnr", 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-12)))  # pixels span 2
        for level, codes in (("top", codes_top), ("bottom", codes_bottom)):
            stats.add(f"vq/perplexity_{level}", perplexity(codes, n))
            stats.add(f"vq/used_{level}", torch.tensor(float(torch.unique(codes).numel()) / n))
        stats.add("vq/restarts", torch.tensor(float(restarted)))
        self._advance(tr.batch)

    def log_values(self):
        """Codebook usage by the EMA counts: the share of codes with an EMA count of at least 1."""
        vq = self.model.vqvae
        return {f"vq/live_{level}": float((q.cluster_size >= 1).float().mean())
                for level, q in (("top", vq.quant_top), ("bottom", vq.quant_bottom))}

    @torch.no_grad()
    def render_grid(self, seeds, c):
        """The first training images (first half of the grid) above their reconstructions."""
        tr = self.trainer
        k = max(1, len(seeds) // 2)
        images, _ = tr.dataset.get_batch(np.arange(min(k, len(tr.dataset))))
        x = torch.from_numpy(images).to(tr.device).float() / 127.5 - 1
        vq = self.model.vqvae.eval()
        recon = torch.cat([vq(x[i: i + 1])[0] for i in range(len(x))])
        out = torch.cat([x, recon.clamp(-1, 1)])
        if len(out) < len(seeds):
            out = torch.cat([out, torch.ones_like(out[:1]).expand(len(seeds) - len(out), -1, -1, -1)])
        return out


class Stage2Training(_Training):
    """The two priors, over the cached codes of the frozen stage-1 VQ-VAE."""

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.recipe.train
        self.model.vqvae.eval().requires_grad_(False)
        self.priors = [self.model.top_prior, self.model.bottom_prior]
        params = [p for prior in self.priors for p in prior.parameters()]
        self.opt = torch.optim.Adam(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps)
        self.cache = CodeCache(trainer.run_dir / "codes.npz")
        self._codes = None

    def weights_from_init(self, modules):
        """A stage-1 file holds only the VQ-VAE: the priors start from their fresh weights."""
        if MODULE not in modules:
            return modules
        own = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        theirs = {k: v for k, v in modules[MODULE].items() if k.startswith("vqvae.")}
        if not theirs:
            raise UserError(f"--init: the network has no VQ-VAE weights under {MODULE}")
        prior_keys = {k: v for k, v in modules[MODULE].items() if not k.startswith("vqvae.")}
        return {**modules, MODULE: {**own, **prior_keys, **theirs}}

    def codes(self):
        if self._codes is None:
            self._codes = self.cache.load_or_extract(self.model.vqvae, self.trainer.dataset, self.trainer.device)
        return self._codes

    def train_step(self, stats) -> None:
        tr, t = self.trainer, self.trainer.recipe.train
        top_all, bottom_all = self.codes()
        idx = tr.next_indices()
        top = torch.from_numpy(top_all[idx].astype(np.int64)).to(tr.device)
        bottom = torch.from_numpy(bottom_all[idx].astype(np.int64)).to(tr.device)
        devices = [tr.device] if tr.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout draws from the step's seed (exact resume)
            torch.manual_seed(step_seed(t.seed, tr.state.step))
            for prior in self.priors:
                prior.train()
            nll_top = F.cross_entropy(self.model.top_prior(top), top)
            nll_bottom = F.cross_entropy(self.model.bottom_prior(bottom, top), bottom)
        self.opt.zero_grad(set_to_none=True)
        (nll_top + nll_bottom).backward()
        for prior in self.priors:
            distributed.sync_grads(prior)
            sanitize_grads(prior)
            prior.eval()
        self.opt.step()
        stats.add("loss/top_bpd", nll_top / math.log(2))  # bits per code (uniform: log2 n_embed)
        stats.add("loss/bottom_bpd", nll_bottom / math.log(2))
        self._advance(tr.batch)

    @torch.no_grad()
    def render_grid(self, seeds, c):
        return self.trainer.family.generate(self.model, seeds, batch=16)


# --------------------------------------------------------------------------------------------------


def fingerprint(vqvae: torch.nn.Module, dataset) -> str:
    """What the cached codes depend on: the VQ-VAE's weights and buffers and the training images."""
    h = hashlib.sha1()
    for name, tensor in sorted(vqvae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"{len(dataset)}:{dataset.resolution}".encode())
    h.update(dataset.content_key().encode())  # the source's content identity: no image is decoded for it
    return h.hexdigest()


@torch.no_grad()
def extract_codes(vqvae, dataset, device, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(top codes [N, R/8, R/8], bottom codes [N, R/4, R/4]) of every dataset index (mirrors included)."""
    vqvae.eval()
    tops, bottoms = [], []
    for start in range(0, len(dataset), batch):
        images, _ = dataset.get_batch(np.arange(start, min(start + batch, len(dataset))))
        x = torch.from_numpy(images).to(device).float() / 127.5 - 1
        _, _, _, top, bottom, _ = vqvae.encode(x)
        tops.append(top.cpu().numpy().astype(np.int16))
        bottoms.append(bottom.cpu().numpy().astype(np.int16))
    return np.concatenate(tops), np.concatenate(bottoms)


class CodeCache:
    """The training set's codes in one file next to the run, extracted once: a resumed stage-2 run
    (or any run with the same VQ-VAE and images) reads them instead of encoding again."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load_or_extract(self, vqvae, dataset, device):
        key = fingerprint(vqvae, dataset)
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as f:
                if str(f["fingerprint"]) == key:
                    return f["top"], f["bottom"]
        top, bottom = extract_codes(vqvae, dataset, device)
        if distributed.is_main():
            self._write(top, bottom, key)
        return top, bottom

    def _write(self, top, bottom, key) -> None:
        import io

        from gancli.fileio import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, top=top, bottom=bottom, fingerprint=np.array(key))
        atomic_write_bytes(self.path, buf.getvalue())
