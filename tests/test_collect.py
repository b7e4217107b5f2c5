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


def make_run(tmp_path: Path, *, limit=None, shards=None, skip=(), wrong_count=(), with_plan=False) -> RunDir:
    """A run directory as generate/evaluate leave it: recipe, generations (sharded where asked),
    metrics files in the reference shape."""
    shards = shards or {}
    recipe = Recipe.model_validate({
        "name": "r", "limit": limit,
        "model": {"path": "builtin:tiny-llama", "model_name": MODEL},
        "stages": {"generate": {"benchmarks": ["all"], "shards": shards}, "evaluate": {}, "collect": {}},
    })
    run_dir = RunDir(tmp_path / "run")
    run_dir.root.mkdir(parents=True)
    run_dir.recipe_file.write_text(recipe_to_yaml(recipe), encoding="utf-8")
    for task in contract.ALL_BENCHMARKS:
        n = _size(task, limit)
        k = shards.get(task, 1)
        programs = [[f"program {task} {i}"] for i in range(n)]
        bounds = [round(n * s / k) for s in range(k + 1)]
        for s in range(k):
            key = task if k == 1 else f"{task}-s{s}of{k}"
            path = run_dir.generate_dir(key) / f"generations_{task}_{MODEL}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(programs[bounds[s]:bounds[s + 1]]), encoding="utf-8")
        if task in skip:
            continue
        got = n - 1 if task in wrong_count else n
        metrics = {task: {"pass@1": VALUES[task]}, "config": {"num_problems": got, "limit": limit, "data_sha256": "ab"}}
        path = run_dir.evaluate_dir(task) / f"metrics_{task}_{MODEL}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics), encoding="utf-8")
    if with_plan:
        items = [{"key": t, "benchmark": t, "num_shards": 1} for t in contract.ALL_BENCHMARKS]
        plan = {"jobs": [{"stage": "evaluate", "items": items}]}
        run_dir.plan_file.write_text(json.dumps(plan), encoding="utf-8")
    return run_dir


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
    assert data["complete"] and not data["limited"]
    assert data["average"] == pytest.approx(expected_mean)
    assert [r["task"] for r in data["results"]] == list(contract.COMPETITION_SUITE)
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
    data = json.loads((run_dir.collect_dir / "results.json").read_text())
    assert data["missing"] == ["humanevalfixtests-rust"] and data["mean_competition"] is None
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    assert "n/a: 12 of 13" in (run_dir.collect_dir / "results.md").read_text()


def test_missing_humaneval_also_fails_but_mean_is_there(tmp_path):
    run_dir = make_run(tmp_path, skip=("humaneval",))
    collection = col.gather_results(run_dir.root)
    assert not collection.complete and collection.mean is not None
    assert [r.task for r in collection.problems] == ["humaneval"]


def test_failed_element_reason_comes_from_state(tmp_path):
    run_dir = make_run(tmp_path, skip=("humanevalsynthesize-java",), with_plan=True)
    index = list(contract.ALL_BENCHMARKS).index("humanevalsynthesize-java")
    path = run_dir.element_state("evaluate", index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"state": "FAILED", "error": "SandboxError: no javac"}))
    collection = col.gather_results(run_dir.root)
    assert "FAILED: SandboxError: no javac" in collection.problem_summary()


def test_wrong_problem_count_is_a_failure(tmp_path):
    run_dir = make_run(tmp_path, wrong_count=("mbpp",))
    collection = col.gather_results(run_dir.root)
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
    collection = col.gather_results(run_dir.root)
    assert [r.task for r in collection.problems] == ["humanevalsynthesize-cpp"]
    assert "refusing to mix data versions" in collection.tasks["humanevalsynthesize-cpp"].reason
    assert collection.mean is None
    loose = col.gather_results(*[run_dir.metrics_file(t, MODEL) for t in contract.ALL_BENCHMARKS])
    assert [r.task for r in loose.problems] == ["humanevalsynthesize-cpp"]


def test_generations_from_other_data_than_the_evaluation_are_refused(tmp_path):
    run_dir = make_run(tmp_path)
    items = [{"key": t, "benchmark": t, "shard": 0, "num_shards": 1} for t in contract.ALL_BENCHMARKS]
    run_dir.plan_file.write_text(json.dumps({"jobs": [{"stage": "generate", "items": items}]}), encoding="utf-8")
    for index, task in enumerate(contract.ALL_BENCHMARKS):
        run_dir.mark_done("generate", index, {"data_sha256": "ab"})
    assert col.gather_results(run_dir.root).complete
    run_dir.mark_done("generate", list(contract.ALL_BENCHMARKS).index("mbpp"), {"data_sha256": "cd" * 32})
    collection = col.gather_results(run_dir.root)
    assert [r.task for r in collection.problems] == ["mbpp"]
    assert "generations of mbpp were made from other benchmark data" in collection.tasks["mbpp"].reason


