"""Adversarial losses and regularizers, as small pieces that a paper's training composes.

StyleGAN2 (Karras et al. 2020) uses the non-saturating logistic loss, R1 on reals (lazy), path-length
regularization on G (lazy) and style mixing. Each piece below is a function of tensors; `StyleGAN2Loss`
wires them into the four training phases (Gmain, Greg, Dmain, Dreg).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log(sigmoid(D(G(z)))) per sample (Goodfellow et al. 2014, non-saturating)."""
    return F.softplus(-fake_logits)


def d_logistic_fake(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(D(G(z)))) per sample."""
    return F.softplus(fake_logits)


def d_logistic_real(real_logits: torch.Tensor) -> torch.Tensor:
    """-log(sigmoid(D(x))) per sample."""
    return F.softplus(-real_logits)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample (Mescheder et al. 2018); `real_images` must require grad."""
    (grads,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True, only_inputs=True)
    return grads.square().sum(dim=[1, 2, 3])


def path_lengths(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """|J_w^T y| per sample for random image-space y ~ N(0, I) / sqrt(H W) (StyleGAN2, Sec. 3.2)."""
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True, only_inputs=True)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


class LossStats:
    """Running means of per-phase losses since the last read.

    Values stay tensors (reading them is the only device sync); each key keeps its own count, since
    lazy regularization terms are computed less often than the main losses.
    """

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float().mean()
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


