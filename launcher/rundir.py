"""The run directory: the one place that knows where every file of a run lives.

Both sides read it: the launcher writes the plan, scripts and manifest; the jobs write their
artifacts and completion sentinels; the collector and `mftlaunch status` read them back.
Nothing else in the code base builds a path inside a run directory by hand.

Layout::

    runs/<recipe>-<YYYYmmdd-HHMMSS>[-N]/
      recipe.yaml            resolved recipe (after --set overrides)
      profile.yaml           resolved cluster profile (secret *names* only, never values)
      plan.json              the job graph; array index i of a job selects plan item i
      manifest.json          job ids, submit time, git sha, package versions
      scripts/<job>.sbatch   rendered batch scripts (Slurm) or commands (local)
      logs/<job-name>_<jobid>_<index>.out   one log per job or array element
      sentinels/<stage>/<index>.done        JSON written when an element completed
      state/<stage>/<index>.json            last known attempt of an element (restarts, host)
      state/<stage>/<index>.progress.json   the element's last progress line (rate, ETA)
      train/                 checkpoints (train/checkpoints/step_N), tensorboard (train/tb),
                             tokenized data cache (train/data_cache)
      merged/                plain HF model directory produced by the merge stage
                             (merged/<model>/ per checkpoint of a sweep)
      generate/<model>/<benchmark>/<start>-<stop>/   generations_<benchmark>_<model>.json + sidecar
                             of problems [start, stop) (one piece of an array element)
      generate/<model>/<benchmark>/                  generations_<benchmark>_<model>.json: all pieces
      evaluate/<model>/<benchmark>/<start>-<stop>/   results_<benchmark>_<model>.jsonl of a piece
      evaluate/<model>/<benchmark>/                  metrics_<benchmark>_<model>.json + all results
      collect/               results table (md/csv/json), report.html and the submission zip
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a state file, a sentinel); ValueError when it holds
    anything else, so that callers handle a damaged record as they handle invalid JSON."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object was expected, found {type(data).__name__}")
    return data


# File names the competition and the reference harness expect; used inside and outside runs.
def generations_name(benchmark: str, model: str, suffix: str = ".json") -> str:
    """generations_<benchmark>_<model>.json (suffix .raw.json: sidecar, .partial.json: progress)."""
    return f"generations_{benchmark}_{model}{suffix}"


def metrics_name(benchmark: str, model: str) -> str:
    return f"metrics_{benchmark}_{model}.json"


def results_name(benchmark: str, model: str, suffix: str = ".jsonl") -> str:
    """Per-sample execution results (suffix .partial.jsonl: progress of an interrupted run)."""
    return f"results_{benchmark}_{model}{suffix}"


def submission_folder(model: str) -> str:
    """The single top folder of the competition's submission zip."""
    return f"generations_{model}"


def results_table_name(fmt: str) -> str:
    """The collector's results table in one format: results.md, results.csv, results.json."""
    return f"results.{fmt}"


