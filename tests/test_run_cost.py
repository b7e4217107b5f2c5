"""GPU-hours and CPU-hours of a run: AllocTRES parsing, requeued attempts from one sacct answer,
per-model shares of mixed elements, and the local scheduler's measured attempts."""
from __future__ import annotations

import pytest

from jobs.results.cost import (SHARED, cost_from_sacct, cost_from_state, element_models, parse_sacct,
                               parse_tres, run_cost, slurm_element_ids)
from launcher.rundir import RunDir, atomic_write_json


def _plan() -> dict:
    res = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 2, "cpus_per_task": 4}
    return {
        "model_name": "tiny",
        "jobs": [
            {"stage": "train", "items": [{"key": "train"}], "is_array": False, "chunks": [[0, 1]],
             "resources": {**res, "nodes": 2, "tasks_per_node": 2}},
            {"stage": "generate", "is_array": True, "chunks": [[0, 2], [2, 1]], "resources": res,
             "items": [{"key": "e000", "pieces": [{"model": "a", "benchmark": "mbpp", "start": 0, "stop": 30},
                                                  {"model": "b", "benchmark": "mbpp", "start": 0, "stop": 10}]},
                       {"key": "e001", "pieces": [{"model": "b", "benchmark": "humaneval", "start": 0, "stop": 164}]},
                       {"key": "mbpp", "benchmark": "mbpp"}]},
            {"stage": "collect", "items": [{"key": "collect"}], "is_array": False, "chunks": [[0, 1]],
             "resources": {**res, "gpus_per_node": 0, "cpus_per_task": 1}},
        ],
    }


def _manifest() -> dict:
    return {"scheduler": "slurm", "submit_time": "2026-12-05T09:00:00", "attempts": [
        {"jobs": {"train": [{"id": "100", "offset": 0, "array": None}],
                  "generate": [{"id": "101", "offset": 0, "array": None}, {"id": "102", "offset": 2, "array": None}],
                  "collect": [{"id": "103", "offset": 0, "array": None}]}},
        # a resume resubmitted generate element 1 only
        {"jobs": {"generate": [{"id": "110", "offset": 0, "array": "1"}]}},
    ]}


def test_parse_tres_counts_cpus_and_gpus():
    assert parse_tres("billing=4,cpu=4,gres/gpu=2,mem=8G,node=1") == (4, 2)
    assert parse_tres("cpu=8,gres/gpu:a100=2,gres/gpu:h100=1,mem=1G") == (8, 3)
    assert parse_tres("cpu=8,gres/gpu=4,gres/gpu:a100=4") == (8, 4)
    assert parse_tres("billing=2,cpu=2,mem=1000M,node=2") == (2, 0)
    assert parse_tres("") == (0, 0)


def test_parse_sacct_skips_never_started_array_rows():
    rows = parse_sacct("101_0|COMPLETED|cpu=4,gres/gpu=2|60\n101_[1-3]|PENDING||0\n100|CANCELLED by 0|cpu=16|10\n")
    assert [(r.job_id, r.state, r.cpus, r.gpus, r.elapsed_s) for r in rows] == [
        ("101_0", "COMPLETED", 4, 2, 60), ("100", "CANCELLED", 16, 0, 10)]


def test_element_ids_cover_every_submission():
    ids = slurm_element_ids(_manifest(), _plan())
    assert ids["100"] == ("train", 0)
    assert ids["101_1"] == ("generate", 1) and ids["102_0"] == ("generate", 2)
    assert ids["110_1"] == ("generate", 1)  # the resume's element keeps its own index
    assert ids["103"] == ("collect", 0)


