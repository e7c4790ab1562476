"""Progress for long world work (building, checking): a rich bar on a terminal, a few plain lines
otherwise, always on standard error, so a pipe reading standard output sees only data."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

Report = Callable[[str, int, int], None]  # (what, done, total)

QUIET_BELOW = 20_000  # records: smaller worlds build in well under a second, say nothing


@contextmanager
def progress(title: str, total: int, stream: IO[str] | None = None) -> Iterator[Report]:
    """A reporter of `(what, done, total)` steps towards `total`.

    On a terminal: a rich progress bar. Otherwise: one plain line when it starts, one at each
    quarter and one when it ends. Below `QUIET_BELOW` it reports nothing at all.
    """
    out = stream if stream is not None else sys.stderr
    if total < QUIET_BELOW:
        yield lambda what, done, of: None
        return
    if out.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[what]}"),
            TimeElapsedColumn(),
            console=Console(file=out),
            transient=False,
        )
        with bar:
            task = bar.add_task(title, total=total, what="")

            def report(what: str, done: int, of: int) -> None:
                bar.update(task, completed=done, what=what)

            yield report
        return
    start = time.perf_counter()
    marks = [total // 4, total // 2, 3 * total // 4]
    print(f"{title}: started ({total:,} steps)", file=out, flush=True)

    def plain(what: str, done: int, of: int) -> None:
        while marks and done >= marks[0]:
            marks.pop(0)
            pct = 100 * done // max(total, 1)
            print(f"{title}: {pct}% ({what})", file=out, flush=True)

    yield plain
    print(f"{title}: done in {time.perf_counter() - start:.1f} s", file=out, flush=True)
