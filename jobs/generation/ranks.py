"""Data-parallel generation: which rows each rank of an element generates, and how rank 0 waits
for the others before writing the one generations file.

The rows are sorted and cut into the batches one rank would form, and rank r takes batches
r, r + W, r + 2W, ... (W ranks). Each batch is then exactly a batch of the one-rank run, with the
same rows, padding and sampling seed, so the generations file is byte-identical whatever the
rank count (the rows also alternate long and short, which balances the ranks). The ranks meet
through their progress files on the shared run directory, not a process group: a rank that
finishes early exits, a requeued element resumes every rank from its own file, and rank 0 needs no
collective that would hang when a peer is gone (srun's --kill-on-bad-exit ends the step then).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from jobs.context import RequeueRequested
from jobs.generation.progress import rows_in_files
from jobs.generation.rows import Row, batches

POLL_S = 2.0


def rank_share(ordered: Sequence[Row], batch_rows: Optional[int], rank: int, world_size: int) -> list[Row]:
    """The rows of `ordered` (sorted, overlong ones left out) that `rank` generates: every
    world_size-th batch of `batch_rows` rows (single rows for an engine that takes all at once)."""
    units = list(batches(ordered, batch_rows or 1))
    return [row for unit in units[rank::world_size] for row in unit]


def wait_for_rows(keys: set[str], files: Callable[[], Sequence], fingerprint: str,
                  should_stop: Callable[[], bool], log: Callable[[str], None],
                  poll_s: float = POLL_S) -> dict[str, dict]:
    """Poll the progress files until they hold every row in `keys`; return the rows. Hands back
    (RequeueRequested) when asked to stop meanwhile: the other ranks keep their files."""
    last_report = 0.0
    while True:
        rows = rows_in_files(files(), fingerprint)
        missing = keys - rows.keys()
        if not missing:
            return rows
        if should_stop():
            raise RequeueRequested(f"waiting for {len(missing)} rows of other ranks")
        if time.time() - last_report > 60:
            log(f"mftlaunch: rank 0 waits for {len(missing)} of {len(keys)} rows from the other ranks")
            last_report = time.time()
        time.sleep(poll_s)
