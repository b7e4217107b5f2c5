"""Start a stage as N rank processes on this machine through the normal entry point.

Why: a multi-rank recipe (DeepSpeed ZeRO-3 over gloo on CPU, or several GPUs of one node) can
then be tried without Slurm, exactly as Slurm tasks would run it: one `python -m jobs.run STAGE
RUN_DIR INDEX` process per rank with RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT
set. The tests use it for the two-rank ZeRO-3 run; across nodes, the launcher's Slurm scripts
start the same command.

    python -m jobs.training.localrun RUN_DIR --ranks 2 [--stage train] [--port 29611]

The run directory must hold recipe.yaml and plan.json (`prepare_run_dir` writes a minimal one
for a recipe; `mftlaunch submit` writes the real one).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from launcher.recipe import Recipe, recipe_to_yaml
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[2]


def prepare_run_dir(root: Path, recipe: Recipe, time_minutes: int = 60) -> RunDir:
    """recipe.yaml and a one-element-per-stage plan.json, enough for `python -m jobs.run`."""
    run = RunDir(root)
    atomic_write_text(run.recipe_file, recipe_to_yaml(recipe))
    stages = recipe.stages.present()
    jobs = [
        {"stage": stage, "name": f"{recipe.name}-{stage}", "items": [{"key": stage}],
         "resources": {"time_minutes": time_minutes}, "depends_on": stages[i - 1] if i else None}
        for i, stage in enumerate(stages) if stage in ("train", "merge")
    ]
    atomic_write_json(run.plan_file, {"jobs": jobs})
    return run


def start_ranks(run_dir: Path, world_size: int, port: int, stage: str = "train", restart: int = 0,
                log_dir: Optional[Path] = None, extra_env: Optional[dict[str, str]] = None) -> list[subprocess.Popen]:
    """Start every rank; rank r's output goes to log_dir/rank{r}.log (default: the run's logs/)."""
    logs = Path(log_dir or RunDir(run_dir).logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world_size):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(extra_env or {})
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
                   NODE_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   MFTLAUNCH_RESTART_COUNT=str(restart), PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        log = open(logs / f"{stage}-rank{rank}-attempt{restart}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-u", "-m", "jobs.run", stage, str(run_dir), "0"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        log.close()
    return procs


def wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[int]:
    """Exit codes of all ranks; on timeout every rank still running is killed."""
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=timeout_s))
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        raise
    return codes


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.training.localrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--stage", default="train")
    parser.add_argument("--port", type=int, default=29611)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    codes = wait_all(start_ranks(Path(args.run_dir), args.ranks, args.port, args.stage), args.timeout)
    print(f"exit codes: {codes}; logs in {RunDir(args.run_dir).logs_dir}")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
