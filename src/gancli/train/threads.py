"""CPU threads for training, and a watch for steps that stall.

torch starts one OpenMP thread per core. On a machine whose cores are busy with other work, the
extra threads spin against it: on a shared 2-core machine a second thread made each small
convolution about 300x slower (docs/performance.md). So, unless the user chose (train.threads,
`--threads`, or OMP_NUM_THREADS in the environment), training on a CPU (and the commands that load
a checkpoint on a CPU: sample, evaluate, project, ...) uses the cores that are free: the cores this process may run on (`os.sched_getaffinity`) minus the 1-minute load average,
at least one. On an idle machine that is every core, as torch would choose.

Whatever the choice, `StallWatch` looks at every step's time and says once when a step took far
longer than the running median, with the hint to try one thread.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def free_cores(cores: int, load: float | None) -> int:
    """The threads to use on `cores` cores with a 1-minute load average `load` (None: unknown):
    the cores not busy with other work, rounded to the nearest whole core, at least 1."""
    if load is None or not math.isfinite(load):
        return cores
    return int(max(1, min(cores, math.floor(cores - load + 0.5))))


@dataclass
class ThreadChoice:
    threads: int
    reason: str  # for the training's first lines: why this many
    automatic: bool
    reduced: bool = False  # automatic, and fewer than the cores: worth a note


TRAINING_HINT = "--threads N (train.threads) or OMP_NUM_THREADS chooses"


def choose_threads(asked: int | None, environ=os.environ, cores: int | None = None,
                   load: float | None | str = "measure", hint: str = TRAINING_HINT) -> ThreadChoice:
    """The torch thread count for CPU training: `asked` (train.threads), else OMP_NUM_THREADS's, else
    the free cores (`free_cores`)."""
    cores = available_cores() if cores is None else cores
    if asked:
        return ThreadChoice(asked, f"{asked} thread(s) (train.threads)", False)
    env = environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return ThreadChoice(int(env), f"{env} thread(s) (OMP_NUM_THREADS)", False)
    load = load_average() if load == "measure" else load
    n = free_cores(cores, load)
    why = (f"{n} torch thread(s) for {cores} cores: the load average is {load:.1f} (other work), and "
           f"threads spinning against busy cores slow small convolutions badly; {hint}" if n < cores
           else f"{n} thread(s), one per core")
    return ThreadChoice(n, why, True, reduced=n < cores)


def training_threads(asked: int | None, hint: str = TRAINING_HINT) -> ThreadChoice:
    """`choose_threads`, never more than torch's own default (its count of physical cores), applied."""
    import torch

    choice = choose_threads(asked, hint=hint)
    if choice.automatic and choice.threads > torch.get_num_threads():
        choice.threads = torch.get_num_threads()
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


@dataclass
class StallWatch:
    """Feed it each step's seconds (`step(seconds)`); it returns a warning, once, when a step takes
    more than `factor` times the median of the steps before it (after `warmup` steps, and at least
    `min_seconds`, so that timer noise of tiny steps never counts). Steps that include a snapshot,
    a grid or a metric are not fed (they are slow by design)."""

    factor: float = 10.0
    warmup: int = 20
    min_seconds: float = 1.0
    window: int = 200
    times: list[float] = field(default_factory=list)
    warned: bool = False

    def step(self, seconds: float, step: int | None = None) -> str | None:
        message = None
        if not self.warned and len(self.times) >= self.warmup:
            median = statistics.median(self.times)
            if seconds > self.factor * median and seconds >= self.min_seconds:
                self.warned = True
                where = f"step {step}" if step is not None else "a step"
                message = (f"{where} took {seconds:.1f} s, {seconds / max(median, 1e-9):.0f}x the median "
                           f"{median:.2f} s: the CPU may be oversubscribed (other work, or OpenMP threads "
                           "spinning against it); try OMP_NUM_THREADS=1 or --threads 1 (train.threads)")
        self.times.append(seconds)
        if len(self.times) > self.window:
            del self.times[0]
        return message
