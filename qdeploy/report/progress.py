"""A rich progress bar over a known number of steps, on stderr, only when asked
(``quantize`` asks when not ``--quiet`` and stderr is a terminal)."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def steps(what: str, total: int, enabled: bool):
    """Yields ``step(name)``: advance by one and show ``name``."""
    if not enabled:
        yield lambda _name: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[now]}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as p:
        task = p.add_task(what, total=total, now="")
        yield lambda name: p.update(task, advance=1, now=name)
