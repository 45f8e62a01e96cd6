"""CPU threads for training, and a watch for steps that stall.

torch starts one OpenMP thread per core. On a machine whose cores are busy with other work, the
extra threads spin against it: on a shared 2-core machine a second thread made each small
convolution about 300x slower (docs/performance.md). So, unless the user chose (train.threads,
`--threads`, or OMP_NUM_THREADS in the environment), training on a CPU (and the commands that load
a checkpoint on a CPU: sample, evaluate, project, ...) uses the cores that are free: the cores this
process may run on (`os.sched_getaffinity`) minus the cores other processes keep busy right now, at
least one. "Right now" is measured over 0.15 s from /proc/stat (this process's own time left out),
not from the 1-minute load average, which still counts work that ended a minute ago (a `pip
install` or the previous command just before training); the load average is the fallback where
/proc/stat cannot be read. On an idle machine that is every core, as torch would choose.

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


def _cpu_times() -> tuple[int, int, int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat, this process's own (user + system) ticks
    from /proc/self/stat, and the number of CPUs listed."""
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    fields = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    total, idle = sum(fields), fields[3] + fields[4]
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()  # fields after the command name
    return total - idle, total, int(own[11]) + int(own[12]), max(1, cpus)  # utime, stime


def busy_elsewhere(window: float = 0.15, read=_cpu_times, sleep=None) -> float | None:
    """The cores that other processes keep busy now: the CPUs' busy ticks over `window` seconds, less
    this process's own, in cores (None where /proc/stat cannot be read)."""
    import time

    try:
        busy0, total0, own0, cpus = read()
        (sleep or time.sleep)(window)
        busy1, total1, own1, _ = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    per_cpu = (total1 - total0) / cpus  # ticks of one CPU over the window
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / per_cpu


def load_average() -> float | None:
    """The cores other work keeps busy: measured now (`busy_elsewhere`), else the 1-minute load average."""
    now = busy_elsewhere()
    if now is not None:
        return now
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def free_cores(cores: int, load: float | None) -> int:
    """The threads to use on `cores` cores when other work keeps `load` cores busy (None: unknown):
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
    why = (f"{n} torch thread(s) for {cores} cores: other work keeps {load:.1f} cores busy, and "
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
