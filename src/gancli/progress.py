"""Progress bars for long work: one look everywhere (count, images/s, elapsed, ETA), on stderr, and
silent when disabled or when stderr is not a terminal. rich is imported only when a bar is made."""

from __future__ import annotations


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
                  transient: bool = False, **fields):
    """(progress, task): `columns`, then elapsed time and ETA, on stderr; off when disabled or not a terminal.

    `fields` are the task's initial custom fields (for columns such as "{task.fields[loss]}").
    """
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    progress = Progress(*columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                        transient=transient, disable=not (enabled and console.is_terminal))
    return progress, progress.add_task(description, total=total, **fields)
