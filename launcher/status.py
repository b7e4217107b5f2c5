"""`mftlaunch status`: one row per job and array element, from one squeue call, one sacct call
for what squeue no longer knows, and the run directory's own state files and sentinels.

Works with accounting disabled (sacct fails → finished elements are read from sentinels and
state files). PREEMPTED / REQUEUED / REQUEUE_HOLD are shown but never treated as final.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from launcher import failure_reason, logs, slurm
from launcher.contract import required_upstream, submitted_elements
from launcher.rundir import RunDir, read_json
from launcher.submit import is_running


#: States of an element that is still queued or running: no failure to explain yet.
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                 "SIGNALING", "STAGE_OUT", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED"}


@dataclass
class ElementStatus:
    stage: str
    index: int
    key: str
    job_id: str
    state: str
    node: str
    elapsed: str
    restarts: int
    done: bool
    note: str = ""
    progress: str = ""  # the last progress line of a running element (rate, ETA)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def element_job_ids(manifest: dict[str, Any], plan: dict[str, Any]) -> dict[tuple[str, int], str]:
    """(stage, index) → the Slurm id of its latest submission ("123" or "123_4")."""
    return {(stage, index): slurm_id for stage, index, slurm_id in submitted_elements(manifest, plan)}


def _elapsed(state: dict[str, Any]) -> str:
    started = state.get("started")
    if not started:
        return ""
    seconds = int((state.get("ended") or time.time()) - started)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _incomplete_upstream(run_dir: RunDir, plan: dict[str, Any], stage: str, index: int) -> str:
    """The first element this one needed that has no sentinel ("generate[3]"), or ""."""
    for up_stage, up_index, _ in required_upstream(plan, stage, index):
        if not run_dir.is_done(up_stage, up_index):
            return f"{up_stage}[{up_index}]"
    return ""


def read_status(run_dir: RunDir) -> tuple[list[ElementStatus], list[str]]:
    """Rows plus warnings (e.g. accounting disabled)."""
    plan = read_json(run_dir.plan_file)
    manifest = read_json(run_dir.manifest_file)
    warnings: list[str] = []
    accounting = True
    queue_known = True  # whether squeue said what is (not) in the queue
    live: dict[str, slurm.JobRow] = {}
    queued: set[str] = set()  # ids squeue listed (the rest of `live` comes from sacct)
    ids = element_job_ids(manifest, plan) if manifest.get("scheduler") == "slurm" else {}
    if ids:
        bases = {i.split("_")[0] for i in ids.values()}
        try:
            live = {r.job_id: r for r in slurm.squeue(bases)}
        except slurm.SlurmError as exc:
            queue_known = slurm.queue_forgot(exc)
            warnings.append(f"squeue: {exc}")
        queued = set(live)
        missing = {i.split("_")[0] for i in ids.values() if i not in live}
        if missing:
            try:
                start = manifest["submit_time"]
                live.update({r.job_id: r for r in slurm.sacct(missing, start) if r.job_id not in live})
            except slurm.SlurmError as exc:
                accounting = False
                warnings.append(f"sacct unavailable ({exc}); finished elements are read from sentinels")
    local_scheduler_gone = manifest.get("scheduler") == "local" and not is_running(manifest.get("local_pid") or 0)
    rows = []
    latest_logs: Optional[dict[tuple[str, int], Path]] = None  # scanned once, when a failure needs it
    for job in plan["jobs"]:
        for index, item in enumerate(job["items"]):
            try:
                local = run_dir.read_state(job["stage"], index)
            except (OSError, ValueError):
                local = {}
                warnings.append(f"{run_dir.element_state(job['stage'], index)} is damaged; ignored")
            done = run_dir.is_done(job["stage"], index)
            job_id = ids.get((job["stage"], index), local.get("job_id", ""))
            row = live.get(job_id)
            state = row.state if row else (local.get("state") or ("COMPLETED" if done else "UNKNOWN"))
            note = ""
            if state == "PREEMPTED" and job_id not in queued and queue_known and not done:
                # a requeued job is back in squeue; one only sacct knows was preempted for good
                state, note = "ENDED", "PREEMPTED and not requeued (PreemptMode=CANCEL?)"
            if row and row.reason and row.reason not in ("None", "(null)"):
                note = row.reason
            if state == "COMPLETED" and not done:
                note = "no completion sentinel: the job ended without finishing its work"
            if row is None and not done and state in ("PENDING", "RUNNING", "REQUEUED"):
                # its own record says it is not finished, but whatever ran it is gone
                if local_scheduler_gone:
                    state, note = "LOST", "the local scheduler stopped; `mftlaunch resume` reruns it"
                elif ids and queue_known:
                    state, note = "ENDED", ("left the queue without a completion sentinel"
                                            + ("" if accounting else " (no accounting to say why)"))
            never_ran = ""
            cancelled_unstarted = state == "CANCELLED" and row is not None and not row.node
            forgotten = row is None and state == "UNKNOWN" and bool(ids) and queue_known
            if not done and (cancelled_unstarted or forgotten):
                # Slurm cancels an element whose dependency can never be met (kill-on-invalid-dep)
                never_ran = _incomplete_upstream(run_dir, plan, job["stage"], index)
                if never_ran:
                    state = "ENDED" if state == "UNKNOWN" else state
                    note = f"never ran: {never_ran} did not complete"
            if not done and state not in ACTIVE_STATES and not never_ran:
                if latest_logs is None:
                    latest_logs = logs.latest_logs(run_dir)
                reason = failure_reason.explain(state, row.exit_code if row else "", local,
                                                latest_logs.get((job["stage"], index)))
                note = "; ".join(n for n in (note, reason) if n)
            rows.append(ElementStatus(
                stage=job["stage"], index=index, key=item["key"], job_id=job_id, state=state,
                node=(row.node if row and row.node else local.get("host", "")),
                elapsed=(row.elapsed if row else _elapsed(local)), restarts=int(local.get("restarts", 0)),
                done=done, note=note,
                progress=run_dir.read_progress(job["stage"], index) if state == "RUNNING" and not done else "",
            ))
    return rows, warnings


def summary(rows: list[ElementStatus]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def print_table(run_dir: RunDir, rows: list[ElementStatus], warnings: list[str], console: Optional[Any] = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: wide enough for one line per element
            console = Console(width=200)
    table = Table(title=str(run_dir.root), show_lines=False)
    for col in ("stage", "idx", "item", "job id", "state", "node", "elapsed", "restarts", "done"):
        table.add_column(col, no_wrap=True)
    table.add_column("note / progress", overflow="ellipsis", no_wrap=True, max_width=90)
    colours = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "red", "TIMEOUT": "red", "RUNNING": "cyan"}
    for r in rows:
        state = f"[{colours.get(r.state, 'yellow')}]{r.state}[/]"
        table.add_row(r.stage, str(r.index), r.key, r.job_id, state, r.node, r.elapsed, str(r.restarts),
                      "yes" if r.done else "", (r.note or r.progress)[:100])
    console.print(table)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
