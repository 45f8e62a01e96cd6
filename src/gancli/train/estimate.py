"""How long a training plan would take here: `gancli train --dry-run` times the real networks.

A dry run of a long plan (at least LONG_PLAN_STEPS steps) builds the recipe's G and D with random
weights on this CPU and times them, with the threads training would use
(train/threads.py):

- one forward pass of G and D is timed; when it is cheap (a whole step of the recipe's per-device
  batch fits in STEP_BUDGET_S), three real step-shaped passes of that batch are timed too, G's (z -> G -> D, backward through both) and D's (fakes without grad,
  D on fakes and on reals, backward), and the fastest is taken;
- otherwise only the forward pass of TIMING_BATCH images is timed (seconds at full StyleGAN2 size on a CPU) and the step is
  estimated as FORWARDS_PER_STEP of them: a backward costs about two forwards, so G's phase is
  3 G + 3 D forwards and D's phase 1 G + 6 D, 4 G + 9 D in all, about 6.5 (G + D) forwards.

The timing runs in a child process that gets TIMING_BUDGET_S seconds (GANCLI_TIMING_BUDGET_S): the
dry run itself never imports torch, and big networks (BigGAN at 128 px takes 30-60 s to build on a
busy 2-core CPU) end in one line saying the timing did not finish.

Regularizers (R1, path length, ...), the optimizer update and data loading are not counted, so the
time is a lower bound. Families whose generator does not take z (translators, VQ-VAE-2) and runs on
a CUDA device are not timed (the dry run says so): a GPU dry run would have to build CUDA kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LONG_PLAN_STEPS = 10_000  # shorter plans (the quick start: 5,000 steps) keep their instant dry run
TIMING_BATCH = 1  # images per timed forward pass (in eval mode, so batch norm takes one)
STEP_BUDGET_S = 3.0  # a step-shaped pass is timed only when it should take less than this
FORWARDS_PER_STEP = 6.5  # a training step per image ~ this many (G + D) forward passes (see above)
TIMING_BUDGET_S = 30.0  # the dry run waits this long for the timing process, then says it did not finish


@dataclass
class RateEstimate:
    img_per_s: float  # training images per second on this device
    how: str  # what was timed, for the plan line
    threads: int


def plan_duration(seconds: float) -> str:
    """'about 40 minutes', 'about 9.3 hours', 'about 12 days', 'about 3.4 years'."""
    minutes, hours, days = seconds / 60, seconds / 3600, seconds / 86400
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {minutes:.0f} minutes"
    if hours < 48:
        return f"about {hours:.1f} hours"
    if days < 365:
        return f"about {days:.0f} days"
    return f"about {days / 365.25:.1f} years"


def _rate(img_per_s: float) -> str:
    return f"{img_per_s:,.0f}" if img_per_s >= 100 else (f"{img_per_s:.1f}" if img_per_s >= 1 else f"{img_per_s:.2g}")


def measure_rate(recipe) -> RateEstimate | str:
    """Images/s of training the recipe's networks on this CPU, or one line saying why it was not timed."""
    import torch

    from gancli.train.device import resolve_device

    family = recipe.family
    if "seeds" not in family.capabilities or {"image_in", "encode"} & family.capabilities:
        return f"not timed: a {recipe.model.kind} step is not a G(z) -> D step"
    device = resolve_device(recipe)
    if device.type != "cpu":
        return f"not timed on {device.type} (a dry run times the networks on a CPU only)"
    if recipe.ops == "cuda":
        return "not timed: ops 'cuda' needs a CUDA device"
    from gancli.train.threads import training_threads

    previous_threads = torch.get_num_threads()
    training_threads(recipe.train.threads)  # as many threads as training would use here
    try:  # CPU tensors always run the reference ops: nothing is compiled
        return _time_networks(recipe, torch)
    finally:
        torch.set_num_threads(previous_threads)


