"""A checkpoint sweep in one submission on the real test cluster: a tiny LoRA training saving 3
checkpoints, a merge array (one element per checkpoint), cost-balanced generate and evaluate
arrays over the 14 benchmarks (limit 2), one collector naming the best checkpoint; then one
generate element cancelled and `resume` finishing only it and what depends on it."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
from launcher.contract import ALL_BENCHMARKS, required_upstream
from launcher.rundir import RunDir, read_json
from test_slurm_pipeline import assert_cost_matches_sacct, run_log, submit, wait_final

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
MODELS = ["tiny-step2", "tiny-step4", "tiny-step6"]


def sweep_recipe(tmp: Path, data_dir: Path) -> Path:
    cpu = {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:15:00"}
    recipe = {
        "name": "sweep3",
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp / "runs"),
        "data_dir": str(data_dir),
        "limit": 2,
        "stages": {
            "train": {
                "datasets": [{"path": str(REPO / "recipes" / "data" / "tiny_mft" / "codegen")}],
                "peft_type": "lora", "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
                "seq_length": 128, "per_device_train_batch_size": 2, "learning_rate": 1.0e-3, "min_lr": 1.0e-4,
                "max_steps": 6, "checkpointing_steps": 2, "evaluation_steps": 2, "log_interval": 2,
                "saving_limit": 1,  # the sweep's checkpoints must survive pruning anyway
                "gradient_checkpointing": False,
                "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
                "resources": cpu,
            },
            "merge": {"checkpoints": "all", "resources": cpu},
            "generate": {"benchmarks": ["competition", "humaneval"], "max_new_tokens": 8, "batch_size": 8,
                         "balance": {"elements": 4}, "resources": cpu},
            "evaluate": {"workers": 1, "balance": {"elements": 3}, "resources": cpu},
            "collect": {},
        },
    }
    path = tmp / "sweep3.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _cancel_when_running(run_dir: RunDir, index: int, timeout: float = 600) -> None:
    """scancel generate element `index` once it runs (Slurm 22.05 keeps no accounting record of
    an array element cancelled while pending, so `status` could not say CANCELLED then)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if run_dir.read_state("generate", index).get("state") == "RUNNING":
            # ARRAYID_INDEX: the element's own raw job id may be the array's id, which would cancel all
            array_id = read_json(run_dir.manifest_file)["jobs"]["generate"][0]["id"]
            subprocess.run(["scancel", f"{array_id}_{index}"], check=True)
            return
        time.sleep(0.1)
    pytest.fail(f"generate[{index}] did not start in {timeout}s")


def test_checkpoint_sweep_balanced_arrays_collector_and_resume(slurm, tmp_path, data_dir, capsys):
    run_dir = submit(sweep_recipe(tmp_path, data_dir), capsys)
    plan = read_json(run_dir.plan_file)
    assert [m["name"] for m in plan["models"]] == MODELS and [m["step"] for m in plan["models"]] == [2, 4, 6]
    jobs = {j["stage"]: j for j in plan["jobs"]}
    assert len(jobs["merge"]["items"]) == 3 and len(jobs["generate"]["items"]) == 4
    assert len(jobs["evaluate"]["items"]) == 3 and jobs["evaluate"]["dependency_type"] == "afterany"
    # every (checkpoint, benchmark) problem is in exactly one piece of each array
    for stage in ("generate", "evaluate"):
        covered = sorted((p["model"], p["benchmark"], i) for item in jobs[stage]["items"] for p in item["pieces"]
                         for i in range(p["start"], p["stop"]))
        assert covered == sorted((m, b, i) for m in MODELS for b in ALL_BENCHMARKS for i in range(2))

    cancelled = len(jobs["generate"]["items"]) - 1
    _cancel_when_running(run_dir, cancelled)
    rows = wait_final(run_dir, timeout=600)
    state = {(r["stage"], r["index"]): r for r in rows}
    assert state[("train", 0)]["done"] and all(state[("merge", i)]["done"] for i in range(3)), rows
    assert state[("generate", cancelled)]["state"] == "CANCELLED"
    needs_it = [i for i in range(3) if ("generate", cancelled) in
                [(s, k) for s, k, _ in required_upstream(plan, "evaluate", i)]]
    assert needs_it, "the cancelled element's pieces are scored by some evaluate element"
    for i in range(3):
        assert state[("evaluate", i)]["done"] == (i not in needs_it), state[("evaluate", i)]
    assert not state[("collect", 0)]["done"]  # incomplete models: named, exit 1
    before = {(r["stage"], r["index"]): run_dir.sentinel(r["stage"], r["index"]).stat().st_mtime
              for r in rows if r["done"]}

    assert main(["resume", str(run_dir.root)]) == 0
    out = capsys.readouterr().out
    assert f"resubmitted generate: [{cancelled}]" in out, out
    assert f"resubmitted evaluate: {needs_it}" in out, out
    assert "resubmitted train" not in out and "resubmitted merge" not in out
    rows = wait_final(run_dir, timeout=600)
    log = run_log(run_dir)
    assert all(r["done"] for r in rows), ([r for r in rows if not r["done"]], log[-4000:])
    for key, mtime in before.items():  # what had completed did not run again
        assert run_dir.sentinel(*key).stat().st_mtime == mtime, key

    results = read_json(run_dir.results_table("json"))
    assert [m["name"] for m in results["models"]] == MODELS
    assert all(m["complete"] and m["mean_competition"] is not None for m in results["models"])
    best = results["best"]["model"]
    assert best in MODELS and results["best"]["mean_competition"] == max(m["mean_competition"] for m in results["models"])
    assert results["submission"] == {"model": best, "zip": None, "no_zip_reason": "limited run"}
    table = run_dir.results_table("md").read_text()
    assert f"Best model: {best}" in table and all(m in table.splitlines()[2] for m in MODELS)
    collect_log = "".join(p.read_text() for p in run_dir.logs_dir.glob("mft.sweep3.collect_*.out"))
    assert f"Best model: {best}" in collect_log
    for model in MODELS:
        merged = json.loads((run_dir.merged_model_dir(model) / "mftlaunch_merge.json").read_text())
        assert merged["step"] == int(model.rsplit("step", 1)[1])

    # what it cost, as sacct says: the cancelled attempt and its resume both count, per model too
    resources = assert_cost_matches_sacct(run_dir, ("train", "merge", "generate", "evaluate"))
    assert resources["by_stage"]["generate"]["attempts"] == len(jobs["generate"]["items"]) + 1
    assert set(resources["by_model"]) == {*MODELS, "(shared)"}
    assert all(m["resources"]["cpu_hours"] > 0 for m in results["models"])
    report = run_dir.report_file.read_text()
    assert "<h2>Checkpoints</h2>" in report and "<h2>Training</h2>" in report
    assert all(f"<th>{m}</th>" in report for m in MODELS)
