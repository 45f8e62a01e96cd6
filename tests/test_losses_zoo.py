"""The loss zoo, regularizers, lr schedules, EMA start and the adaptive D-steps rule against independent
oracles: closed forms in float64 numpy on fixed logits, finite differences, torch's own SGDR scheduler."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gancli.losses import (
    LOSS_KINDS,
    acgan_class_loss,
    adversarial_loss,
    clip_weights_,
    gradient_penalty,
    instance_noise,
    uniform_pixel_noise,
)
from gancli.train.schedules import ema_beta, lr_factor, run_d_steps

R = np.array([1.3, -0.4, 2.2, 0.05, -1.7])  # fixed "real" logits
F = np.array([-0.8, 0.6, -2.5, 1.1, 0.3])  # fixed "fake" logits


def log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def log_one_minus_sigmoid(x):
    return np.log(1 - 1 / (1 + np.exp(-x)))


def relu(x):
    return np.maximum(x, 0)


# Oracles: per-sample (D real part, D fake part, G part), written from the papers' equations.
ORACLES = {
    "nonsat": lambda r, f: (-log_sigmoid(r), -log_one_minus_sigmoid(f), -log_sigmoid(f)),
    "minimax": lambda r, f: (-log_sigmoid(r), -log_one_minus_sigmoid(f), log_one_minus_sigmoid(f)),
    "wgan": lambda r, f: (-r, f, -f),
    "wgan-gp": lambda r, f: (-r, f, -f),
    "lsgan": lambda r, f: (0.5 * (r - 1) ** 2, 0.5 * f**2, 0.5 * (f - 1) ** 2),
    "hinge": lambda r, f: (relu(1 - r), relu(1 + f), -f),
    "rasgan": lambda r, f: (-log_sigmoid(r - f.mean()), -log_one_minus_sigmoid(f - r.mean()),
                            -log_sigmoid(f - r.mean()) - log_one_minus_sigmoid(r - f.mean())),
    "rals": lambda r, f: ((r - f.mean() - 1) ** 2, (f - r.mean() + 1) ** 2,
                          (f - r.mean() - 1) ** 2 + (r - f.mean() + 1) ** 2),
    "rahinge": lambda r, f: (relu(1 - (r - f.mean())), relu(1 + (f - r.mean())),
                             relu(1 - (f - r.mean())) + relu(1 + (r - f.mean()))),
}


@pytest.mark.parametrize("kind", list(LOSS_KINDS))
def test_each_loss_matches_its_closed_form_on_fixed_logits(kind):
    loss = adversarial_loss(kind)
    r, f = torch.tensor(R)[:, None], torch.tensor(F)[:, None]
    d_real, d_fake = loss.d_loss(r, f)
    g = loss.g_loss(f, r if loss.needs_real_in_g else None)
    o_real, o_fake, o_g = ORACLES[kind](R, F)
    np.testing.assert_allclose(d_real.squeeze(1).numpy(), o_real, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_fake.squeeze(1).numpy(), o_fake, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.squeeze(1).numpy(), o_g, rtol=1e-12, atol=1e-12)
    assert loss.needs_real_in_g == kind.startswith("ra")
    assert (loss.clip, loss.gp) == (kind == "wgan", kind == "wgan-gp")


def test_relativistic_g_loss_gradient_flows_through_the_real_mean():
    """Jolicoeur-Martineau's G loss depends on the real logits' mean (not a constant): its gradient with
    respect to one real logit matches finite differences of the oracle."""
    loss = adversarial_loss("rals")
    r = torch.tensor(R, requires_grad=True)
    loss.g_loss(torch.tensor(F), r).mean().backward()
    h = 1e-6
    for i in range(len(R)):
        up, down = R.copy(), R.copy()
        up[i] += h
        down[i] -= h
        fd = (ORACLES["rals"](up, F)[2].mean() - ORACLES["rals"](down, F)[2].mean()) / (2 * h)
        assert math.isclose(float(r.grad[i]), fd, rel_tol=1e-6)


def test_lsgan_abc_coding_and_label_smoothing():
    r, f = torch.tensor(R)[:, None], torch.tensor(F)[:, None]
    ls = adversarial_loss("lsgan", lsgan_abc=(-1.0, 1.0, 0.0))  # Mao et al. Eq. 8 coding
    d_real, d_fake = ls.d_loss(r, f)
    np.testing.assert_allclose(d_fake.squeeze(1).numpy(), 0.5 * (F + 1) ** 2, rtol=1e-12)
    np.testing.assert_allclose(ls.g_loss(f).squeeze(1).numpy(), 0.5 * F**2, rtol=1e-12)
    # one-sided label smoothing: BCE against 0.9 for reals only; its minimum is at sigmoid(x) = 0.9
    smooth = adversarial_loss("nonsat", real_target=0.9)
    d_real, d_fake = smooth.d_loss(r, f)
    oracle = -(0.9 * log_sigmoid(R) + 0.1 * log_one_minus_sigmoid(R))
    np.testing.assert_allclose(d_real.squeeze(1).numpy(), oracle, rtol=1e-12)
    np.testing.assert_allclose(d_fake.squeeze(1).numpy(), -log_one_minus_sigmoid(F), rtol=1e-12)
    x = torch.tensor([math.log(0.9 / 0.1)], dtype=torch.float64, requires_grad=True)
    smooth.d_loss(x, x)[0].sum().backward()
    assert abs(float(x.grad)) < 1e-12


def _central_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[i] += h
        down.flat[i] -= h
        g.flat[i] = (f(up) - f(down)) / (2 * h)
    return g


def test_gradient_penalty_against_finite_differences_and_zero_for_a_1_lipschitz_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(2 * 3 * 3, dtype=torch.float64)
    w_unit = w / w.norm()

    def linear(x):
        return x.flatten(1) @ w_unit

    real, fake = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    eps = torch.rand(4, 1, 1, 1, dtype=torch.float64)
    assert gradient_penalty(linear, real, fake, eps).abs().max() < 1e-24  # ||w|| = 1 everywhere

    def critic(x):  # nonlinear
        return torch.tanh(x.flatten(1) @ w) + 0.3 * (x.flatten(1) ** 2).sum(1)

    penalty = gradient_penalty(critic, real, fake, eps)
    x_hat = (eps * real + (1 - eps) * fake).numpy()
    for i in range(4):
        grad = _central_grad(lambda xi: float(critic(torch.from_numpy(xi)[None])[0]), x_hat[i])
        assert math.isclose(float(penalty[i].detach()), (np.linalg.norm(grad) - 1) ** 2, rel_tol=1e-7)
    D = torch.nn.Linear(18, 1).double()  # the penalty is differentiable in the critic's weights (create_graph)
    p = gradient_penalty(lambda x: D(x.flatten(1)), real, fake, eps)
    p.sum().backward()
    assert D.weight.grad is not None and D.weight.grad.abs().sum() > 0


def test_weight_clipping_and_acgan_class_term():
    m = torch.nn.Linear(5, 3)
    with torch.no_grad():
        m.weight.mul_(100)
    clip_weights_(m, 0.01)
    assert all(float(p.detach().abs().max()) <= 0.01 for p in m.parameters())
    assert float(m.weight.detach().abs().max()) == pytest.approx(0.01)
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
    onehot = torch.tensor([[0, 0, 1], [0, 1, 0]], dtype=torch.float64)
    l_np = logits.numpy()
    oracle = [-(l_np[0, 2] - np.log(np.exp(l_np[0]).sum())), -(l_np[1, 1] - np.log(np.exp(l_np[1]).sum()))]
    np.testing.assert_allclose(acgan_class_loss(logits, onehot).numpy(), oracle, rtol=1e-12)


def test_instance_noise_and_uniform_pixel_noise():
    x = torch.zeros(8, 3, 16, 16)
    a = instance_noise(x, 0.1, torch.Generator().manual_seed(3))
    b = instance_noise(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and abs(float(a.std()) - 0.1) < 0.01 and abs(float(a.mean())) < 0.01
    assert instance_noise(x, 0.0, torch.Generator()) is x
    levels = torch.randint(0, 256, (4, 3, 8, 8)).float()
    reals = levels / 127.5 - 1
    noisy = uniform_pixel_noise(reals, torch.Generator().manual_seed(1))
    diff = noisy - reals
    assert float(diff.min()) >= 0 and float(diff.max()) < 2 / 255 and float(diff.std()) > 0.1 / 255
    assert torch.equal(torch.floor((noisy + 1) * 127.5 + 1e-4), levels)  # still in its own 8-bit bin


def test_instance_noise_anneals_linearly_to_zero():
    from gancli.families.dcgan.steps import instance_noise_sigma

    loss = SimpleNamespace(instance_noise=0.2, instance_noise_kimg=10.0)
    assert [instance_noise_sigma(loss, k) for k in (0, 5, 10, 20)] == pytest.approx([0.2, 0.1, 0.0, 0.0])
    loss.instance_noise_kimg = None
    assert instance_noise_sigma(loss, 1e6) == 0.2


# --------------------------------------------------------------------------------------------------
# Schedules


def _t(**kw):
    base = dict(lr_schedule="constant", lr_decay_start_kimg=0.0, lr_gamma=0.99, lr_period_kimg=100.0,
                lr_period_mult=1.0, lr_min=0.0, total_kimg=100.0)
    base.update(kw)
    return SimpleNamespace(**base)


def test_lr_schedules_match_their_closed_forms():
    assert lr_factor(_t(), 57.0) == 1.0
    lin = _t(lr_schedule="linear", lr_decay_start_kimg=20.0)
    assert [lr_factor(lin, k) for k in (0, 20, 60, 100, 120)] == pytest.approx([1, 1, 0.5, 0, 0])
    exp = _t(lr_schedule="exponential", lr_decay_start_kimg=10.0, lr_gamma=0.9)
    assert [lr_factor(exp, k) for k in (5, 10, 12.5)] == pytest.approx([1, 1, 0.9**2.5])


@pytest.mark.parametrize("mult", [1, 2])
def test_cosine_with_warm_restarts_matches_torch_sgdr(mult):
    """torch.optim.lr_scheduler.CosineAnnealingWarmRestarts is the oracle (epochs = kimg here)."""
    t = _t(lr_schedule="cosine", lr_period_kimg=10.0, lr_period_mult=float(mult), lr_min=0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=mult, eta_min=0.1)
    for kimg in (0.0, 3.3, 9.9, 10.5, 17.0, 29.5, 31.0, 44.4, 75.0):
        sched.step(kimg)
        assert lr_factor(t, kimg) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9), kimg
    shifted = _t(lr_schedule="cosine", lr_period_kimg=10.0, lr_decay_start_kimg=5.0)
    assert lr_factor(shifted, 4.0) == 1.0 and lr_factor(shifted, 10.0) == pytest.approx(0.5)


def test_ema_beta_with_a_start_step_and_the_half_life():
    t = SimpleNamespace(ema_decay=0.999, ema_start=3, ema_kimg=10.0, ema_rampup=None)
    assert [ema_beta(t, 64, s, 0) for s in (0, 2, 3, 10)] == [0.0, 0.0, 0.999, 0.999]
    t.ema_decay = None
    assert ema_beta(t, 64, 0, 0) == pytest.approx(0.5 ** (64 / 10000))


def test_adaptive_d_steps_rule():
    losses = iter([3.0, 2.5, 1.9, 0.5, 0.1, 0.1])
    calls = []

    def d_update():
        calls.append(1)
        return torch.tensor(next(losses), dtype=torch.float64)

    t = SimpleNamespace(d_steps=2, d_loss_threshold=2.0, d_extra_steps=5)
    assert float(run_d_steps(t, d_update)) == 1.9 and len(calls) == 3  # 2 steps, then 1 more until <= 2.0
    calls.clear()
    losses = iter([5.0] * 10)
    t = SimpleNamespace(d_steps=1, d_loss_threshold=2.0, d_extra_steps=3)
    run_d_steps(t, d_update)
    assert len(calls) == 4  # capped by d_extra_steps
    calls.clear()
    t = SimpleNamespace(d_steps=3, d_loss_threshold=None, d_extra_steps=0)
    run_d_steps(t, d_update)
    assert len(calls) == 3
