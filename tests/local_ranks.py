"""Test helpers: a minimal run directory for one recipe, and its train stage started as N local
ranks through the same spawner the `local` profile uses (jobs/distributed.py:LocalRanks)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs.distributed import LocalRanks
from launcher.recipe import Recipe, recipe_to_yaml
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text


def prepare_run_dir(root: Path, recipe: Recipe, time_minutes: int = 60) -> RunDir:
    """recipe.yaml and a one-element-per-stage plan.json (train and merge), enough for
    `python -m jobs.run`; `mftlaunch submit` writes the real ones."""
    run_dir = RunDir(root)
    atomic_write_text(run_dir.recipe_file, recipe_to_yaml(recipe))
    stages = recipe.stages.present()
    jobs = [
        {"stage": stage, "name": f"{recipe.name}-{stage}", "items": [{"key": stage}],
         "resources": {"time_minutes": time_minutes}, "depends_on": stages[i - 1] if i else None}
        for i, stage in enumerate(stages) if stage in ("train", "merge")
    ]
    atomic_write_json(run_dir.plan_file, {"jobs": jobs})
    return run_dir


def start_ranks(run_dir: RunDir, world_size: int, port: int, log_dir: Path, stage: str = "train",
                restart: int = 0) -> LocalRanks:
    """Rank r's output goes to log_dir/<stage>-rank<r>-attempt<restart>.log."""
    env = {**os.environ, "MASTER_PORT": str(port)}
    command = [sys.executable, "-u", "-m", "jobs.run", stage, str(run_dir.root), "0"]
    return LocalRanks(command, world_size, job_id=f"test{port}", restart=restart, env=env, log_dir=log_dir,
                      log_name=f"{stage}-rank")
