"""A collected sweep run directory built from files alone (plan, manifest, metrics, results.json in
the schema of /work/coord/results-schema.md, real TensorBoard events), for compare and report tests
that need no pipeline run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from launcher import contract
from launcher.rundir import RunDir, atomic_write_json, metrics_name

TASKS = list(contract.COMPETITION_SUITE) + ["humaneval"]


def _score(step: int, task_index: int) -> float:
    """A fixed pass@1 for (checkpoint step, task): the same model scores the same in every run."""
    return round((step // 2 * 7 + task_index * 3) % 10 / 10, 4)


def make_sweep_run(root: Path, steps: tuple[int, ...] = (2, 4, 6), *, model_name: str = "tiny",
                   data_sha: str = "a" * 64, prompt_format: str = "competition", limit: Optional[int] = 2,
                   tensorboard: bool = True, local_usage: bool = True) -> RunDir:
    run = RunDir(root)
    names = [f"{model_name}-step{s}" for s in steps]
    pieces = [{"model": n, "benchmark": t, "start": 0, "stop": 2, "num_problems": 2} for n in names for t in TASKS]
    res = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 2}
    plan = {"recipe": root.name, "model_name": model_name, "scheduler": "local",
            "models": [{"name": n, "step": s, "selector": f"step{s}"} for n, s in zip(names, steps)],
            "jobs": [{"stage": "train", "name": "train", "is_array": False, "chunks": [[0, 1]], "resources": res, "items": [{"key": "train"}]},
                     {"stage": "generate", "name": "generate", "is_array": True, "chunks": [[0, 2]], "resources": res,
                      "items": [{"key": "e000", "pieces": pieces[: len(pieces) // 2]},
                                {"key": "e001", "pieces": pieces[len(pieces) // 2:]}]},
                     {"stage": "collect", "name": "collect", "is_array": False, "chunks": [[0, 1]], "resources": res, "items": [{"key": "collect"}]}]}
    atomic_write_json(run.plan_file, plan)
    atomic_write_json(run.manifest_file, {"scheduler": "local", "submit_time": "2026-12-05T09:00:00"})
    if local_usage:
        for stage, index, seconds in (("train", 0, 900), ("generate", 0, 1800), ("generate", 1, 1200), ("collect", 0, 36)):
            run.update_state(stage, index, state="COMPLETED",
                             usage=[{"seconds": seconds, "cpus": 2, "gpus": 1 if stage != "collect" else 0}])
    models = []
    for name, step in zip(names, steps):
        tasks = {}
        for t, task in enumerate(TASKS):
            score = _score(step, t)
            path = run.root / "evaluate" / name / task / metrics_name(task, name)
            odd = int(t % 3 == 2)
            counts = {"passed": int(score * 10), "failed": 10 - int(score * 10) - t % 2 - odd,
                      "compile_error": t % 2, "timeout": odd}
            atomic_write_json(path, {task: {"pass@1": score}, "config": {
                "num_problems": 2, "data_sha256": data_sha, "prompt_format": prompt_format, "n_samples": 1,
                "greedy": True, "max_new_tokens": 8, "limit": limit, "status_counts": counts}})
            tasks[task] = {"status": "ok", "reason": "", "metrics": {"pass@1": score}, "num_problems": 2,
                           "expected_problems": 2, "limit": limit, "status_counts": counts,
                           "data_sha256": data_sha, "metrics_path": str(path)}
        competition = [tasks[t]["metrics"]["pass@1"] for t in contract.COMPETITION_SUITE]
        models.append({"name": name, "selector": f"step{step}", "step": step, "complete": True,
                       "competition_complete": True, "mean_competition": sum(competition) / len(competition),
                       "humaneval": tasks["humaneval"]["metrics"]["pass@1"], "missing": [], "failed": [],
                       "tasks": tasks})
    best = max(models, key=lambda x: x["mean_competition"])
    atomic_write_json(run.results_table("json"), {
        "schema": 2, "run": str(run.root), "recipe": root.name, "limited": limit is not None, "limit": limit,
        "n_samples": 1, "ks": ["pass@1"], "competition_tasks": list(contract.COMPETITION_SUITE),
        "extra_tasks": ["humaneval"], "models": models,
        "best": {"model": best["name"], "mean_competition": best["mean_competition"], "tied_with": [],
                 "excluded": {}, "reason": f"highest 13-task mean of {len(models)} complete models"}})
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tensorboard_dir))
        for step in range(1, max(steps) + 1):
            writer.add_scalar("train/loss", 2.0 / step, step)
            writer.add_scalar("train/lr", 1e-4 * min(1.0, step / 2), step)
            if step in steps:
                writer.add_scalar("eval/loss", 2.5 / step, step)
        writer.close()
    return run