def test_cost_from_sacct_counts_requeued_attempts_and_splits_models():
    sacct = "\n".join([
        "100|COMPLETED|cpu=16,gres/gpu=4,node=2|3600",
        "101_0|REQUEUED|cpu=4,gres/gpu=2|1800",     # requeued once (--duplicates lists both)
        "101_0|COMPLETED|cpu=4,gres/gpu=2|1800",
        "101_1|FAILED|cpu=4,gres/gpu=2|360",
        "110_1|RUNNING|cpu=4,gres/gpu=2|720",       # the resume of element 1, still running
        "102_0|COMPLETED|cpu=4,gres/gpu=2|36",
        "103|COMPLETED|cpu=1|36",
        "999|COMPLETED|cpu=64,gres/gpu=8|3600",     # not this run's
    ])
    cost = cost_from_sacct(_plan(), _manifest(), sacct)
    by = {(e.stage, e.index): e for e in cost.elements}
    assert by[("generate", 0)].attempts == 2 and by[("generate", 0)].gpu_hours == pytest.approx(2.0)
    assert by[("generate", 1)].attempts == 2 and by[("generate", 1)].running
    assert by[("generate", 1)].cpu_hours == pytest.approx(4 * (360 + 720) / 3600)
    stages = cost.by_stage()
    assert stages["train"]["gpu_hours"] == pytest.approx(4.0)
    assert stages["generate"]["gpu_hours"] == pytest.approx(2 * (3600 + 1080 + 36) / 3600)
    assert stages["collect"] == {"gpu_hours": 0.0, "cpu_hours": 0.01, "elapsed_s": 36.0, "attempts": 1}
    assert cost.total["gpu_hours"] == pytest.approx(4.0 + 2 * 4716 / 3600, abs=1e-5)
    models = cost.by_model()
    # element 0: 30 problems of a, 10 of b
    assert models["a"]["gpu_hours"] == pytest.approx(2.0 * 0.75)
    assert models["b"]["gpu_hours"] == pytest.approx(2.0 * 0.25 + 2 * 1080 / 3600)
    assert models["tiny"]["gpu_hours"] == pytest.approx(2 * 36 / 3600)
    assert models[SHARED]["gpu_hours"] == pytest.approx(4.0)
    assert "so far" in cost.summary_line() and "from sacct" in cost.summary_line()


def test_element_models_of_each_kind_of_item():
    plan = {"model_name": "tiny"}
    assert element_models(plan, {"key": "m", "model": "tiny-step2"}) == {"tiny-step2": 1.0}
    assert element_models(plan, {"key": "mbpp", "benchmark": "mbpp"}) == {"tiny": 1.0}
    assert element_models(plan, {"key": "train"}) == {SHARED: 1.0}


def test_local_cost_from_measured_attempts(tmp_path):
    run = RunDir(tmp_path)
    plan = _plan()
    atomic_write_json(run.plan_file, plan)
    atomic_write_json(run.manifest_file, {"scheduler": "local", "submit_time": "x"})
    run.update_state("train", 0, state="COMPLETED", started=100.0, ended=200.0,
                     usage=[{"seconds": 50, "cpus": 2, "gpus": 0}, {"seconds": 100, "cpus": 2, "gpus": 0}])
    run.update_state("generate", 2, state="RUNNING", started=1000.0, cpus=3, gpus=1,
                     usage=[{"seconds": 10, "cpus": 3, "gpus": 1}])
    cost = cost_from_state(run, plan, now=1030.0)
    by = {(e.stage, e.index): e for e in cost.elements}
    assert by[("train", 0)].attempts == 2 and by[("train", 0)].cpu_seconds == 300
    assert by[("generate", 2)].attempts == 2 and by[("generate", 2)].running
    assert by[("generate", 2)].gpu_seconds == 40 and by[("generate", 2)].cpu_seconds == 120
    assert cost.source == "local" and cost.notes == []
    assert run_cost(run).source == "local"


def test_slurm_without_accounting_falls_back_to_state_files(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    atomic_write_json(run.plan_file, _plan())
    atomic_write_json(run.manifest_file, _manifest())
    run.update_state("generate", 0, state="COMPLETED", started=0.0, ended=1800.0)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no sacct here
    cost = run_cost(run)
    assert cost.source == "state files"
    assert "sacct unavailable" in cost.notes[0] and "last attempt" in cost.notes[1]
    generate0 = next(e for e in cost.elements if (e.stage, e.index) == ("generate", 0))
    assert generate0.gpu_hours == pytest.approx(1.0) and generate0.cpu_hours == pytest.approx(2.0)
