"""The collector: per-task table, the 13-task mean (HumanEval beside it), missing/failed tasks named
with a non-zero exit, limited runs (no zip), and the submission zip's layout."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs import collect as col
from launcher import contract
from jobs.code_benchmarks.data import pinned_sha256_of
from launcher.recipe import Recipe, recipe_to_yaml
from launcher.rundir import RunDir

MODEL = "tiny-v1"
# distinct, made-up pass@1 values per task
VALUES = {task: round(0.05 + 0.05 * i, 4) for i, task in enumerate(contract.ALL_BENCHMARKS)}


def _size(task: str, limit=None) -> int:
    full = 500 if task == "mbpp" else 164
    return full if limit is None else min(limit, full)


def _entry(name: str, **extra) -> dict:
    return {"name": name, "path": "builtin:tiny-llama", "selector": None, "step": None, "merge_index": None,
            "merged_subdir": None, "prompt": {}, **extra}


def make_run(tmp_path: Path, *, limit=None, shards=None, skip=(), wrong_count=(), models=(MODEL,), values=None,
             metrics_extra=None) -> RunDir:
    """A run_dir directory as generate/evaluate leave it: recipe, plan, generated pieces (sharded where
    asked) and the joined generations, metrics files in the reference shape. `values`:
    {model: {task: pass@1}}; `skip`: tasks (or (model, task) pairs) without metrics."""
    shards = shards or {}
    recipe = Recipe.model_validate({
        "name": "r", "limit": limit,
        "model": {"path": "builtin:tiny-llama", "model_name": models[0]},
        "stages": {"generate": {"benchmarks": ["all"], "shards": shards}, "evaluate": {}, "collect": {}},
    })
    run_dir = RunDir(tmp_path / "run")
    run_dir.root.mkdir(parents=True)
    run_dir.recipe_file.write_text(recipe_to_yaml(recipe), encoding="utf-8")
    gen_items, eval_items = [], []
    for model in models:
        for task in contract.ALL_BENCHMARKS:
            n = _size(task, limit)
            k = shards.get(task, 1)
            programs = [[f"program {task} {i}"] for i in range(n)]
            bounds = [round(n * s / k) for s in range(k + 1)]
            for s in range(k):
                piece = {"model": model, "benchmark": task, "start": bounds[s], "stop": bounds[s + 1], "num_problems": n}
                gen_items.append({"key": f"{model}:{task}-{s}", "pieces": [piece]})
                path = run_dir.piece_generations_file(model, task, bounds[s], bounds[s + 1])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(programs[bounds[s]:bounds[s + 1]]), encoding="utf-8")
            eval_items.append({"key": f"{model}:{task}",
                               "pieces": [{"model": model, "benchmark": task, "start": 0, "stop": n, "num_problems": n}]})
            whole = run_dir.generations_file(task, model)
            whole.write_text(json.dumps(programs), encoding="utf-8")
            if task in skip or (model, task) in skip:
                continue
            got = n - 1 if task in wrong_count else n
            value = (values or {}).get(model, VALUES).get(task, VALUES[task])
            metrics = {task: {"pass@1": value, **(metrics_extra or {})},
                       "config": {"num_problems": got, "limit": limit, "data_sha256": "ab"}}
            path = run_dir.metrics_file(task, model)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metrics), encoding="utf-8")
    plan = {"recipe": "r", "model_name": models[0], "models": [_entry(m) for m in models],
            "jobs": [{"stage": "generate", "items": gen_items}, {"stage": "evaluate", "items": eval_items}]}
    run_dir.plan_file.write_text(json.dumps(plan), encoding="utf-8")
    return run_dir


def one(results):
    """The only model of a Results."""
    assert len(results.models) == 1
    return results.models[0]


def _ctx(run_dir: RunDir):
    return SimpleNamespace(run_dir=run_dir, dist=SimpleNamespace(is_main=True))


def test_complete_run_mean_and_zip(tmp_path):
    run_dir = make_run(tmp_path, shards={"mbpp": 3, "humanevalsynthesize-go": 2})
    counts = col.run_stage(_ctx(run_dir))
    expected_mean = sum(VALUES[t] for t in contract.COMPETITION_SUITE) / 13
    assert counts["mean_competition"] == pytest.approx(expected_mean)
    assert counts["humaneval"] == VALUES["humaneval"]
    assert counts["tasks"] == 14
    # HumanEval is beside the mean, not in it
    with_he = (sum(VALUES[t] for t in contract.COMPETITION_SUITE) + VALUES["humaneval"]) / 14
    assert counts["mean_competition"] != pytest.approx(with_he)

    out = run_dir.collect_dir
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == 2 and data["complete"] and not data["limited"]
    model = data["models"][0]
    assert model["name"] == MODEL and model["average"] == pytest.approx(expected_mean)
    assert [r["task"] for r in model["results"]] == list(contract.COMPETITION_SUITE)
    assert data["best"]["model"] == MODEL and data["submission"]["model"] == MODEL
    rows = list(csv.reader(io.StringIO((out / "results.csv").read_text())))
    assert rows[0] == ["task", "pass@1", "problems", "status", "note"]
    assert [r[0] for r in rows[1:14]] == list(contract.COMPETITION_SUITE)
    assert rows[14][0] == "mean (13 tasks)" and float(rows[14][1]) == pytest.approx(expected_mean, abs=1e-4)
    assert rows[15][0] == "humaneval"
    md = (out / "results.md").read_text()
    assert "| mean (13 tasks) | " + f"{expected_mean:.4f}" in md

    zpath = out / f"generations_{MODEL}.zip"
    with zipfile.ZipFile(zpath) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        assert {n.split("/")[0] for n in archive.namelist()} == {f"generations_{MODEL}"}
        assert sorted(names) == sorted(f"generations_{MODEL}/generations_{t}_{MODEL}.json" for t in contract.COMPETITION_SUITE)
        mbpp = json.loads(archive.read(f"generations_{MODEL}/generations_mbpp_{MODEL}.json"))
        assert mbpp == [[f"program mbpp {i}"] for i in range(500)]  # shards merged in order
        assert not any("humaneval_" in n for n in names)
    assert not list(out.glob("*.tmp"))


def test_missing_task_is_named_and_fails(tmp_path):
    run_dir = make_run(tmp_path, skip=("humanevalfixtests-rust",))
    with pytest.raises(col.IncompleteResults, match="humanevalfixtests-rust") as info:
        col.run_stage(_ctx(run_dir))
    assert "1 of 14" in str(info.value)
    data = json.loads((run_dir.collect_dir / "results.json").read_text())["models"][0]
    assert data["missing"] == ["humanevalfixtests-rust"] and data["mean_competition"] is None
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    assert "n/a: 12 of 13" in (run_dir.collect_dir / "results.md").read_text()


def test_missing_humaneval_also_fails_but_mean_is_there(tmp_path):
    run_dir = make_run(tmp_path, skip=("humaneval",))
    collection = one(col.gather_results(run_dir.root))
    assert not collection.complete and collection.mean is not None
    assert [r.task for r in collection.problems] == ["humaneval"]


def test_failed_element_reason_comes_from_state(tmp_path):
    run_dir = make_run(tmp_path, skip=("humanevalsynthesize-java",))
    index = list(contract.ALL_BENCHMARKS).index("humanevalsynthesize-java")
    path = run_dir.element_state("evaluate", index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"state": "FAILED", "error": "SandboxError: no javac"}))
    collection = one(col.gather_results(run_dir.root))
    assert "FAILED: SandboxError: no javac" in collection.problem_summary()


def test_wrong_problem_count_is_a_failure(tmp_path):
    run_dir = make_run(tmp_path, wrong_count=("mbpp",))
    collection = one(col.gather_results(run_dir.root))
    assert collection.tasks["mbpp"].status == "failed"
    assert "evaluated 499 of 500" in collection.tasks["mbpp"].reason
    assert collection.mean is None


def _set_data_sha(run_dir: RunDir, task: str, sha: str) -> None:
    path = run_dir.metrics_file(task, MODEL)
    payload = json.loads(path.read_text())
    payload["config"]["data_sha256"] = sha
    path.write_text(json.dumps(payload), encoding="utf-8")


def test_a_task_on_other_data_than_the_pinned_copy_the_others_used_is_refused(tmp_path):
    run_dir = make_run(tmp_path)
    for task in contract.ALL_BENCHMARKS:
        _set_data_sha(run_dir, task, pinned_sha256_of(task))
    assert col.gather_results(run_dir.root).complete
    _set_data_sha(run_dir, "humanevalsynthesize-cpp", "0" * 64)
    collection = one(col.gather_results(run_dir.root))
    assert [r.task for r in collection.problems] == ["humanevalsynthesize-cpp"]
    assert "refusing to mix data versions" in collection.tasks["humanevalsynthesize-cpp"].reason
    assert collection.mean is None
    loose = one(col.gather_results(*[run_dir.metrics_file(t, MODEL) for t in contract.ALL_BENCHMARKS]))
    assert [r.task for r in loose.problems] == ["humanevalsynthesize-cpp"]


def test_generations_from_other_data_than_the_evaluation_are_refused(tmp_path):
    run_dir = make_run(tmp_path)  # one generate element per benchmark, in suite order
    for index, task in enumerate(contract.ALL_BENCHMARKS):
        run_dir.mark_done("generate", index, {"data_sha256": {task: "ab"}})
    assert col.gather_results(run_dir.root).complete
    run_dir.mark_done("generate", list(contract.ALL_BENCHMARKS).index("mbpp"), {"data_sha256": {"mbpp": "cd" * 32}})
    collection = one(col.gather_results(run_dir.root))
    assert [r.task for r in collection.problems] == ["mbpp"]
    assert "generations of mbpp were made from other benchmark data" in collection.tasks["mbpp"].reason


def test_raised_limits_mark_the_run_not_comparable(tmp_path):
    run_dir = make_run(tmp_path)
    assert col.gather_results(run_dir.root).to_dict()["comparable"] is True
    path = run_dir.metrics_file("humanevalsynthesize-rust", MODEL)
    payload = json.loads(path.read_text())
    payload["config"].update(timeout_s=120.0, reference_timeout_s=30.0, limits_comparable=False)
    path.write_text(json.dumps(payload), encoding="utf-8")
    results = col.gather_results(run_dir.root)
    collection = one(results)
    assert collection.complete and collection.mean is not None  # the score stands, labelled
    data = results.to_dict()
    assert data["comparable"] is False and data["models"][0]["comparable"] is False
    assert data["models"][0]["not_comparable"] == {"humanevalsynthesize-rust": "timeout 120.0 s, the reference uses 30.0 s"}
    assert "Not comparable with the reference harness" in col.render_markdown(results)


def test_limited_run_is_complete_labelled_and_has_no_zip(tmp_path):
    run_dir = make_run(tmp_path, limit=3)
    counts = col.run_stage(_ctx(run_dir))
    assert counts["limited"] is True
    assert counts["mean_competition"] == pytest.approx(sum(VALUES[t] for t in contract.COMPETITION_SUITE) / 13)
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    md = (run_dir.collect_dir / "results.md").read_text()
    assert "(limited)" in md
    with pytest.raises(col.ResultsError, match="limited"):
        col.submission_entries(one(col.gather_results(run_dir.root)))


def test_limited_run_with_a_short_task_fails(tmp_path):
    run_dir = make_run(tmp_path, limit=3, wrong_count=("humanevalsynthesize-js",))
    with pytest.raises(col.IncompleteResults, match="humanevalsynthesize-js.*2 of 3"):
        col.run_stage(_ctx(run_dir))


def test_stale_zip_is_removed_when_results_become_incomplete(tmp_path):
    run_dir = make_run(tmp_path)
    col.run_stage(_ctx(run_dir))
    assert (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    run_dir.metrics_file("mbpp", MODEL).unlink()
    with pytest.raises(col.IncompleteResults):
        col.run_stage(_ctx(run_dir))
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()


def test_short_generation_file_blocks_the_zip(tmp_path):
    run_dir = make_run(tmp_path)
    path = run_dir.generations_file("humanevalsynthesize-cpp", MODEL)
    path.write_text(json.dumps([["x"]] * 100))
    with pytest.raises(col.ResultsError, match="100 problems"):
        col.run_stage(_ctx(run_dir))
    assert not list(run_dir.collect_dir.glob("*.zip*"))


def test_missing_generations_file_blocks_the_zip(tmp_path):
    run_dir = make_run(tmp_path, shards={"mbpp": 2})
    run_dir.generations_file("mbpp", MODEL).unlink()
    with pytest.raises(col.IncompleteResults, match="no submission zip.*mbpp"):
        col.run_stage(_ctx(run_dir))


# ----- zip validation


def _zip(path: Path, entries: dict[str, object]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, json.dumps(data))
    return path


def _good_entries(model="m") -> dict[str, object]:
    return {f"generations_{model}/generations_{t}_{model}.json": [["p"]] * _size(t) for t in contract.COMPETITION_SUITE}


def test_validate_submission_accepts_the_right_layout(tmp_path):
    col.validate_submission(_zip(tmp_path / "ok.zip", _good_entries()), "m")


@pytest.mark.parametrize("change", ["extra", "missing", "renamed", "short", "empty_sample", "nested"])
def test_validate_submission_rejects(tmp_path, change):
    entries = _good_entries()
    first = f"generations_m/generations_{contract.COMPETITION_SUITE[0]}_m.json"
    if change == "extra":
        entries["generations_m/generations_humaneval_m.json"] = [["p"]] * 164
    elif change == "missing":
        entries.pop(first)
    elif change == "renamed":
        entries[first.replace("_m.json", "_other.json")] = entries.pop(first)
    elif change == "short":
        entries[first] = [["p"]] * 163
    elif change == "empty_sample":
        entries[first] = [[]] * 164
    elif change == "nested":
        entries["other/" + first] = entries.pop(first)
    with pytest.raises(col.ResultsError):
        col.validate_submission(_zip(tmp_path / "bad.zip", entries), "m")


# ----- loose metrics files (the reference layout)


def test_collect_metrics_dir_with_generations_dir(tmp_path):
    mdir = tmp_path / f"metrics_{MODEL}"
    gdir = tmp_path / f"generations_{MODEL}"
    mdir.mkdir()
    gdir.mkdir()
    for task in contract.COMPETITION_SUITE:
        (mdir / f"metrics_{task}_{MODEL}.json").write_text(json.dumps(
            {task: {"pass@1": VALUES[task]}, "config": {"num_problems": _size(task), "limit": None}}))
        (gdir / f"generations_{task}_{MODEL}.json").write_text(json.dumps([["x"]] * _size(task)))
    results = col.gather_results(tmp_path)
    collection = one(results)
    assert collection.complete and collection.model == MODEL and collection.humaneval is None
    written = col.write_outputs(results, tmp_path / "out")
    col.validate_submission(Path(written["zip"]), MODEL)
    # without the generations there is no zip, and saying so is not an error
    written = col.write_outputs(col.gather_results(mdir), tmp_path / "out2")
    assert written["zip"] is None and "generation files" in written["no_zip_reason"]


def test_gather_file_results_of_several_models_gives_one_column_each(tmp_path):
    for model in ("a", "b"):
        (tmp_path / f"metrics_mbpp_{model}.json").write_text(json.dumps({"mbpp": {"pass@1": 0.1}, "config": {"num_problems": 500}}))
    results = col.gather_results(tmp_path)
    assert [c.model for c in results.models] == ["a", "b"]
    assert results.model("b").tasks["mbpp"].status == "ok"
    assert len([r for r in results.model("b").problems if r.status == "missing"]) == 12
    assert results.best.model is None and set(results.best.excluded) == {"a", "b"}
    with pytest.raises(col.ResultsError, match="--model c: not a model"):
        col.gather_results(tmp_path, model="c")


def test_broken_metrics_file(tmp_path):
    (tmp_path / "metrics_mbpp_m.json").write_text("{broken")
    (tmp_path / "metrics_humaneval_m.json").write_text(json.dumps({"other": {}}))
    collection = one(col.gather_results(tmp_path))
    assert collection.tasks["mbpp"].status == "failed"
    assert collection.tasks["humaneval"].status == "failed" and "pass@1" in collection.tasks["humaneval"].reason


def test_print_table_via_rich(tmp_path):
    from rich.console import Console

    run_dir = make_run(tmp_path, skip=("mbpp",))
    console = Console(record=True, width=200)
    col.print_table(col.gather_results(run_dir.root), console=console)
    text = console.export_text()
    assert "humanevalsynthesize-python" in text and "missing" in text and "Incomplete" in text


# ----- sweeps: several models of one run_dir


def _values(shift: float) -> dict:
    return {task: round(value + shift, 4) for task, value in VALUES.items()}


def test_sweep_table_best_model_and_its_zip(tmp_path):
    models = ("m-step2", "m-step4", "m-step6")
    values = {"m-step2": _values(0.0), "m-step4": _values(0.02), "m-step6": _values(0.01)}
    values["m-step6"]["mbpp"] = 0.70  # best on one task without the best mean
    run_dir = make_run(tmp_path, models=models, values=values)
    counts = col.run_stage(_ctx(run_dir))
    assert counts["models"] == 3 and counts["best_model"] == "m-step4"
    data = json.loads((run_dir.collect_dir / "results.json").read_text())
    assert [m["name"] for m in data["models"]] == list(models)
    assert data["best"]["model"] == "m-step4" and data["best"]["tied_with"] == []
    assert data["best_per_task"]["mbpp"] == ["m-step6"]
    assert data["best_per_task"]["humanevalsynthesize-python"] == ["m-step4"]
    assert data["submission"]["model"] == "m-step4"
    assert [p.name for p in run_dir.collect_dir.glob("*.zip")] == ["generations_m-step4.zip"]
    rows = list(csv.reader(io.StringIO((run_dir.collect_dir / "results.csv").read_text())))
    assert rows[0] == ["task", "m-step2 pass@1", "m-step4 pass@1", "m-step6 pass@1"]
    mbpp = next(r for r in rows if r[0] == "mbpp")
    assert mbpp[3].endswith("*") and not mbpp[1].endswith("*")
    mean = next(r for r in rows if r[0] == "mean (13 tasks)")
    assert mean[2].endswith("*")
    assert "Best model: m-step4" in (run_dir.collect_dir / "results.md").read_text()
    # --model: the zip of another model instead, the stale one goes
    written = col.write_outputs(col.gather_results(run_dir.root, model="m-step2"), run_dir.collect_dir)
    assert written["model"] == "m-step2"
    assert [p.name for p in run_dir.collect_dir.glob("*.zip")] == ["generations_m-step2.zip"]


def test_sweep_tie_goes_to_the_first_model_and_is_said(tmp_path):
    run_dir = make_run(tmp_path, models=("a", "b"), values={"a": VALUES, "b": VALUES})
    best = col.gather_results(run_dir.root).best
    assert best.model == "a" and best.tied_with == ["b"] and "tied with b" in best.reason


def test_sweep_incomplete_model_is_left_out_and_named(tmp_path):
    values = {"a": _values(0.0), "b": _values(0.1)}
    run_dir = make_run(tmp_path, models=("a", "b"), values=values, skip=(("b", "mbpp"),))
    with pytest.raises(col.IncompleteResults, match="b: 1 of 14 tasks missing"):
        col.run_stage(_ctx(run_dir))
    data = json.loads((run_dir.collect_dir / "results.json").read_text())
    assert data["best"]["model"] == "a"  # b scores higher on the tasks it has, but lacks mbpp
    assert "mbpp" in data["best"]["excluded"]["b"]
    assert (run_dir.collect_dir / "generations_a.zip").exists()


def test_pass_at_k_with_standard_error_when_sampling(tmp_path):
    extra = {"pass@10": 0.5, "pass@1_stderr": 0.01, "pass@10_stderr": 0.02}
    run_dir = make_run(tmp_path, metrics_extra=extra, models=("a", "b"))
    for path in run_dir.root.rglob("metrics_*.json"):
        data = json.loads(path.read_text())
        data["config"]["n_samples_min"] = 10
        path.write_text(json.dumps(data))
    results = col.gather_results(run_dir.root)
    data = results.to_dict()
    assert data["n_samples"] == 10 and data["ks"] == ["pass@1", "pass@10"]
    a = data["models"][0]
    assert a["tasks"]["mbpp"]["metrics"]["pass@10_stderr"] == 0.02
    assert a["mean_competition_stderr"] == pytest.approx((13 * 0.01 ** 2) ** 0.5 / 13)
    md = col.render_markdown(results)
    assert "| task (pass@10) | a | b |" in md and "0.5000 ± 0.0200" in md
