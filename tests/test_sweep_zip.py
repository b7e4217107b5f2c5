"""The submission zip of the chosen model of an unlimited eval-only sweep of two models: the plan
of the real planner, generated pieces written as files (model a: the canonical solutions, model b:
programs that fail), one benchmark evaluated for real in the sandbox through the evaluate stage,
the other tasks' metrics given, then the real collector choosing a and zipping a's generations."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import yaml

from jobs import collect as col
from jobs import evaluate
from jobs.code_benchmarks.assembly import canonical_program
from jobs.code_benchmarks.data import load_benchmark, pinned_sha256_of
from launcher.contract import ALL_BENCHMARKS
from launcher.plan import build_plan
from launcher.profile import load_profile
from launcher.recipe import load_recipe, recipe_to_yaml
from launcher.rundir import RunDir, atomic_write_json

REAL = "humanevalsynthesize-python"


def test_zip_of_the_best_model_of_an_unlimited_two_model_sweep(tmp_path, data_dir):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({
        "name": "two", "data_dir": str(data_dir),
        "models": [{"name": "a", "path": "builtin:tiny-llama"}, {"name": "b", "path": "builtin:tiny-llama"}],
        "stages": {"generate": {"benchmarks": ["all"], "resources": {"gpus_per_node": 0}},
                   "evaluate": {"workers": 2, "balance": {"elements": 5}}, "collect": {}},
    }))
    recipe = load_recipe(path)
    plan = build_plan(recipe, load_profile("local")).to_dict()
    run_dir = RunDir(tmp_path / "run")
    run_dir.root.mkdir()
    run_dir.recipe_file.write_text(recipe_to_yaml(recipe))
    atomic_write_json(run_dir.plan_file, plan)
    jobs = {j["stage"]: j for j in plan["jobs"]}

    problems = {b: load_benchmark(b, data_dir).problems for b in ALL_BENCHMARKS}
    for item in jobs["generate"]["items"]:
        for piece in item["pieces"]:
            bench, model = piece["benchmark"], piece["model"]
            programs = [[canonical_program(bench, p) if model == "a" else "def nothing():\n    pass\n"]
                        for p in problems[bench][piece["start"]:piece["stop"]]]
            atomic_write_json(run_dir.piece_generations_file(model, bench, piece["start"], piece["stop"]), programs)

    # the one real benchmark: every evaluate element holding a piece of it runs the stage
    for index, item in enumerate(jobs["evaluate"]["items"]):
        mine = [p for p in item["pieces"] if p["benchmark"] == REAL]
        if mine:
            ctx = SimpleNamespace(run_dir=run_dir, recipe=recipe, plan=plan, index=index, data_dir=str(data_dir),
                                  item={**item, "pieces": mine}, dist=SimpleNamespace(is_main=True),
                                  should_stop=lambda: False)
            evaluate.run_stage(ctx)
    for model, expected in (("a", 1.0), ("b", 0.0)):
        metrics = json.loads(run_dir.metrics_file(REAL, model).read_text())
        assert metrics[REAL]["pass@1"] == expected and metrics["config"]["num_problems"] == 164
    # the other tasks: given metrics (equal for both models), and the joined generations
    for bench in ALL_BENCHMARKS:
        if bench == REAL:
            continue
        for model in ("a", "b"):
            n = len(problems[bench])
            payload = {bench: {"pass@1": 0.25}, "config": {"num_problems": n, "limit": None,
                                                           "data_sha256": pinned_sha256_of(bench)}}
            atomic_write_json(run_dir.metrics_file(bench, model), payload)
            joined = [json.loads(run_dir.piece_generations_file(model, bench, p["start"], p["stop"]).read_text())
                      for item in jobs["generate"]["items"] for p in item["pieces"]
                      if (p["model"], p["benchmark"]) == (model, bench)]
            atomic_write_json(run_dir.generations_file(bench, model), [g for part in joined for g in part])

    results = col.gather_results(run_dir.root)
    assert results.complete and results.best.model == "a"
    written = col.write_outputs(results, run_dir.collect_dir)
    assert written["model"] == "a" and Path(written["zip"]).name == "generations_a.zip"
    col.validate_submission(Path(written["zip"]), "a")  # 13 files, full problem counts, the competition's layout
    data = json.loads(run_dir.results_table("json").read_text())
    assert data["submission"]["zip"] == written["zip"] and data["best"]["model"] == "a"