def test_raised_limits_mark_the_run_not_comparable(tmp_path):
    run_dir = make_run(tmp_path)
    assert col.gather_results(run_dir.root).to_dict()["comparable"] is True
    path = run_dir.metrics_file("humanevalsynthesize-rust", MODEL)
    payload = json.loads(path.read_text())
    payload["config"].update(timeout_s=120.0, reference_timeout_s=30.0, limits_comparable=False)
    path.write_text(json.dumps(payload), encoding="utf-8")
    collection = col.gather_results(run_dir.root)
    assert collection.complete and collection.mean is not None  # the score stands, labelled
    data = collection.to_dict()
    assert data["comparable"] is False
    assert data["not_comparable"] == {"humanevalsynthesize-rust": "timeout 120.0 s, the reference uses 30.0 s"}
    assert "Not comparable with the reference harness" in col.render_markdown(collection)


def test_limited_run_is_complete_labelled_and_has_no_zip(tmp_path):
    run_dir = make_run(tmp_path, limit=3)
    counts = col.run_stage(_ctx(run_dir))
    assert counts["limited"] is True
    assert counts["mean_competition"] == pytest.approx(sum(VALUES[t] for t in contract.COMPETITION_SUITE) / 13)
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    md = (run_dir.collect_dir / "results.md").read_text()
    assert "(limited)" in md
    with pytest.raises(col.ResultsError, match="limited"):
        col.submission_entries(col.gather_results(run_dir.root))


def test_limited_run_with_a_short_task_fails(tmp_path):
    run_dir = make_run(tmp_path, limit=3, wrong_count=("humanevalsynthesize-js",))
    with pytest.raises(col.IncompleteResults, match="humanevalsynthesize-js.*2 of 3"):
        col.run_stage(_ctx(run_dir))


def test_stale_zip_is_removed_when_results_become_incomplete(tmp_path):
    run_dir = make_run(tmp_path)
    col.run_stage(_ctx(run_dir))
    assert (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()
    (run_dir.evaluate_dir("mbpp") / f"metrics_mbpp_{MODEL}.json").unlink()
    with pytest.raises(col.IncompleteResults):
        col.run_stage(_ctx(run_dir))
    assert not (run_dir.collect_dir / f"generations_{MODEL}.zip").exists()


def test_short_generation_file_blocks_the_zip(tmp_path):
    run_dir = make_run(tmp_path)
    path = run_dir.generate_dir("humanevalsynthesize-cpp") / f"generations_humanevalsynthesize-cpp_{MODEL}.json"
    path.write_text(json.dumps([["x"]] * 100))
    with pytest.raises(col.ResultsError, match="100 problems"):
        col.run_stage(_ctx(run_dir))
    assert not list(run_dir.collect_dir.glob("*.zip*"))


def test_missing_shard_blocks_the_zip(tmp_path):
    run_dir = make_run(tmp_path, shards={"mbpp": 2})
    (run_dir.generate_dir("mbpp-s1of2") / f"generations_mbpp_{MODEL}.json").unlink()
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
    collection = col.gather_results(tmp_path)
    assert collection.complete and collection.model == MODEL and collection.humaneval is None
    written = col.write_outputs(collection, tmp_path / "out")
    col.validate_submission(Path(written["zip"]), MODEL)
    # without the generations there is no zip, and saying so is not an error
    collection = col.gather_results(mdir)
    written = col.write_outputs(collection, tmp_path / "out2")
    assert written["zip"] is None and "generation files" in written["no_zip_reason"]


def test_collect_files_needs_a_model_when_several(tmp_path):
    for model in ("a", "b"):
        (tmp_path / f"metrics_mbpp_{model}.json").write_text(json.dumps({"mbpp": {"pass@1": 0.1}, "config": {"num_problems": 500}}))
    with pytest.raises(col.ResultsError, match="several models"):
        col.gather_results(tmp_path)
    collection = col.gather_results(tmp_path, model="b")
    assert collection.tasks["mbpp"].status == "ok"
    assert len([r for r in collection.problems if r.status == "missing"]) == 12


def test_broken_metrics_file(tmp_path):
    (tmp_path / "metrics_mbpp_m.json").write_text("{broken")
    (tmp_path / "metrics_humaneval_m.json").write_text(json.dumps({"other": {}}))
    collection = col.gather_results(tmp_path)
    assert collection.tasks["mbpp"].status == "failed"
    assert collection.tasks["humaneval"].status == "failed" and "pass@1" in collection.tasks["humaneval"].reason


def test_print_table_via_rich(tmp_path):
    from rich.console import Console

    run_dir = make_run(tmp_path, skip=("mbpp",))
    console = Console(record=True, width=200)
    col.print_table(col.gather_results(run_dir.root), console=console)
    text = console.export_text()
    assert "humanevalsynthesize-python" in text and "missing" in text and "Incomplete" in text
