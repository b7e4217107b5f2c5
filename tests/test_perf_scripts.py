"""benchmarks/scaling.py on hand-computed schedules; benchmarks/training.py's CPU smoke run."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scaling():
    return load("scaling")


def test_lpt_list_schedule_by_hand(scaling):
    # LPT on 2 GPUs: 5 -> g0, 4 -> g1, 3 -> g1 (free at 4), 3 -> g0 (free at 5), 3 -> g1 (free at 7)
    durations = [3, 5, 3, 4, 3]
    makespan, busy, where = scaling.list_schedule(durations, scaling.lpt_order(durations), 2)
    assert makespan == 10 and busy == [8, 10]
    assert where == [1, 0, 0, 1, 1]


def test_splits_by_count(scaling):
    assert scaling.count_split(5, 2) == [(0, 3), (3, 5)]  # equal problem counts


def test_makespans_of_the_three_strategies_by_hand(scaling):
    # Benchmark a: one 4 s problem then four 1 s problems; b: two 2 s problems; 3 GPUs, no start-up.
    times = {"a": [4.0, 1.0, 1.0, 1.0, 1.0], "b": [2.0, 2.0]}
    result = scaling.plan(times, prompt_cost=times, gpus=3, overhead=0.0)
    # one element per benchmark: a (8 s) and b (4 s) side by side
    assert result["per_benchmark"]["makespan_s"] == pytest.approx(8.0)
    assert result["per_benchmark"]["elements"] == 2
    # by count: a in 3 + 2 problems (6 s, 2 s), b whole (4 s); splitting further cannot beat
    # ceil(7 problems / 3 GPUs) = 3 problems on the estimate, so the first such plan stays
    assert result["count_shards"]["shards"] == {"a": 2, "b": 1}
    assert result["count_shards"]["makespan_s"] == pytest.approx(6.0)
    # the planner's balancer, 3 elements (a perfect estimate here): a[0] | a[1:5] | b = 4 | 4 | 4
    assert result["balanced"]["shards"] == {"a": 2, "b": 1}
    assert result["balanced"]["makespan_s"] == pytest.approx(4.0)
    assert result["lower_bound_s"] == pytest.approx(4.0)  # max(12 / 3, 4)


def test_start_up_cost_counts_per_element(scaling):
    times = {"a": [1.0] * 6, "b": [1.0, 1.0], "c": [1.0, 1.0]}
    # 2 GPUs, no start-up: a alone (6) vs b + c (4) -> 6; shards a 3 + 3 -> 5 = the bound
    plain = scaling.plan(times, prompt_cost=times, gpus=2, overhead=0.0)
    assert plain["per_benchmark"]["makespan_s"] == pytest.approx(6.0)
    assert plain["count_shards"]["makespan_s"] == pytest.approx(5.0)
    assert plain["count_shards"]["shards"] == {"a": 2, "b": 1, "c": 1}
    # 10 s per element: a (16) vs b + c (24) -> 24; splitting adds elements, so it does not pay
    costly = scaling.plan(times, prompt_cost=times, gpus=2, overhead=10.0)
    assert costly["per_benchmark"]["makespan_s"] == pytest.approx(24.0)
    assert costly["count_shards"]["elements"] == 3


def test_problem_times_from_a_sidecar(scaling, tmp_path):
    suite = {"mbpp": {"prompt_tokens": [10, 20, 30], "answer_tokens": [5, 5, 5]}}
    sidecar = {"benchmark": "mbpp", "counts": {"seconds_this_attempt": 8.0},
               "problems": [{"index": 0, "prompt_tokens": 10, "new_tokens": [10]},
                            {"index": 1, "prompt_tokens": 20, "new_tokens": [30]}]}
    (tmp_path / "generations_mbpp_m.raw.json").write_text(json.dumps(sidecar))
    cars = scaling.read_sidecars([str(tmp_path)])
    times, prompts, news, prov = scaling.problem_times(suite, cars, prefill_s=0.0, decode_s=1.0, new_tokens=None)
    # 8 s shared 10 : 30 between the two timed problems (scale 0.2); the third is modelled with
    # its canonical answer (5 tokens) at the same scale
    assert times["mbpp"] == pytest.approx([2.0, 6.0, 1.0])
    assert news["mbpp"] == [10, 30, 5]
    assert prov["problems_measured"] == 2 and prov["problems_modelled"] == 1


def test_scaling_script_on_the_real_suite(scaling, data_dir, tmp_path, capsys):
    out = tmp_path / "scaling.json"
    assert scaling.main(["--data-dir", str(data_dir), "--gpus", "1,13,16", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["suite"]["problems"] == 2468
    by_gpus = {r["gpus"]: r for r in report["results"]}
    assert by_gpus[13]["per_benchmark"]["elements"] == 13
    for r in report["results"]:
        for name in ("per_benchmark", "count_shards", "balanced"):
            assert r[name]["makespan_s"] >= r["lower_bound_s"] - 1e-9
    # the acceptance figure: the planner on the full 2,468 problems, 16 elements
    for stage in ("generate", "evaluate"):
        figures = report["planner_balance"][stage]
        assert figures["elements"] == 16 and figures["max_over_mean"] <= 1.15, figures
        assert figures["per_benchmark"]["elements"] == 13
    assert report["planner_balance"]["generate"]["per_benchmark"]["max_over_mean"] > 2  # MBPP: 500 problems
    printed = capsys.readouterr().out
    assert "per-benchmark" in printed and "one element per benchmark (13)" in printed


def test_training_script_cpu_smoke(tmp_path):
    training = load("training")
    out = tmp_path / "training.json"
    args = ["--device", "cpu", "--model", "builtin:tiny-llama", "--seq-length", "64", "--steps", "2", "--warmup", "0",
            "--repeats", "1", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert training.main(args) == 0
    report = json.loads(out.read_text())
    pad, pack = report["padding"], report["pack"]
    assert pack["nonpad_per_step"] > pad["nonpad_per_step"]
    assert pack["positions_per_step"] == pad["positions_per_step"] == 2 * 64
    agreement = report["loss_agreement_first_packed_batch"]
    assert agreement["dtype"] == "fp32" and agreement["samples"] > 2
    assert agreement["max_abs_diff"] < 1e-4
    assert "build_model" in report["model"]["built_by"]


def test_training_script_runs_qlora_on_cpu(tmp_path):
    training = load("training")
    out = tmp_path / "qlora.json"
    args = ["--device", "cpu", "--peft", "qlora", "--model", "builtin:tiny-llama", "--seq-length", "64", "--steps", "1",
            "--warmup", "0", "--repeats", "1", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert training.main(args) == 0
    report = json.loads(out.read_text())
    assert "skipped" not in report and report["model"]["peft"] == "qlora"
    assert report["pack"]["nonpad_per_step"] > 0
