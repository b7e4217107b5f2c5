"""Whole graphs on the `local` profile: the same run directory, status and resume as on Slurm."""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import yaml

from launcher.cli import main
from launcher.rundir import RunDir, read_json

REPO = Path(__file__).resolve().parent.parent


def _run_dir(out: str) -> RunDir:
    return RunDir(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: ")))


def test_generate_evaluate_collect_locally(tmp_path, data_dir, capsys):
    benchmarks = ["humanevalsynthesize-python", "humanevalfixtests-js", "mbpp"]
    recipe = {
        "name": "local_eval",
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp_path / "runs"),
        "data_dir": str(data_dir),
        "limit": 2,
        "stages": {
            "generate": {"benchmarks": benchmarks, "max_new_tokens": 8, "batch_size": 2,
                         "resources": {"gpus_per_node": 0}},
            "evaluate": {"workers": 1},
            "collect": {},
        },
    }
    path = tmp_path / "local_eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["submit", str(path), "--profile", "local", "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = _run_dir(out)
    for bench in benchmarks:
        generations = json.loads(run_dir.generations_file(bench, "tiny").read_text())
        assert len(generations) == 2 and all(len(g) == 1 for g in generations)
        metrics = read_json(run_dir.metrics_file(bench, "tiny"))
        assert 0.0 <= metrics[bench]["pass@1"] <= 1.0
    assert run_dir.is_done("collect", 0)
    code = main(["status", str(run_dir.root), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {r["state"] for r in status["elements"]} == {"COMPLETED"}
    assert len(status["elements"]) == 2 * len(benchmarks) + 1
    # what it cost: every element's measured wall time x the CPUs the local scheduler gave it
    cost = status["cost"]
    assert cost["source"] == "local" and cost["total"]["attempts"] == len(status["elements"])
    assert all(e["attempts"] == 1 and e["cpu_seconds"] >= e["elapsed_s"] > 0 for e in cost["elements"])
    assert cost["by_model"]["tiny"]["cpu_hours"] > 0
    assert run_dir.read_progress("generate", 2).startswith("generate ")
    # each element recorded the versions it ran with (generate imported torch: CUDA is known too)
    versions = run_dir.read_state("generate", 0)["versions"]
    for package in ("torch", "transformers", "peft", "deepspeed", "bitsandbytes"):
        assert versions[package] == importlib.metadata.version(package), package
    assert "cuda" in versions and versions["cuda_available"] is False
    # the collector wrote the cost into results.json (every stage but its own, which was running)
    # and the report beside it
    resources = read_json(run_dir.results_table("json"))["resources"]
    assert resources["source"] == "local" and set(resources["by_stage"]) == {"generate", "evaluate", "collect"}
    for stage in ("generate", "evaluate"):
        assert resources["by_stage"][stage] == cost["by_stage"][stage]
    report = run_dir.report_file.read_text()
    assert all(bench in report for bench in benchmarks) and "<h2>Resources</h2>" in report
    assert main(["logs", str(run_dir.root), "--stage", "generate", "--index", "1"]) == 0
    logs = capsys.readouterr().out
    key = read_json(run_dir.plan_file)["jobs"][0]["items"][1]["key"]
    assert f"generate[1] ({key})" in logs
    assert "generate[0]" not in logs and "evaluate[1]" not in logs


def test_eval_only_sweep_of_two_models_locally(tmp_path, data_dir, capsys):
    """Two models (one with its own prompt format) through cost-balanced arrays on the local
    profile: one table with a column each, the best one named."""
    benchmarks = ["humanevalsynthesize-python", "mbpp"]
    recipe = {
        "name": "local_sweep",
        "models": [{"name": "tiny-a", "path": "builtin:tiny-llama", "dtype": "fp32"},
                   {"name": "tiny-b", "path": "builtin:tiny-llama", "dtype": "fp32", "prompt_format": "instruct"}],
        "output_root": str(tmp_path / "runs"),
        "data_dir": str(data_dir),
        "limit": 2,
        "stages": {
            "generate": {"benchmarks": benchmarks, "max_new_tokens": 8, "batch_size": 2,
                         "balance": {"elements": 3}, "resources": {"gpus_per_node": 0}},
            "evaluate": {"workers": 1, "balance": {"elements": 2}},
            "collect": {},
        },
    }
    path = tmp_path / "local_sweep.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["submit", str(path), "--profile", "local", "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = _run_dir(out)
    plan = read_json(run_dir.plan_file)
    assert [len(j["items"]) for j in plan["jobs"]] == [3, 2, 1]
    for model in ("tiny-a", "tiny-b"):
        for bench in benchmarks:
            assert read_json(run_dir.metrics_file(bench, model))["config"]["num_problems"] == 2
    for model, fmt in (("tiny-a", "competition"), ("tiny-b", "instruct")):  # each model its own prompts
        sidecars = list((run_dir.root / "generate" / model).rglob("*.raw.json"))
        assert sidecars and {read_json(p)["prompt_format"]["name"] for p in sidecars} == {fmt}
    results = read_json(run_dir.collect_dir / "results.json")
    assert [m["name"] for m in results["models"]] == ["tiny-a", "tiny-b"]
    # two benchmarks of the 13: no 13-task mean, so no best model, and the table says why
    assert results["complete"] and results["best"]["model"] is None
    assert set(results["best"]["excluded"]) == {"tiny-a", "tiny-b"}
    assert "tiny-a" in (run_dir.collect_dir / "results.md").read_text().splitlines()[2]
    # each model's share of the elements that held its pieces, measured by the local scheduler
    assert all(m["resources"]["cpu_hours"] > 0 for m in results["models"])
    # compare across the run's models: prompt formats may differ inside one run
    assert main(["compare", str(run_dir.root), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("task,tiny-a,tiny-b,best,") and rows[1].startswith("humanevalsynthesize-python,")
    report = run_dir.report_file.read_text()
    assert "<th>tiny-a</th>" in report and "<th>tiny-b</th>" in report and "no model has all 13 tasks" in report


def test_cancel_then_resume_locally(tmp_path, data_dir, capsys):
    """Cancel a local run mid-generation: status says what was lost; resume finishes it,
    continuing from the problems already generated."""
    import time

    bench = "humanevalsynthesize-python"
    recipe = {
        "name": "local_cancel",
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp_path / "runs"),
        "data_dir": str(data_dir),
        "limit": 60,
        "stages": {"generate": {"benchmarks": [bench], "max_new_tokens": 48, "batch_size": 1,
                                "resources": {"gpus_per_node": 0}}},
    }
    path = tmp_path / "local_cancel.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["submit", str(path), "--profile", "local"]) == 0
    run_dir = _run_dir(capsys.readouterr().out)
    partial = run_dir.piece_generate_dir("tiny", bench, 0, 60) / f"generations_{bench}_tiny.partial.json"
    deadline = time.time() + 120
    while not partial.is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert partial.is_file(), "generation made no progress"
    assert main(["cancel", str(run_dir.root)]) == 0
    capsys.readouterr()
    time.sleep(1)
    assert main(["status", str(run_dir.root), "--json"]) == 0
    element = json.loads(capsys.readouterr().out)["elements"][0]
    assert element["state"] == "LOST" and not element["done"], element
    assert main(["resume", str(run_dir.root), "--wait"]) == 0
    out = capsys.readouterr().out
    assert "resubmitted generate: [0]" in out and "run completed" in out
    log = "".join(p.read_text() for p in run_dir.logs_dir.glob("mft.local_cancel.generate_*.out"))
    assert f"resuming {bench}:" in log
    assert len(read_json(run_dir.piece_generations_file("tiny", bench, 0, 60))) == 60
