"""Crash anywhere: `kill -9` an element of train, generate or evaluate on the tiny model at a random
(seeded) moment, then check that

1. every artifact on disk is complete: each JSON/JSONL file parses, each checkpoint directory that
   carries a final name holds its state file and adapter weights that load (half-written files only
   ever live under temporary names), and
2. rerunning the element continues from what survived and ends with outputs identical to an
   uninterrupted run (adapter weights, generations, evaluation results and metrics).

    python benchmarks/crash_trials.py --trials 20 --seed 0            # the soak (docs/PERFORMANCE.md)
    python benchmarks/crash_trials.py --trials 1 --stages generate    # what CI runs (tests/)

Each element runs exactly as the local scheduler starts it (`python -m jobs.distributed --ranks 1
-- python -m jobs.run STAGE RUN_DIR 0`), in its own process group, which the kill hits whole.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from launcher.rundir import RunDir  # noqa: E402
from launcher.submit import Loaded, create_run_dir, load, new_manifest, write_run_files  # noqa: E402
from launcher.rundir import atomic_write_json  # noqa: E402

STAGES = ("train", "generate", "evaluate")
BENCHMARK = "humanevalsynthesize-python"
TEMP_MARKERS = (".tmp", ".tmp-", "tmp-")  # names of files that are not yet artifacts


def train_recipe(out: Path) -> dict:
    return {
        "name": "crash_train",
        "output_root": str(out),
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "model_type": "llama", "dtype": "fp32",
                  "attn_implementation": "sdpa"},
        "stages": {"train": {
            "datasets": [{"path": str(REPO / "recipes" / "data" / "tiny_mft" / t)} for t in ("codegen", "explain")],
            "template": "chatml", "peft_type": "lora",
            "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
            "padding_mode": "pack", "seq_length": 64, "per_device_train_batch_size": 2,
            "learning_rate": 1.0e-3, "num_warmup_steps": 1, "max_steps": 8, "log_interval": 2,
            "checkpointing_steps": 2, "evaluation_steps": 4, "saving_limit": 2, "gradient_checkpointing": False,
            "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
            "resources": {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:30:00"},
        }},
    }


def eval_recipe(out: Path, data_dir: Optional[str], limit: int) -> dict:
    return {
        "name": "crash_eval",
        "output_root": str(out),
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        **({"data_dir": data_dir} if data_dir else {}),
        "limit": limit,
        "stages": {
            "generate": {"benchmarks": [BENCHMARK], "max_new_tokens": 24, "batch_size": 1,
                         "resources": {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:20:00"}},
            "evaluate": {"workers": 1, "resources": {"cpus_per_task": 1, "time": "00:20:00"}},
        },
    }


def new_run(recipe: dict, work: Path) -> RunDir:
    """A run directory as `submit` writes it, with nothing started."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded: Loaded = load(str(path), "local", check_paths=True)
    run_dir = create_run_dir(loaded.recipe)
    write_run_files(run_dir, loaded)
    atomic_write_json(run_dir.manifest_file, new_manifest(run_dir, loaded))
    return run_dir


def start(run_dir: RunDir, stage: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-u", "-m", "jobs.distributed", "--ranks", "1", "--",
           sys.executable, "-u", "-m", "jobs.run", stage, str(run_dir.root), "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MFTLAUNCH_LOCAL_JOB_ID": "crash_0"}
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=REPO)