class StyleGAN2Loss:
    """Non-saturating logistic loss with R1, path-length and style-mixing regularization.

    `pl_mean` (the running mean path length) is training state: it is saved and restored on resume.
    The penalty of a step uses `pl_mean` as it was before the step; `update_pl_mean` then moves it once
    per step towards the mean path length of the whole global batch (all accumulation rounds, all
    processes), so the result does not depend on how the batch is split into rounds or processes. (The
    official trainer updates it per round before the penalty; with pl_decay 0.01 the difference is one
    step of a slow running mean.)
    """

    def __init__(self, G, D, *, r1_gamma: float, pl_weight: float, pl_decay: float, pl_batch_shrink: int,
                 style_mixing_prob: float, augment=None):
        self.G, self.D = G, D
        self.r1_gamma = r1_gamma
        self.pl_weight = pl_weight
        self.pl_decay = pl_decay
        self.pl_batch_shrink = pl_batch_shrink
        self.style_mixing_prob = style_mixing_prob
        self.augment = augment  # callable on images seen by D (ADA), or None
        self.ada_stats = None  # object with record(real_logits): the ADA heuristic sees every main-phase real logit
        self.pl_mean = torch.zeros([])
        self._pl_sum: torch.Tensor | None = None  # sum and count of this step's path lengths
        self._pl_count = 0

    def to(self, device) -> StyleGAN2Loss:
        self.pl_mean = self.pl_mean.to(device)
        return self

    def update_pl_mean(self, all_reduce_sum=None) -> None:
        """End of a step: move pl_mean towards the step's mean path length (summed over processes by
        `all_reduce_sum`, an in-place sum over ranks, when given). Does nothing when Greg did not run."""
        if self._pl_sum is None:
            return
        both = torch.stack([self._pl_sum, torch.tensor(float(self._pl_count), device=self._pl_sum.device)])
        if all_reduce_sum is not None:
            all_reduce_sum(both)
        self.pl_mean.copy_(self.pl_mean.lerp(both[0] / both[1], self.pl_decay))
        self._pl_sum, self._pl_count = None, 0

    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = int(torch.randint(1, num_ws, [])) if num_ws > 1 else num_ws
            if float(torch.rand([])) >= self.style_mixing_prob:
                cutoff = num_ws
            if cutoff < num_ws:
                mixed = self.G.mapping(torch.randn_like(z), c, update_emas=False)
                ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return self.G.synthesis(ws, noise_mode="random"), ws

    def run_D(self, images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            images = self.augment(images)
        return self.D(images, c)

    def accumulate_gradients(self, phase: str, real: torch.Tensor, real_c: torch.Tensor, z: torch.Tensor,
                             c: torch.Tensor, gain: float, stats: LossStats) -> None:
        """Backpropagate one phase's loss for one accumulation round, scaled by `gain`."""
        if phase == "Gmain":
            fake, _ = self.run_G(z, c)
            loss = g_nonsaturating(self.run_D(fake, c))
            stats.add("loss/G", loss)
            loss.mean().mul(gain).backward()
        elif phase == "Greg":
            n = max(z.shape[0] // self.pl_batch_shrink, 1)
            fake, ws = self.run_G(z[:n], c[:n])
            lengths = path_lengths(fake, ws)
            total = lengths.detach().sum()
            self._pl_sum = total if self._pl_sum is None else self._pl_sum + total
            self._pl_count += lengths.shape[0]
            penalty = (lengths - self.pl_mean).square()
            stats.add("loss/pl_penalty", penalty)
            # fake[:, 0, 0, 0] * 0 keeps every synthesis parameter in the graph (DDP needs all grads).
            (fake[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean().mul(gain).backward()
        elif phase in ("Dmain", "Dreg", "Dboth"):
            do_main = phase in ("Dmain", "Dboth")
            do_r1 = phase in ("Dreg", "Dboth") and self.r1_gamma > 0
            loss_fake = torch.zeros([], device=real.device)
            if do_main:
                with torch.no_grad():
                    fake, _ = self.run_G(z, c)
                loss_fake = d_logistic_fake(self.run_D(fake, c))
                stats.add("loss/D_fake", loss_fake)
                loss_fake.mean().mul(gain).backward()
            real_in = real.detach().requires_grad_(do_r1)
            real_logits = self.run_D(real_in, real_c)
            loss = real_logits * 0
            if do_main:
                loss_real = d_logistic_real(real_logits)
                stats.add("loss/D_real", loss_real)
                stats.add("loss/D", loss_real + loss_fake.mean())
                stats.add("scores/real", real_logits)
                if self.ada_stats is not None:
                    self.ada_stats.record(real_logits)
                    stats.add("augment/rt", real_logits.detach().sign())
                loss = loss + loss_real
            if do_r1:
                penalty = r1_penalty(real_logits, real_in)
                stats.add("loss/r1_penalty", penalty)
                loss = loss + penalty[:, None] * (self.r1_gamma / 2)
            loss.mean().mul(gain).backward()
        else:
            raise ValueError(f"unknown training phase {phase!r}")


# --------------------------------------------------------------------------------------------------
# The class-conditional ResNet family (SNGAN, SAGAN, BigGAN): hinge or BCE loss, orthogonal
# regularization of G. `train/resnet.py` composes them into D and G steps.


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max(0, 1 - D(x)) and max(0, 1 + D(G(z))) per sample (Lim & Ye 2017; SNGAN, SAGAN, BigGAN)."""
    return F.relu(1 - real_logits), F.relu(1 + fake_logits)


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """-D(G(z)) per sample (the generator side of the hinge loss)."""
    return -fake_logits


def d_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy against `real_target` for reals (one-sided label smoothing when < 1) and 0 for fakes."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target), reduction="none")
    return real, F.softplus(fake_logits)


class HingeLoss:
    """Hinge loss: D minimizes E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G minimizes -E[D(G(z))]."""

    name = "hinge"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return d_hinge(real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return g_hinge(fake_logits)


class BCELoss:
    """The original GAN loss as binary cross-entropy, with one-sided label smoothing (Salimans et al. 2016):
    reals are pushed toward `real_target` (e.g. 0.9) instead of 1. G uses the non-saturating form."""

    name = "bce"

    def __init__(self, real_target: float = 1.0):
        self.real_target = real_target

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return d_bce(real_logits, fake_logits, self.real_target)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return g_nonsaturating(fake_logits)


@torch.no_grad()
def add_orthogonal_grad(params, strength: float) -> torch.Tensor:
    """BigGAN's off-diagonal orthogonal regularization R(W) = ||W W^T * (1 - I)||_F^2 (Brock et al. 2019,
    Eq. 3), with W each parameter seen as a matrix [out, in * kh * kw], one filter per row: it pushes
    different filters toward orthogonality without constraining their norms.

    Adds strength * dR/dW = strength * 4 (W W^T * (1 - I)) W (closed form, no autograd graph) to the
    .grad of each matrix-shaped parameter; returns the summed penalty R (for logs)."""
    total = None
    for p in params:
        if p.ndim < 2:
            continue
        w = p.reshape(p.shape[0], -1)
        off = (w @ w.t()) * (1 - torch.eye(w.shape[0], dtype=w.dtype, device=w.device))
        grad = (4 * strength * off @ w).reshape(p.shape)
        p.grad = grad if p.grad is None else p.grad.add_(grad)
        value = off.square().sum()
        total = value if total is None else total + value
    return total if total is not None else torch.zeros([])


# --------------------------------------------------------------------------------------------------
# The loss zoo of the classic GANs (DCGAN family, and `loss.kind` of the ResNet family).
#
# Every loss is two functions of the discriminator's raw outputs (logits for the sigmoid losses,
# critic values for WGAN): `d(real, fake) -> (real_part, fake_part)` and `g(real, fake) -> part`, each
# per sample ([N, 1]); the step minimizes the batch mean of the parts. The relativistic average forms
# compare each sample with the batch mean of the other side, so their G part needs the logits of a
# real batch too (`needs_real_in_g`) and their value depends on the whole batch at once.


def d_nonsat(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0):
    """-log D(x) (or BCE against `real_target`, one-sided label smoothing) and -log(1 - D(G(z)))
    (Goodfellow et al. 2014, Eq. 1; Salimans et al. 2016, Sec. 3.4 for the smoothing)."""
    return d_bce(real, fake, real_target)


def g_nonsat(real: torch.Tensor | None, fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) (Goodfellow et al. 2014, Sec. 3: the non-saturating generator loss)."""
    return F.softplus(-fake)


def g_minimax(real: torch.Tensor | None, fake: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))) (Goodfellow et al. 2014, Eq. 1: the minimax game's generator side, which saturates)."""
    return -F.softplus(fake)


def d_wgan(real: torch.Tensor, fake: torch.Tensor):
    """-C(x) and C(G(z)): the critic maximizes E[C(x)] - E[C(G(z))] (Arjovsky et al. 2017, Eq. 3)."""
    return -real, fake


def g_wgan(real: torch.Tensor | None, fake: torch.Tensor) -> torch.Tensor:
    """-C(G(z)) (Arjovsky et al. 2017, Algorithm 1)."""
    return -fake


def d_lsgan(real: torch.Tensor, fake: torch.Tensor, a: float = 0.0, b: float = 1.0):
    """1/2 (D(x) - b)^2 and 1/2 (D(G(z)) - a)^2 (Mao et al. 2017, Eq. 2: a codes fakes, b reals)."""
    return 0.5 * (real - b).square(), 0.5 * (fake - a).square()


def g_lsgan(real: torch.Tensor | None, fake: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """1/2 (D(G(z)) - c)^2 (Mao et al. 2017, Eq. 2: c is the value G wants D to believe)."""
    return 0.5 * (fake - c).square()


def d_hinge_pair(real: torch.Tensor, fake: torch.Tensor):
    return d_hinge(real, fake)


def g_hinge_pair(real: torch.Tensor | None, fake: torch.Tensor) -> torch.Tensor:
    return g_hinge(fake)


def d_rasgan(real: torch.Tensor, fake: torch.Tensor):
    """RaSGAN (Jolicoeur-Martineau 2019, Sec. 4.3): -log sigmoid(C(x) - E C(G(z))) and
    -log(1 - sigmoid(C(G(z)) - E C(x))), the means over the batch."""
    return F.softplus(-(real - fake.mean())), F.softplus(fake - real.mean())


def g_rasgan(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """RaSGAN generator: the D loss with real and fake swapped (per pair of samples)."""
    return F.softplus(-(fake - real.mean())) + F.softplus(real - fake.mean())


def d_rals(real: torch.Tensor, fake: torch.Tensor):
    """RaLSGAN (Jolicoeur-Martineau 2019, Appendix A, Eq. of RaLSGAN): (C(x) - E C(G(z)) - 1)^2 and
    (C(G(z)) - E C(x) + 1)^2."""
    return (real - fake.mean() - 1).square(), (fake - real.mean() + 1).square()


def g_rals(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """RaLSGAN generator: (C(G(z)) - E C(x) - 1)^2 + (C(x) - E C(G(z)) + 1)^2."""
    return (fake - real.mean() - 1).square() + (real - fake.mean() + 1).square()


def d_rahinge(real: torch.Tensor, fake: torch.Tensor):
    """RaHingeGAN (Jolicoeur-Martineau 2019, Appendix A): max(0, 1 - (C(x) - E C(G(z)))) and
    max(0, 1 + (C(G(z)) - E C(x)))."""
    return F.relu(1 - (real - fake.mean())), F.relu(1 + (fake - real.mean()))


def g_rahinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """RaHingeGAN generator: max(0, 1 - (C(G(z)) - E C(x))) + max(0, 1 + (C(x) - E C(G(z))))."""
    return F.relu(1 - (fake - real.mean())) + F.relu(1 + (real - fake.mean()))


class AdversarialLoss:
    """One entry of the zoo: `d_loss(real, fake) -> (real_part, fake_part)` and `g_loss(fake, real=None)`
    per sample. `needs_real_in_g`: the G side compares with real logits (relativistic forms);
    `critic`: D is a critic without a sigmoid; `clip` (WGAN) and `gp` (WGAN-GP) say how it is kept Lipschitz."""

    def __init__(self, name: str, d, g, *, needs_real_in_g: bool = False, critic: bool = False,
                 clip: bool = False, gp: bool = False):
        self.name, self._d, self._g = name, d, g
        self.needs_real_in_g, self.critic = needs_real_in_g, critic
        self.clip, self.gp = clip, gp  # WGAN: clip D's weights after each update; WGAN-GP: gradient penalty

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._d(real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return self._g(real_logits, fake_logits)


# loss.kind -> what it is, for docs and messages
LOSS_KINDS: dict[str, str] = {
    "nonsat": "BCE, non-saturating G (Goodfellow et al. 2014)",
    "minimax": "BCE, minimax G log(1 - D(G(z))) (Goodfellow et al. 2014)",
    "wgan": "Wasserstein critic with weight clipping (Arjovsky et al. 2017)",
    "wgan-gp": "Wasserstein critic with gradient penalty (Gulrajani et al. 2017)",
    "lsgan": "least squares, a/b/c coding (Mao et al. 2017)",
    "hinge": "hinge (Lim & Ye 2017; SNGAN, SAGAN, BigGAN)",
    "rasgan": "relativistic average standard GAN (Jolicoeur-Martineau 2019)",
    "rals": "relativistic average least squares (Jolicoeur-Martineau 2019)",
    "rahinge": "relativistic average hinge (Jolicoeur-Martineau 2019)",
}


def adversarial_loss(kind: str, *, real_target: float = 1.0, lsgan_abc: tuple[float, float, float] = (0.0, 1.0, 1.0)) -> AdversarialLoss:
    """The loss of `loss.kind` (see LOSS_KINDS; 'bce' is 'nonsat'). `real_target` < 1 is one-sided label
    smoothing of the BCE losses; `lsgan_abc` are LSGAN's a (fake), b (real), c (G's target)."""
    a, b, c = lsgan_abc
    table = {
        "nonsat": (lambda r, f: d_nonsat(r, f, real_target), g_nonsat, {}),
        "minimax": (lambda r, f: d_nonsat(r, f, real_target), g_minimax, {}),
        "wgan": (d_wgan, g_wgan, {"critic": True, "clip": True}),
        "wgan-gp": (d_wgan, g_wgan, {"critic": True, "gp": True}),
        "lsgan": (lambda r, f: d_lsgan(r, f, a, b), lambda r, f: g_lsgan(r, f, c), {}),
        "hinge": (d_hinge_pair, g_hinge_pair, {}),
        "rasgan": (d_rasgan, g_rasgan, {"needs_real_in_g": True}),
        "rals": (d_rals, g_rals, {"needs_real_in_g": True}),
        "rahinge": (d_rahinge, g_rahinge, {"needs_real_in_g": True}),
    }
    table["bce"] = table["nonsat"]
    if kind not in table:
        raise ValueError(f"unknown loss kind {kind!r}; known: {', '.join(LOSS_KINDS)}")
    d, g, flags = table[kind]
    return AdversarialLoss(kind, d, g, **flags)


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, *args) -> torch.Tensor:
    """WGAN-GP's (||grad_x C(x_hat)||_2 - 1)^2 per sample at x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1]
    per sample [N, 1, 1, 1] (Gulrajani et al. 2017, Algorithm 1). `args` go to D after the images."""
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grads,) = torch.autograd.grad(D(x_hat, *args).sum(), x_hat, create_graph=True, only_inputs=True)
    return (grads.flatten(1).norm(dim=1) - 1).square()


def clip_weights_(module: torch.nn.Module, clip: float) -> None:
    """WGAN's weight clipping to [-clip, clip] after each critic update (Arjovsky et al. 2017, Algorithm 1)."""
    with torch.no_grad():
        for p in module.parameters():
            p.clamp_(-clip, clip)


def acgan_class_loss(class_logits: torch.Tensor, labels_onehot: torch.Tensor) -> torch.Tensor:
    """ACGAN's auxiliary classifier term -log P(C = c | X) per sample (Odena et al. 2017, Eq. 2-3)."""
    return F.cross_entropy(class_logits, labels_onehot.argmax(dim=1), reduction="none")


def instance_noise(images: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """images + N(0, sigma^2) per pixel (instance noise: Sønderby et al. 2017, Sec. 4; Arjovsky & Bottou 2017)."""
    if sigma <= 0:
        return images
    return images + sigma * torch.randn(images.shape, generator=gen).to(images.device)


def uniform_pixel_noise(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Real images in [-1, 1] (from uint8) + U[0, 2/255): spreads each 8-bit level over its own bin
    (dequantization), so D cannot tell reals by their exact quantized values."""
    return images + torch.rand(images.shape, generator=gen).to(images.device) * (2 / 255)


# Image-to-image translation (pix2pix, CycleGAN, CUT): the GAN losses against constant targets, and
# PatchNCE.


def gan_target_loss(logits: torch.Tensor, real: bool, loss: str) -> torch.Tensor:
    """The loss of D's patch scores against the target 'real' (1) or 'fake' (0), averaged over patches:
    'lsgan' (least squares, Mao et al. 2017: mean (x - t)^2) or 'vanilla' (sigmoid cross-entropy)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    losses = {"lsgan": torch.nn.functional.mse_loss, "vanilla": torch.nn.functional.binary_cross_entropy_with_logits}
    if loss not in losses:
        raise ValueError(f"unknown GAN loss {loss!r}")
    return losses[loss](logits, target)


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, batch: int, tau: float = 0.07) -> torch.Tensor:
    """PatchNCE (Park et al. 2020, Eq. 2-3): per query patch, the cross-entropy of picking its own key
    among the keys of the other patches of the same image.

    feat_q, feat_k: [batch * P, C] L2-normalised features of the same P patch locations in the output
    (queries) and the input (keys, no gradient). Logits are q.k / tau; the positive is the key at the
    same location, the negatives the P - 1 other keys of that image. As in the reference code, the
    positive's own slot among the negatives is kept with the logit -10 / tau (so the softmax has
    1 + P terms). Returns the loss of every query [batch * P].
    """
    k = feat_k.detach()
    n, dim = feat_q.shape
    l_pos = (feat_q * k).sum(1, keepdim=True)  # [n, 1]
    q, kk = feat_q.view(batch, -1, dim), k.view(batch, -1, dim)
    p = q.shape[1]
    l_neg = torch.bmm(q, kk.transpose(2, 1))  # [batch, P, P]
    eye = torch.eye(p, device=q.device, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(eye, -10.0).view(-1, p)
    logits = torch.cat([l_pos, l_neg], 1) / tau
    return torch.nn.functional.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=q.device), reduction="none")