def _time_networks(recipe, torch) -> RateEstimate:
    n = TIMING_BATCH
    t = recipe.train
    batch = t.batch_gpu or t.batch // recipe.distributed.gpus  # what one training pass processes
    res = recipe.data.resolution
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G, D = recipe.family.build_networks(recipe, c_dim=0)
        G.eval(), D.eval()
        with torch.no_grad():  # the forward pass's cost; a cheap first pass was a warm-up: time a second
            for _ in range(2):
                start = time.perf_counter()
                D(G(torch.randn([n, recipe.model.z_dim]), torch.zeros([n, 0])), torch.zeros([n, 0]))
                forward = time.perf_counter() - start
                if forward >= 1.0:  # seconds per pass: once is enough
                    break
        threads = torch.get_num_threads()
        if forward * FORWARDS_PER_STEP * batch / n > STEP_BUDGET_S:  # too slow to time real steps
            per_image = forward * FORWARDS_PER_STEP / n
            return RateEstimate(1 / per_image, f"G + D forward of {n} image{'s' if n > 1 else ''} timed, "
                                f"x{FORWARDS_PER_STEP:g} for a step",
                                threads)
        G.train(), D.train()
        z, c = torch.randn([batch, recipe.model.z_dim]), torch.zeros([batch, 0])
        reals = torch.rand([batch, 3, res, res]) * 2 - 1
        best = float("inf")
        for _ in range(3):  # the first is the warm-up of the backward passes
            start = time.perf_counter()
            D(G(z, c), c).sum().backward()  # G's phase
            with torch.no_grad():
                fakes = G(z, c)
            (D(fakes, c).sum() + D(reals, c).sum()).backward()  # D's phase
            best = min(best, time.perf_counter() - start)
            G.zero_grad(set_to_none=True)
            D.zero_grad(set_to_none=True)
        return RateEstimate(batch / best, f"G and D steps of batch {batch} timed", threads)


def timing_budget() -> float:
    """Seconds the dry run waits for the timing (GANCLI_TIMING_BUDGET_S, default TIMING_BUDGET_S)."""
    try:
        return float(os.environ.get("GANCLI_TIMING_BUDGET_S") or TIMING_BUDGET_S)
    except ValueError:
        return TIMING_BUDGET_S


def measure_rate_bounded(recipe, budget: float | None = None) -> RateEstimate | str:
    """`measure_rate` in a child process that may take `budget` seconds (building big networks on a CPU
    can take a minute): the dry run itself never imports torch, and never waits longer."""
    import gancli

    budget = timing_budget() if budget is None else budget
    env = dict(os.environ)
    root = str(Path(gancli.__file__).resolve().parents[1])  # this gancli, also from a checkout
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "from gancli.train.estimate import _child_main; _child_main()"
    try:
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(recipe.to_dict()), capture_output=True,
                              text=True, env=env, timeout=budget)
    except subprocess.TimeoutExpired:
        return (f"not timed: building and timing the networks here took over {budget:g} s (so a step takes "
                "seconds at least; GANCLI_TIMING_BUDGET_S=SECONDS waits longer)")
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"not timed: timing the networks failed ({last[:200]})"
    if "not_timed" in answer:
        return answer["not_timed"]
    return RateEstimate(answer["img_per_s"], answer["how"], answer["threads"])


def _child_main() -> None:
    """The timing process: a recipe (JSON) on stdin, one JSON line on stdout."""
    from gancli.recipe import Recipe

    recipe = Recipe.from_dict(json.loads(sys.stdin.read()), origin="the dry run's recipe")
    rate = measure_rate(recipe)
    print(json.dumps({"not_timed": rate} if isinstance(rate, str) else
                     {"img_per_s": rate.img_per_s, "how": rate.how, "threads": rate.threads}))


def plan_time_line(recipe, steps: int) -> str | None:
    """The dry run's 'time' line for a long plan: the rate here and what the plan would take."""
    if steps < LONG_PLAN_STEPS:
        return None
    total_images = recipe.train.total_kimg * 1000
    rate = measure_rate_bounded(recipe)
    if isinstance(rate, str):
        return rate
    where = f"this CPU, {rate.threads} thread{'s' if rate.threads != 1 else ''}"
    return (f"at ~{_rate(rate.img_per_s)} img/s on {where} ({rate.how}; regularizers not counted) "
            f"{recipe.train.total_kimg:g} kimg is {plan_duration(total_images / rate.img_per_s)}")
