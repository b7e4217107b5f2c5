"""`mftlaunch compare` and `mftlaunch report` on collected run directories: the tasks x models
table across runs, refusal of runs measured differently (unless --force), every format, one clear
line for a run directory that cannot be read, and the report's parts."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.rundir import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_fixtures import TASKS, make_sweep_run  # noqa: E402


@pytest.fixture
def two_runs(tmp_path):
    a = make_sweep_run(tmp_path / "runA", steps=(2, 4), tensorboard=False)
    b = make_sweep_run(tmp_path / "runB", steps=(6,), model_name="other", tensorboard=False)
    return a, b


def test_compare_two_runs_as_json(two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a.root), str(b.root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"] == ["runA/tiny-step2", "runA/tiny-step4", "runB/other-step6"]
    assert list(data["pass@1"]) == TASKS[:13] + ["mean (13 tasks)", "humaneval"]
    assert data["pass@1"]["mbpp"] == {"runA/tiny-step2": 0.3, "runA/tiny-step4": 0.0, "runB/other-step6": 0.7}
    assert data["best"]["mbpp"] == ["runB/other-step6"]
    assert data["delta"]["values"]["mbpp"] == pytest.approx(0.7)  # three columns: the spread
    assert data["differences"] == []


def test_compare_formats_table_md_csv_html(two_runs, capsys, tmp_path):
    a, b = two_runs
    assert main(["compare", str(a.root), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["task", "tiny-step2", "tiny-step4", "best", "Δ (tiny-step4 − tiny-step2)"]
    mbpp = next(r for r in rows if r[0] == "mbpp")
    assert mbpp == ["mbpp", "0.3000", "0.0000", "tiny-step2", "-0.3000"]
    assert main(["compare", str(a.root), str(b.root), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "| mbpp | 0.3000 | 0.0000 | **0.7000** | runB/other-step6 | 0.7000 |" in md
    assert main(["compare", str(a.root), str(b.root)]) == 0
    table = capsys.readouterr().out
    assert "humanevalfixtests-rust" in table and "runB/other-step6" in table
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a.root), str(b.root), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="results-table"' in page and "runA/tiny-step4" in page


def test_compare_refuses_other_data_or_prompts_unless_forced(tmp_path, capsys):
    a = make_sweep_run(tmp_path / "runA", steps=(2,), tensorboard=False)
    b = make_sweep_run(tmp_path / "runB", steps=(2,), data_sha="b" * 64, prompt_format="chat", tensorboard=False)
    assert main(["compare", str(a.root), str(b.root)]) == 1
    err = capsys.readouterr().err
    assert "refusing to compare" in err and "--force" in err
    assert "data_sha256 differs on humanevalsynthesize-python and 13 more task(s)" in err
    assert "prompt_format differs on" in err and "runA/tiny-step2 competition vs runB/tiny-step2 chat" in err
    assert main(["compare", str(a.root), str(b.root), "--force", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["differences"]) == 2
    assert "warning: data_sha256 differs" in captured.err
    # models inside one run may differ in prompts: a sweep chose them
    assert main(["compare", str(a.root), "--format", "json"]) == 0


@pytest.mark.parametrize("command", ["compare", "report"])
def test_unreadable_results_get_one_line(command, tmp_path, capsys):
    """A sound run directory whose results.json is absent or damaged (missing, empty, foreign and
    damaged run directories themselves are tests/test_bad_run_dirs.py's corpus)."""
    good = make_sweep_run(tmp_path / "good", steps=(2,), tensorboard=False)
    not_collected = make_sweep_run(tmp_path / "running", steps=(2,), tensorboard=False)
    not_collected.results_table("json").unlink()
    damaged = make_sweep_run(tmp_path / "damaged", steps=(2,), tensorboard=False)
    damaged.results_table("json").write_text('{"schema": 2, "models": [')
    wrong = make_sweep_run(tmp_path / "wrong", steps=(2,), tensorboard=False)
    atomic_write_json(wrong.results_table("json"), {"schema": 2, "models": [{"tasks": {}}]})
    task_not_object = make_sweep_run(tmp_path / "task", steps=(2,), tensorboard=False)
    atomic_write_json(task_not_object.results_table("json"),
                      {"schema": 2, "models": [{"name": "tiny-step2", "tasks": {"humaneval": 0.5}}]})
    expected = {
        not_collected.root: "its collect stage has not run",
        damaged.root: "damaged (JSONDecodeError",
        wrong.root: "damaged (KeyError",
        task_not_object.root: "each task an object",
    }
    for path, message in expected.items():
        extra = ["--out", str(tmp_path / "r.html")] if command == "report" else []
        assert main([command, str(good.root), str(path), *extra]) == 1, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err, err
    assert not (tmp_path / "r.html").exists()


def test_report_parts(tmp_path, capsys):
    run = make_sweep_run(tmp_path / "sweep", steps=(2, 4, 6))
    out = tmp_path / "report.html"
    assert main(["report", str(run.root), "--out", str(out)]) == 0
    page = out.read_text()
    for heading in ("Results (pass@1)", "pass@1 per task", "Checkpoints", "Training", "Outcomes per language",
                    "Resources"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "Best of sweep: <b>tiny-step6</b>" in page
    # nothing from outside the file: no links, scripts or remote images
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == 5
    # the cost from the local scheduler's measurements: (900 + 1800 + 1200) s x 1 GPU, all x 2 CPUs
    assert "<th scope='row'>total</th><td>1.083</td><td>2.187</td>" in page
    assert "<th scope='row'>tiny-step2</th>" in page  # per model


def test_report_of_an_eval_only_run_without_training_curves(tmp_path, capsys):
    run = make_sweep_run(tmp_path / "evalonly", steps=(3,), tensorboard=False)
    results = json.loads(run.results_table("json").read_text())
    for model in results["models"]:
        model["step"] = None
    atomic_write_json(run.results_table("json"), results)
    assert main(["report", str(run.root), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Checkpoints</h2>" not in page and "<h2>Training</h2>" not in page
    assert page.count('src="data:image/png;base64,') == 3


def test_rows_are_the_tasks_some_model_was_asked_for(tmp_path, capsys):
    run = make_sweep_run(tmp_path / "nohumaneval", steps=(2,), tensorboard=False)
    results = json.loads(run.results_table("json").read_text())
    del results["models"][0]["tasks"]["humaneval"]  # extra_tasks still lists it, as the collector does
    atomic_write_json(run.results_table("json"), results)
    assert main(["compare", str(run.root), "--format", "json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["pass@1"]) == TASKS[:13] + ["mean (13 tasks)"]


def test_a_row_where_every_model_ties_says_so(tmp_path, capsys):
    run = make_sweep_run(tmp_path / "same", steps=(2, 22), tensorboard=False)  # 22 // 2 * 7 ≡ 2 // 2 * 7 (mod 10)
    assert main(["compare", str(run.root), "--format", "csv"]) == 0
    mbpp = next(r for r in csv.reader(io.StringIO(capsys.readouterr().out)) if r[0] == "mbpp")
    assert mbpp == ["mbpp", "0.3000", "0.3000", "all tied", "+0.0000"]
