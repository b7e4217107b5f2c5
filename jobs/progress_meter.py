"""Progress lines people can read: done/total, elapsed, ETA and rate of one element's work.

The line is formatted by tqdm (its `format_meter`, the same arithmetic as its bars) but printed
as one plain line per update, because a batch log is a file, not a terminal: carriage-return
bars would leave one unreadable line. Each line also goes to a sink, usually
`RunDir.write_progress`, so `mftlaunch status` can show the last one of every running element.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from tqdm import tqdm

LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class ProgressMeter:
    """Counts units of work (rows, programs) of one element; `initial` are those done before this
    attempt (a resumed element), so the rate and the ETA count only this attempt's work."""

    def __init__(self, desc: str, total: int, unit: str, *, initial: int = 0,
                 log: Callable[[str], None] = lambda line: print(line, flush=True),
                 sink: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.initial = initial
        self.log = log
        self.sink = sink
        self.clock = clock
        self.started = clock()

    def line(self, done: int, extra: str = "") -> str:
        """The progress line for `done` units finished (including `initial`)."""
        return tqdm.format_meter(done, self.total, self.clock() - self.started, prefix=self.desc,
                                 unit=self.unit, initial=self.initial, bar_format=LINE_FORMAT,
                                 postfix=extra or None)

    def update(self, done: int, extra: str = "") -> str:
        """Log the line for `done` units and hand it to the sink; returns it."""
        text = self.line(done, extra)
        self.log(text)
        if self.sink is not None:
            self.sink(text)
        return text
