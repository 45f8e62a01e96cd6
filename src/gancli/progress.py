"""Progress for long work: one look everywhere (count, images/s, elapsed, ETA), on stderr.

On a terminal it is a rich progress bar. When stderr is not a terminal (a log file, a pipe, a batch
job) a bar would be noise, but silence for minutes is worse: there a plain line is printed every
`plain_interval()` seconds of work (20 by default, `GANCLI_PROGRESS_INTERVAL` to change it), with
the count, the rate and the ETA, and one closing line when at least one was printed, so short work
stays quiet. Nothing is shown when disabled. rich is imported only when a bar is made.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

PLAIN_INTERVAL_S = 20.0  # seconds between plain lines off a terminal


def plain_interval() -> float:
    """Seconds between plain progress lines (GANCLI_PROGRESS_INTERVAL, default PLAIN_INTERVAL_S)."""
    value = os.environ.get("GANCLI_PROGRESS_INTERVAL")
    try:
        return max(0.0, float(value)) if value else PLAIN_INTERVAL_S
    except ValueError:
        return PLAIN_INTERVAL_S


def rate_column():
    """A rich column showing the task's speed in images per second."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} img/s" if speed else "- img/s", style="progress.data.speed")

    return ImagesPerSecond()


def image_progress(total: int | None, description: str, enabled: bool = True, transient: bool = False):
    """(progress, task): a rich Progress with one task; use `with progress:` and `progress.update(task, advance=n)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    return task_progress(total, description, [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                              rate_column()], enabled=enabled, transient=transient)


def task_progress(total: int | None, description: str, columns: list, *, enabled: bool = True,
                  transient: bool = False, unit: str = "images", **fields):
    """(progress, task): `columns`, then elapsed time and ETA, on stderr; off when disabled. Off a
    terminal: `PlainProgress` lines instead (in `unit`, e.g. 'images' or 'steps').

    `fields` are the task's initial custom fields (for columns such as "{task.fields[loss]}").
    """
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if enabled and not console.is_terminal:
        progress: Any = PlainProgress(unit=unit)
    else:
        progress = Progress(*columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                            transient=transient, disable=not enabled)
    return progress, progress.add_task(description, total=total, **fields)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class PlainProgress:
    """The part of rich's Progress that gancli uses (add_task, update, advance, a context), printing a
    plain line to stderr at most every `interval` seconds:

        gancli: generated features 1,024/50,000 images (2.0%), 35.2 img/s, elapsed 0:00:29, ETA 0:23:10

    The rate is the mean since the task started. `clock` is injectable for tests.
    """

    def __init__(self, unit: str = "images", interval: float | None = None, stream=None, clock=time.monotonic):
        self.unit = unit
        self.interval = plain_interval() if interval is None else interval
        self.stream = stream
        self.clock = clock
        self.tasks: list[dict[str, Any]] = []
        self.lines = 0
        self._lock = threading.Lock()

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        now = self.clock()
        self.tasks.append({"description": description, "total": total, "completed": completed, "start": now,
                           "start_completed": completed, "last": now, "fields": dict(fields), "printed": 0})
        return len(self.tasks) - 1

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **fields) -> None:
        with self._lock:
            t = self.tasks[task]
            if total is not None:
                t["total"] = total
            if description is not None:
                t["description"] = description
            if completed is not None:
                t["completed"] = completed
            if advance is not None:
                t["completed"] += advance
            t["fields"].update(fields)
            now = self.clock()
            if now - t["last"] >= self.interval:
                t["last"] = now
                self._print(t, now)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def line(self, t: dict[str, Any], now: float, done: bool = False) -> str:
        elapsed = max(now - t["start"], 1e-9)
        count, total = t["completed"], t["total"]
        rate = (count - t["start_completed"]) / elapsed
        unit_rate = "img/s" if self.unit == "images" else f"{self.unit}/s"
        text = f"gancli: {t['description']} {count:,.0f}" + (f"/{total:,.0f}" if total else "") + f" {self.unit}"
        if total and not done:
            text += f" ({100 * count / total:.1f}%)"
        text += f", {rate:,.1f} {unit_rate}, elapsed {_clock(elapsed)}"
        if done:
            text += ", done"
        elif total and rate > 0:
            text += f", ETA {_clock(max(0.0, total - count) / rate)}"
        shown = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in t["fields"].items()]
        return text + ("; " + ", ".join(shown) if shown else "")

    def _print(self, t: dict[str, Any], now: float, done: bool = False) -> None:
        stream = self.stream or sys.stderr  # looked up late: tests and callers may swap sys.stderr
        print(self.line(t, now, done), file=stream, flush=True)
        t["printed"] += 1
        self.lines += 1

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        if exc and exc[0] is not None:
            return
        now = self.clock()
        for t in self.tasks:
            if t["printed"]:  # long work said it was going on; say it ended
                self._print(t, now, done=True)
