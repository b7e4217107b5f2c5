"""What a run cost: GPU-hours and CPU-hours per element, per stage and per model.

On Slurm the figures come from ONE `sacct` call over every job id the run ever submitted
(resumes included) with `--duplicates`, so each requeued attempt of an element is a row of its own:
an attempt costs ElapsedRaw seconds x the GPUs and CPUs of its AllocTRES. Without accounting the
element state files give started/ended x the plan's resources (the last attempt only; said so).
On the local profile the scheduler records every attempt's measured wall time and the CPUs and
GPUs it gave the element (`usage` in the element's state file).
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

from launcher.contract import submitted_elements
from launcher.rundir import RunDir, read_json

SACCT_FIELDS = "JobID,State,AllocTRES,ElapsedRaw"
#: the bucket of elements that belong to no single model (training, merging, collecting)
SHARED = "(shared)"


@dataclass
class ElementCost:
    stage: str
    index: int
    key: str
    #: the models this element worked for and each one's share of its cost (shares sum to 1)
    models: dict[str, float]
    attempts: int = 0
    elapsed_s: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    running: bool = False

    @property
    def cpu_hours(self) -> float:
        return self.cpu_seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    def add_attempt(self, seconds: float, cpus: int, gpus: int, running: bool = False) -> None:
        self.attempts += 1
        self.elapsed_s += seconds
        self.cpu_seconds += seconds * cpus
        self.gpu_seconds += seconds * gpus
        self.running = self.running or running

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_hours": round(self.cpu_hours, 6), "gpu_hours": round(self.gpu_hours, 6)}


@dataclass
class RunCost:
    """Every element's cost and where the figures came from ("sacct", "local", "state files")."""

    source: str
    elements: list[ElementCost]
    notes: list[str] = field(default_factory=list)

    def _totals(self, elements: Iterable[ElementCost]) -> dict[str, float]:
        elements = list(elements)
        return {"gpu_hours": round(sum(e.gpu_hours for e in elements), 6),
                "cpu_hours": round(sum(e.cpu_hours for e in elements), 6),
                "elapsed_s": round(sum(e.elapsed_s for e in elements), 3),
                "attempts": sum(e.attempts for e in elements)}

    @property
    def total(self) -> dict[str, float]:
        return self._totals(self.elements)

    def by_stage(self) -> dict[str, dict[str, float]]:
        stages = list(dict.fromkeys(e.stage for e in self.elements))
        return {s: self._totals(e for e in self.elements if e.stage == s) for s in stages}

    def by_model(self) -> dict[str, dict[str, float]]:
        """Each model's share of the elements that worked for it; training, merging (of a single
        model) and collecting are under SHARED."""
        out: dict[str, dict[str, float]] = {}
        for e in self.elements:
            for model, share in e.models.items():
                t = out.setdefault(model, {"gpu_hours": 0.0, "cpu_hours": 0.0, "elapsed_s": 0.0})
                t["gpu_hours"] += e.gpu_hours * share
                t["cpu_hours"] += e.cpu_hours * share
                t["elapsed_s"] += e.elapsed_s * share
        return {m: {k: round(v, 6) for k, v in t.items()} for m, t in out.items()}

    @property
    def running(self) -> bool:
        return any(e.running for e in self.elements)

    def summary_line(self) -> str:
        t = self.total
        so_far = " so far" if self.running else ""
        return (f"cost{so_far}: {t['gpu_hours']:.3f} GPU-hours, {t['cpu_hours']:.3f} CPU-hours "
                f"({t['attempts']} attempts, from {self.source})")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "total": self.total, "by_stage": self.by_stage(),
                "by_model": self.by_model(), "running": self.running, "notes": self.notes,
                "elements": [e.to_dict() for e in self.elements]}


# ---------------------------------------------------------------------------------------------
# reading sacct


def parse_tres(tres: str) -> tuple[int, int]:
    """(cpus, gpus) of an AllocTRES string such as `billing=4,cpu=4,gres/gpu=2,mem=8G,node=1`.
    Typed GPU counts (`gres/gpu:a100=2`) are used only when the untyped total is absent."""
    cpus, gpus, typed = 0, None, 0
    for part in tres.split(","):
        name, _, value = part.partition("=")
        if not value.isdigit():
            continue
        if name == "cpu":
            cpus = int(value)
        elif name == "gres/gpu":
            gpus = int(value)
        elif name.startswith("gres/gpu:"):
            typed += int(value)
    return cpus, gpus if gpus is not None else typed


@dataclass
class Attempt:
    job_id: str  # "123" or "123_4"
    state: str
    cpus: int
    gpus: int
    elapsed_s: int