def run_to_end(run_dir: RunDir, stage: str, log: Path, timeout_s: float = 900) -> float:
    started = time.perf_counter()
    code = start(run_dir, stage, log).wait(timeout=timeout_s)
    if code != 0:
        raise RuntimeError(f"{stage} in {run_dir.root} exited {code}; log: {log}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def stage_dir(run_dir: RunDir, stage: str) -> Path:
    return run_dir.train_dir if stage == "train" else run_dir.root / stage


def outputs(run_dir: RunDir, stage: str) -> dict[str, str]:
    """sha256 of what an element of `stage` leaves as its result."""
    if stage == "train":
        steps = sorted(run_dir.checkpoints_dir.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
        files = [p for p in steps[-1].rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin")
                 and "adapter" in p.name]
        base = steps[-1]
    else:
        base = stage_dir(run_dir, stage)
        files = [p for p in base.rglob("*") if p.is_file() and not is_temporary(p) and ".partial" not in p.name
                 and p.suffix in (".json", ".jsonl") and not p.name.startswith("timing")]
    digests = {str(p.relative_to(base)): hashlib.sha256(stable_bytes(p, run_dir.root)).hexdigest() for p in sorted(files)}
    if not digests:
        raise RuntimeError(f"no {stage} outputs under {base}")
    return digests


def stable_bytes(path: Path, run_root: Path) -> bytes:
    """The file's content, minus what names wall-clock time or the run directory; JSONL records
    sorted by key (a resumed element appends the rest after what survived)."""
    if path.suffix not in (".json", ".jsonl"):
        return path.read_bytes()
    text = path.read_text().replace(str(run_root), "RUN")
    if path.suffix == ".jsonl":
        records = sorted((_strip(json.loads(line)) for line in text.splitlines() if line.strip()),
                         key=lambda r: json.dumps(r, sort_keys=True))
        return json.dumps(records, sort_keys=True).encode()
    return json.dumps(_strip(json.loads(text)), sort_keys=True).encode()


def _strip(value):
    volatile = ("time", "seconds", "duration", "elapsed", "per_s", "host", "pid", "started", "ended")
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if not any(t in k for t in volatile) and not k.endswith(("_at", "_s"))}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def is_temporary(path: Path) -> bool:
    return any(part.startswith(".") or part.startswith("tmp") or part.endswith(".tmp") for part in path.parts[-3:])


def damaged(run_dir: RunDir, stage: str) -> list[str]:
    """Artifacts under final names that are not complete files."""
    import torch
    from safetensors.torch import load_file

    problems = []
    roots = [stage_dir(run_dir, stage), run_dir.root / "state", run_dir.root / "sentinels"]
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            if is_temporary(path.relative_to(root.parent)):
                continue
            try:
                if path.suffix == ".json":
                    json.loads(path.read_text())
                elif path.suffix == ".jsonl":
                    lines = path.read_text().splitlines()
                    for line in lines[:-1]:  # an appended record cut by the kill is re-run by design
                        json.loads(line)
                elif path.suffix == ".safetensors":
                    load_file(str(path))
                elif path.suffix == ".pt":
                    torch.load(path, weights_only=False)
                elif path.suffix == ".done":
                    json.loads(path.read_text())
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                problems.append(f"{path.relative_to(run_dir.root)}: {type(exc).__name__}: {exc}")
    if stage == "train" and run_dir.checkpoints_dir.is_dir():
        for step in run_dir.checkpoints_dir.glob("step_*"):
            if not any(step.rglob("adapter_model.safetensors")) or not any(step.glob("*.json")):
                problems.append(f"{step.relative_to(run_dir.root)}: a checkpoint under its final name is incomplete")
    return problems


@dataclass
class StageReport:
    stage: str
    clean_s: float = 0.0
    trials: int = 0
    killed_at: list[float] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    rerun_s: list[float] = field(default_factory=list)


def prepare(stage: str, work: Path, data_dir: Optional[str], limit: int) -> RunDir:
    """A run directory whose elements before `stage` are done, `stage` not started."""
    if stage == "train":
        return new_run(train_recipe(work / "runs"), work)
    run_dir = new_run(eval_recipe(work / "runs", data_dir, limit), work)
    if stage == "evaluate":
        run_to_end(run_dir, "generate", work / "setup.log")
    return run_dir


def trial_stage(stage: str, trials: int, rng: random.Random, work: Path, data_dir: Optional[str],
                limit: int) -> StageReport:
    report = StageReport(stage)
    base = prepare(stage, work / stage, data_dir, limit)
    pristine = work / stage / "pristine"
    shutil.copytree(base.root, pristine, symlinks=True)
    report.clean_s = run_to_end(base, stage, work / stage / "clean.log")
    expected = outputs(base, stage)
    for n in range(trials):
        trial = RunDir(work / stage / f"trial{n}")
        shutil.rmtree(trial.root, ignore_errors=True)
        shutil.copytree(pristine, trial.root, symlinks=True)
        _retarget(trial, base.root)
        at = rng.uniform(0.2, 1.0) * report.clean_s
        proc = start(trial, stage, work / stage / f"trial{n}.log")
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        report.killed_at.append(at)
        report.damaged += [f"trial {n} (kill at {at:.1f}s): {p}" for p in damaged(trial, stage)]
        report.rerun_s.append(run_to_end(trial, stage, work / stage / f"trial{n}.log"))
        got = outputs(trial, stage)
        if got != expected:
            report.different.append(f"trial {n} (kill at {at:.1f}s): "
                                    f"{sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))}")
        report.trials += 1
        if not any(f"trial {n} " in line for line in report.damaged + report.different):
            shutil.rmtree(trial.root, ignore_errors=True)  # a trial with a finding stays for a look
    return report


def _retarget(trial: RunDir, original: Path) -> None:
    """The copied run files name the original directory: point them at the copy."""
    for path in [trial.plan_file, trial.manifest_file, trial.recipe_file, *trial.root.glob("scripts/*")]:
        if path.is_file():
            path.write_text(path.read_text().replace(str(original), str(trial.root)))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="kills per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--limit", type=int, default=4, help="problems of the benchmark for generate/evaluate")
    parser.add_argument("--data-dir", default=os.environ.get("MFTLAUNCH_DATA_DIR"))
    parser.add_argument("--work", help="keep the run directories here (default: a temporary directory)")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="crash-trials-"))
    reports = []
    for stage in args.stages.split(","):
        report = trial_stage(stage, args.trials, rng, work, args.data_dir, args.limit)
        reports.append(report)
        print(f"{stage:9s} trials {report.trials:3d}  clean run {report.clean_s:6.1f}s  "
              f"kill moments {min(report.killed_at, default=0):.1f}-{max(report.killed_at, default=0):.1f}s  "
              f"damaged artifacts {len(report.damaged)}  outputs differing after rerun {len(report.different)}  "
              f"rerun {sum(report.rerun_s) / max(1, len(report.rerun_s)):.1f}s on average", flush=True)
        for line in report.damaged + report.different:
            print(f"  {line}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in reports], indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r.damaged or r.different for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
