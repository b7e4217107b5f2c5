"""Why an element did not complete, in one line for `status`: Slurm's state reason, the exit code
or signal, and the last error line of its log, so that a FAILED row is not a dead end."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Optional

from launcher.contract import REQUEUE_EXIT_CODE
from launcher.logs import last_error_line

_STATE_REASONS = {
    "NODE_FAIL": "NODE_FAIL: a node of the job failed",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY: raise the stage's mem_gb",
    "TIMEOUT": "TIMEOUT: the time limit ended it before it saved",
    "PREEMPTED": "PREEMPTED by a higher-priority job",
    "BOOT_FAIL": "BOOT_FAIL: a node did not boot",
    "DEADLINE": "DEADLINE: it could not finish before its deadline",
    "CANCELLED": "CANCELLED",
}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(exit_code: str) -> str:
    """sacct's ExitCode `rc:signal` (or a bare local exit code; negative: killed by that signal)
    → 'exit 1', 'signal 9 (SIGKILL)', 'exit 137 (killed by SIGKILL)'; "" for success."""
    rc, _, sig = str(exit_code or "").partition(":")
    if sig.isdigit() and int(sig):
        return f"signal {sig} ({_signal_name(int(sig))})"
    if not rc.lstrip("-").isdigit() or not int(rc):
        return ""
    code = int(rc)
    if code < 0:
        return f"signal {-code} ({_signal_name(-code)})"
    if code == REQUEUE_EXIT_CODE:
        return f"exit {code} (saved its state; not requeued)"
    if 128 < code < 160:
        return f"exit {code} (killed by {_signal_name(code - 128)})"
    return f"exit {code}"


def explain(state: str, exit_code: str, local: dict[str, Any], log: Optional[Path]) -> str:
    """One line: state reason · exit code or signal · the error recorded or found in the log."""
    parts = []
    if state in _STATE_REASONS:
        parts.append(_STATE_REASONS[state])
    code = describe_exit(exit_code or str(local.get("exit_code", "")))
    if code:
        parts.append(code)
    recorded = str(local.get("error", "")).strip()
    found = last_error_line(log)
    for text in (recorded, found):
        if text and not any(text in p or p in text for p in parts if len(p) > 8):
            parts.append(text)
    return " · ".join(parts)