def parse_sacct(text: str) -> list[Attempt]:
    """Rows of `sacct -n -P -X --duplicates -o JobID,State,AllocTRES,ElapsedRaw`. Rows of array
    elements that never started (`123_[4-7]`) and rows without a number are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or "[" in parts[0] or not parts[3].strip().isdigit():
            continue
        cpus, gpus = parse_tres(parts[2])
        out.append(Attempt(parts[0], parts[1].split()[0] if parts[1] else "", cpus, gpus, int(parts[3])))
    return out


def run_sacct(job_ids: Iterable[str], start: str, timeout: float = 60) -> str:
    """One sacct call; raises RuntimeError (one clear line) when accounting does not answer."""
    ids = sorted(set(job_ids))
    cmd = ["sacct", "-n", "-P", "-X", "--duplicates", "-j", ",".join(ids), "-S", start, "-o", SACCT_FIELDS]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    except FileNotFoundError:
        raise RuntimeError("sacct not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"sacct did not answer in {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"sacct failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# the run's elements


def element_models(plan: dict[str, Any], item: dict[str, Any]) -> dict[str, float]:
    """Model → share of an element's cost. An element holding pieces of several models splits
    its cost by their problems; a merge item belongs to its model; a generate/evaluate item of a
    single-model run to that model; training and collecting are SHARED."""
    pieces = item.get("pieces") or []
    if pieces:
        sizes: dict[str, float] = {}
        for piece in pieces:
            size = max(1, int(piece.get("stop", 1)) - int(piece.get("start", 0)))
            sizes[str(piece["model"])] = sizes.get(str(piece["model"]), 0) + size
        total = sum(sizes.values())
        return {m: n / total for m, n in sizes.items()}
    if item.get("model"):
        return {str(item["model"]): 1.0}
    if item.get("benchmark") and plan.get("model_name"):
        return {str(plan["model_name"]): 1.0}
    return {SHARED: 1.0}


def _blank_elements(plan: dict[str, Any]) -> dict[tuple[str, int], ElementCost]:
    return {(job["stage"], i): ElementCost(job["stage"], i, item["key"], element_models(plan, item))
            for job in plan["jobs"] for i, item in enumerate(job["items"])}


def slurm_element_ids(manifest: dict[str, Any], plan: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Every Slurm id the run ever submitted ("123" or "123_4", resumes included) → (stage, index)."""
    return {slurm_id: (stage, index) for stage, index, slurm_id in submitted_elements(manifest, plan)}


def _plan_devices(job: dict[str, Any]) -> tuple[int, int]:
    """(cpus, gpus) the plan asked for one element of `job`."""
    res = job["resources"]
    tasks = res["nodes"] * res["tasks_per_node"]
    return tasks * int(res.get("cpus_per_task") or 1), res["nodes"] * res["gpus_per_node"]


def cost_from_sacct(plan: dict[str, Any], manifest: dict[str, Any], sacct_text: str) -> RunCost:
    ids = slurm_element_ids(manifest, plan)
    elements = _blank_elements(plan)
    for attempt in parse_sacct(sacct_text):
        where = ids.get(attempt.job_id)
        if where is None:
            continue
        elements[where].add_attempt(attempt.elapsed_s, attempt.cpus, attempt.gpus,
                                    running=attempt.state in ("RUNNING", "COMPLETING", "SUSPENDED"))
    return RunCost("sacct", list(elements.values()))


def cost_from_state(run_dir: RunDir, plan: dict[str, Any], now: Optional[float] = None,
                    source: str = "local") -> RunCost:
    """Local profile: every attempt's measured `usage`; a running attempt counts up to now.
    Elements without usage records (Slurm without accounting) count their last attempt's
    started/ended x the plan's resources."""
    now = time.time() if now is None else now
    elements = _blank_elements(plan)
    estimated = False
    for job in plan["jobs"]:
        for index in range(len(job["items"])):
            state = run_dir.read_state(job["stage"], index)
            element = elements[(job["stage"], index)]
            for usage in state.get("usage", []):
                element.add_attempt(float(usage["seconds"]), int(usage["cpus"]), int(usage["gpus"]))
            started = state.get("started")
            running = state.get("state") == "RUNNING"
            if started is not None and (running or not state.get("usage")):
                measured = "cpus" in state  # the local scheduler's record of what it gave the element
                cpus, gpus = (state["cpus"], state["gpus"]) if measured else _plan_devices(job)
                ended = now if running else (state.get("ended") or now)
                element.add_attempt(max(0.0, float(ended) - float(started)), int(cpus), int(gpus), running=running)
                estimated = estimated or not measured
    notes = ["the last attempt of each element x the resources the plan asked for"] if estimated else []
    return RunCost(source, list(elements.values()), notes)


def run_cost(run_dir: RunDir) -> RunCost:
    """The run's cost from the right source: sacct for a Slurm run (state files when accounting
    does not answer), the local scheduler's measurements for a local run."""
    plan = read_json(run_dir.plan_file)
    manifest = read_json(run_dir.manifest_file)
    if manifest.get("scheduler") != "slurm":
        return cost_from_state(run_dir, plan)
    ids = slurm_element_ids(manifest, plan)
    if not ids:
        return RunCost("sacct", list(_blank_elements(plan).values()), ["nothing was submitted"])
    bases = {i.split("_")[0] for i in ids}
    try:
        text = run_sacct(bases, manifest["submit_time"])
    except RuntimeError as exc:
        fallback = cost_from_state(run_dir, plan, source="state files")
        fallback.notes.insert(0, f"sacct unavailable ({exc})")
        return fallback
    return cost_from_sacct(plan, manifest, text)