@dataclass(frozen=True)
class RunDir:
    """Paths of one run. Cheap to build; creates nothing until something is written."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # files written at submit time
    @property
    def recipe_file(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def profile_file(self) -> Path:
        return self.root / "profile.yaml"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def scripts_dir(self) -> Path:
        return self.root / "scripts"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def script(self, job_name: str, chunk: int = 0) -> Path:
        suffix = f".{chunk}" if chunk else ""
        return self.scripts_dir / f"{job_name}{suffix}.sbatch"

    def element_log(self, job_name: str, job_id: str, index: int) -> Path:
        """The log the local scheduler writes for one element; the same name Slurm gives it
        through the scripts' `%x_%A_%a.out` pattern."""
        return self.logs_dir / f"{job_name}_{job_id}_{index}.out"

    @property
    def local_scheduler_log(self) -> Path:
        return self.logs_dir / "local_scheduler.out"

    @property
    def local_selection_file(self) -> Path:
        """Which elements the local scheduler runs this time (written by `resume`; absent: all)."""
        return self.root / "local_only.json"

    @property
    def check_report_file(self) -> Path:
        """What `profiles check --nodes N` ranks report (in the check's own run directory)."""
        return self.root / "dist_check.json"

    def read_profile(self) -> dict[str, Any]:
        """The run's resolved cluster profile as plain data ({} when the run has none). The one
        way both sides read it; the launcher validates it into a Profile where it needs one."""
        if not self.profile_file.is_file():
            return {}
        return yaml.safe_load(self.profile_file.read_text(encoding="utf-8")) or {}

    # per-element bookkeeping
    def sentinel(self, stage: str, index: int) -> Path:
        return self.root / "sentinels" / stage / f"{index}.done"

    def element_state(self, stage: str, index: int) -> Path:
        return self.root / "state" / stage / f"{index}.json"

    def progress_file(self, stage: str, index: int) -> Path:
        return self.root / "state" / stage / f"{index}.progress.json"

    # stage artifacts
    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def checkpoints_dir(self) -> Path:
        return self.train_dir / "checkpoints"

    @property
    def data_cache_dir(self) -> Path:
        """Tokenized training data, built once by rank 0 and shared by every rank and restart."""
        return self.train_dir / "data_cache"

    @property
    def tensorboard_dir(self) -> Path:
        return self.train_dir / "tb"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"

    def merged_model_dir(self, subdir: str) -> Path:
        """Where the merge stage writes a model: merged/<name> in a sweep, merged/ for subdir ''."""
        return self.merged_dir / subdir if subdir else self.merged_dir

    def generate_dir(self, model: str, benchmark: str) -> Path:
        return self.root / "generate" / model / benchmark

    def piece_generate_dir(self, model: str, benchmark: str, start: int, stop: int) -> Path:
        """One piece (problems [start, stop)) of one benchmark, as one array element generated it."""
        return self.generate_dir(model, benchmark) / f"{start}-{stop}"

    def generations_file(self, benchmark: str, model: str) -> Path:
        """All problems of the benchmark, the pieces joined in order (written by evaluation)."""
        return self.generate_dir(model, benchmark) / generations_name(benchmark, model)

    def piece_generations_file(self, model: str, benchmark: str, start: int, stop: int) -> Path:
        return self.piece_generate_dir(model, benchmark, start, stop) / generations_name(benchmark, model)

    def evaluate_dir(self, model: str, benchmark: str) -> Path:
        return self.root / "evaluate" / model / benchmark

    def piece_evaluate_dir(self, model: str, benchmark: str, start: int, stop: int) -> Path:
        return self.evaluate_dir(model, benchmark) / f"{start}-{stop}"

    def piece_results_file(self, model: str, benchmark: str, start: int, stop: int) -> Path:
        """Per-sample results of one piece; present means the piece is scored."""
        return self.piece_evaluate_dir(model, benchmark, start, stop) / results_name(benchmark, model)

    def piece_generations_sidecar(self, model: str, benchmark: str, start: int, stop: int) -> Path:
        """Prompts, raw completions and the model that generated them, beside a piece's generations."""
        return self.piece_generate_dir(model, benchmark, start, stop) / generations_name(benchmark, model, ".raw.json")

    def metrics_file(self, benchmark: str, model: str) -> Path:
        return self.evaluate_dir(model, benchmark) / metrics_name(benchmark, model)

    def results_file(self, benchmark: str, model: str) -> Path:
        """Per-sample execution results beside the metrics file (every piece joined)."""
        return self.evaluate_dir(model, benchmark) / results_name(benchmark, model)

    @property
    def collect_dir(self) -> Path:
        return self.root / "collect"

    def results_table(self, fmt: str) -> Path:
        return self.collect_dir / results_table_name(fmt)

    @property
    def report_file(self) -> Path:
        """collect/report.html: the self-contained report the collector writes."""
        return self.collect_dir / "report.html"

    # sentinels
    def is_done(self, stage: str, index: int) -> bool:
        return self.sentinel(stage, index).is_file()

    def mark_done(self, stage: str, index: int, counts: dict[str, Any]) -> None:
        atomic_write_json(self.sentinel(stage, index), {"stage": stage, "index": index, **counts})

    def update_state(self, stage: str, index: int, **fields: Any) -> None:
        """Merge `fields` into the element's state file (state, host, restarts, error, ...)."""
        path = self.element_state(stage, index)
        state = read_json_object(path) if path.is_file() else {}
        state.update(fields)
        atomic_write_json(path, state)

    def read_state(self, stage: str, index: int) -> dict[str, Any]:
        path = self.element_state(stage, index)
        return read_json_object(path) if path.is_file() else {}

    def write_progress(self, stage: str, index: int, line: str) -> None:
        """Replace the element's last progress line (what `status` shows while it runs)."""
        atomic_write_json(self.progress_file(stage, index), {"line": line, "time": time.time()})

    def read_progress(self, stage: str, index: int) -> str:
        """The element's last progress line, or "" when it has none (or it is being replaced)."""
        path = self.progress_file(stage, index)
        try:
            return str(read_json(path).get("line", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def done_record(self, stage: str, index: int) -> dict[str, Any] | None:
        path = self.sentinel(stage, index)
        return read_json_object(path) if path.is_file() else None
