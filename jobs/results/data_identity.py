"""Which benchmark data a run's generations and scores came from, and refusing to mix them.

Every generate element records the sha256 of the data file it read in its completion sentinel,
every evaluate element in its metrics (`config.data_sha256`, beside `data_pinned_sha256`).
Scores are comparable only on the same bytes (HumanEvalPack changed in 2024), so:

- the evaluate stage refuses generations made from other data than the data it scores against;
- the collector marks a task failed when its generations and its evaluation used different
  data, or when it used other data than the pinned copy while other tasks used the pinned copy.
"""
from __future__ import annotations

from typing import Iterable, Optional

from jobs.code_benchmarks.data import pinned_sha256_of
from launcher.rundir import RunDir, read_json


def generation_data_sha256(run_dir: RunDir, benchmark: str, model: Optional[str] = None) -> dict[str, Optional[str]]:
    """{generate item key: data sha256 its sentinel recorded for `benchmark`} for every finished
    generate element holding a piece of `benchmark` (of `model`, when given). A sentinel records
    `data_sha256` as {benchmark: sha256} (an element may hold pieces of several benchmarks)."""
    try:
        plan = read_json(run_dir.plan_file)
        job = next(j for j in plan["jobs"] if j["stage"] == "generate")
    except (OSError, ValueError, KeyError, StopIteration):
        return {}
    out: dict[str, Optional[str]] = {}
    for index, item in enumerate(job.get("items", [])):
        if not any(p["benchmark"] == benchmark and model in (None, p["model"]) for p in item.get("pieces", [])):
            continue
        record = run_dir.done_record("generate", index)
        if record is not None:
            out[str(item.get("key"))] = (record.get("data_sha256") or {}).get(benchmark)
    return out


def generation_mismatch(benchmark: str, evaluated_sha: Optional[str], generated: dict[str, Optional[str]]) -> str:
    """Why generations and evaluation of `benchmark` do not share their data ("" when they do)."""
    other = {key: sha for key, sha in generated.items() if sha and evaluated_sha and sha != evaluated_sha}
    if not other:
        return ""
    shown = ", ".join(f"{key} {sha[:12]}" for key, sha in sorted(other.items()))
    return (f"generations of {benchmark} were made from other benchmark data ({shown}) than the data it is "
            f"scored against ({evaluated_sha[:12]}); generate again with the same data_dir")


def mixed_pin_reasons(tasks: Iterable[tuple[str, Optional[str]]]) -> dict[str, str]:
    """{task: reason} for tasks scored on data other than the pinned copy while other tasks used
    the pinned copy. `tasks` holds (task, data sha256 from its metrics, None when unknown)."""
    known = [(task, sha) for task, sha in tasks if sha]
    pinned = [task for task, sha in known if sha == pinned_sha256_of(task)]
    if not pinned:
        return {}
    return {task: (f"scored on benchmark data {sha[:12]}, not the pinned copy {pinned_sha256_of(task)[:12]} "
                   f"that {', '.join(pinned[:3])}{' ...' if len(pinned) > 3 else ''} used; refusing to mix data "
                   "versions (evaluate every task on the same data)")
            for task, sha in known if sha != pinned_sha256_of(task)}

