"""pass@k, the evaluate stage with a fake sandbox (shards, limit, requeue, files), and end to end
through the real sandbox on canonical and buggy programs."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs import evaluate
from jobs.code_benchmarks.data import DataError, load_benchmark
from jobs.context import RequeueRequested
from jobs.code_benchmarks.limits import reference_timeout_s
from jobs.evaluate import GenerationsError, error_class, pass_at_k, pass_at_k_summary
from jobs.results.collection import read_task_metrics
from launcher.recipe import Recipe
from launcher.rundir import RunDir

# ----- pass@k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that a random k-subset of n samples (c correct) holds a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 2), (6, 1, 3), (7, 0, 4), (8, 5, 4), (10, 3, 10)])
def test_pass_at_k_matches_brute_force(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k))


def test_pass_at_k_values():
    assert pass_at_k(20, 5, 1) == pytest.approx(0.25)
    assert pass_at_k(20, 5, 10) == pytest.approx(1 - math.comb(15, 10) / math.comb(20, 10))
    assert pass_at_k(3, 0, 2) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_summary_emits_only_ks_every_problem_has():
    greedy = pass_at_k_summary([(1, 1), (1, 0), (1, 0), (1, 1)])
    assert greedy == {"pass@1": 0.5}
    many = pass_at_k_summary([(20, 4), (10, 0)])
    assert set(many) == {"pass@1", "pass@10"}
    assert many["pass@1"] == pytest.approx((0.2 + 0.0) / 2)
    assert many["pass@10"] == pytest.approx((pass_at_k(20, 4, 10) + 0.0) / 2)


# ----- a fake sandbox


@dataclass
class FakeResult:
    status: str
    passed: bool
    stderr_tail: str = ""
    stdout_tail: str = ""
    duration_s: float = 0.01
    detail: str = ""


class FakeSandbox:
    """'Passes' a program iff it contains PASS; records every call."""

    def __init__(self):
        self.calls: list[int] = []
        self.kwargs: list[dict] = []

    def assemble(self, benchmark, row, program):
        return "python", program + "\n# tests of " + str(row["task_id"])

    def execute_many(self, jobs, workers, **kw):
        self.calls.append(len(jobs))
        self.kwargs.append(kw)
        out = []
        for _lang, prog in jobs:
            if "PASS" in prog:
                out.append(FakeResult("passed", True))
            elif "SLOW" in prog:
                out.append(FakeResult("timeout", False, detail="wall clock"))
            else:
                out.append(FakeResult("failed", False, stderr_tail="Traceback...\nAssertionError: nope\n"))
        return out


def test_error_class():
    assert error_class(FakeResult("passed", True)) is None
    assert error_class(FakeResult("failed", False, stderr_tail="  File x\nNameError: name 'f'")) == "NameError"
    assert error_class(FakeResult("timeout", False)) == "timeout"
    assert error_class(FakeResult("compile_error", False, stderr_tail="error: x")) == "compile_error"


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_evaluate_file_with_fake_sandbox(tmp_path, data_dir):
    fake = FakeSandbox()
    gens = [["PASS a"], ["fail b"], ["SLOW c"], ["PASS d"]]
    src = _write(tmp_path / "g.json", gens)
    out = tmp_path / "m" / "metrics_mbpp_tiny.json"
    payload = evaluate.evaluate_file("mbpp", src, out, data_dir, sandbox="none", workers=2, limit=4,
                                     assemble=fake.assemble, execute_many=fake.execute_many)
    # standard error: sample sd of the per-problem outcomes [1, 0, 0, 1] (sqrt(1/3)) / sqrt(4)
    assert payload["mbpp"] == {"pass@1": 0.5, "pass@1_stderr": pytest.approx((1 / 3) ** 0.5 / 2)}
    on_disk = json.loads(out.read_text())
    assert on_disk["mbpp"]["pass@1"] == 0.5
    config = on_disk["config"]
    assert config["data_sha256"] == load_benchmark("mbpp", data_dir).sha256
    assert config["num_problems"] == 4 and config["limit"] == 4
    assert config["status_counts"] == {"failed": 1, "passed": 2, "timeout": 1}
    lines = [json.loads(l) for l in (tmp_path / "m" / "results_mbpp_tiny.jsonl").read_text().splitlines()]
    assert [(r["index"], r["task_id"], r["passed"], r["error"]) for r in lines] == [
        (0, 11, True, None), (1, 12, False, "AssertionError"), (2, 13, False, "timeout"), (3, 14, True, None)]
    assert "AssertionError" in lines[1]["stderr_tail"]
    assert not list((tmp_path / "m").glob("*.partial.jsonl"))
    assert fake.kwargs[0]["backend"] == "none"
    # the reference harness's limits by default, recorded
    assert fake.kwargs[0]["timeout"] == 3.0
    assert config["timeout_s"] == config["reference_timeout_s"] == 3.0 and config["limits_comparable"] is True
    assert config["limits"]["run"]["wall_timeout_s"] == 3.0 and config["limits"]["compile"] is None
    assert config["sandbox_backend"] == "none"


def test_reference_timeouts_per_benchmark():
    assert reference_timeout_s("mbpp") == reference_timeout_s("humaneval") == 3.0
    assert reference_timeout_s("humanevalsynthesize-python") == 10.0
    assert reference_timeout_s("humanevalfixtests-cpp") == 60.0 and reference_timeout_s("humanevalsynthesize-go") == 20.0
    assert reference_timeout_s("humanevalsynthesize-java") == reference_timeout_s("humanevalsynthesize-js") == 10.0
    assert reference_timeout_s("humanevalsynthesize-rust") == 30.0


def test_a_raised_timeout_is_recorded_and_not_comparable(tmp_path, data_dir):
    fake = FakeSandbox()
    src = _write(tmp_path / "g.json", [["PASS"], ["x"]])
    out = tmp_path / "metrics_humanevalsynthesize-cpp_tiny.json"
    evaluate.evaluate_file("humanevalsynthesize-cpp", src, out, data_dir, limit=2, workers=1, timeout_s=90,
                           assemble=fake.assemble, execute_many=fake.execute_many)
    config = json.loads(out.read_text())["config"]
    assert fake.kwargs[0]["timeout"] == 90.0
    assert (config["timeout_s"], config["reference_timeout_s"], config["limits_comparable"]) == (90.0, 60.0, False)
    assert config["limits"]["run"]["cpu_seconds"] >= 90 and config["limits"]["compile"]["wall_timeout_s"] > 0
    result = read_task_metrics("humanevalsynthesize-cpp", out)
    assert result.status == "ok" and result.not_comparable == "timeout 90.0 s, the reference uses 60.0 s"


def test_evaluate_file_pass_at_k_with_samples(tmp_path, data_dir):
    fake = FakeSandbox()
    gens = [["PASS", "x", "x", "x"], ["x", "x", "x", "x"], ["PASS", "PASS", "PASS", "x"]]
    src = _write(tmp_path / "g.json", gens)
    payload = evaluate.evaluate_file("humaneval", src, tmp_path / "out.json", data_dir, workers=1, limit=3,
                                     assemble=fake.assemble, execute_many=fake.execute_many)
    expected = (pass_at_k(4, 1, 1) + 0 + pass_at_k(4, 3, 1)) / 3
    assert payload["humaneval"]["pass@1"] == pytest.approx(expected)
    assert (tmp_path / "out.results.jsonl").is_file()


def test_generations_must_match_problem_count(tmp_path, data_dir):
    fake = FakeSandbox()
    src = _write(tmp_path / "g.json", [["PASS"]] * 3)
    with pytest.raises(GenerationsError, match="holds 3 problems.*has 164.*limit"):
        evaluate.evaluate_file("humaneval", src, tmp_path / "o.json", data_dir,
                               assemble=fake.assemble, execute_many=fake.execute_many)
    # a limited evaluation scores the first N of a longer file
    payload = evaluate.evaluate_file("humaneval", src, tmp_path / "o.json", data_dir, limit=2,
                                     assemble=fake.assemble, execute_many=fake.execute_many)
    assert payload["config"]["num_problems"] == 2
    bad = _write(tmp_path / "bad.json", {"not": "a list"})
    with pytest.raises(GenerationsError, match="list of lists"):
        evaluate.evaluate_file("humaneval", bad, tmp_path / "o.json", data_dir, limit=2,
                               assemble=fake.assemble, execute_many=fake.execute_many)


def test_default_workers(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "7")
    assert evaluate.default_workers() == 7
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert evaluate.default_workers() >= 1


# ----- the stage entry


def _recipe(limit=5, shards=None, workers=1):
    return Recipe.model_validate({
        "name": "t", "limit": limit,
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny"},
        "stages": {
            "generate": {"benchmarks": ["mbpp"], "shards": shards or {}},
            "evaluate": {"sandbox": "none", "workers": workers},
        },
    })


class _Stop:
    def __init__(self, after: int):
        self.after = after
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked > self.after


def _pieces(cuts):
    n = max(b for _a, b in cuts)
    return [[{"model": "tiny", "benchmark": "mbpp", "start": a, "stop": b, "num_problems": n}] for a, b in cuts]


def _ctx(tmp_path, data_dir, recipe, gen_cuts=((0, 5),), eval_cuts=((0, 5),), index=0, stop=lambda: False):
    """An evaluate element of a plan (also written as the run's plan.json) whose generate and
    evaluate arrays cut mbpp[0:n] at `gen_cuts` and `eval_cuts` (one piece per element)."""
    run_dir = RunDir(tmp_path / "run")
    plan = {"model_name": "tiny",
            "models": [{"name": "tiny", "path": "builtin:tiny-llama", "selector": None, "step": None,
                        "merge_index": None, "merged_subdir": None, "prompt": {}}],
            "jobs": [{"stage": "generate", "items": [{"key": f"g{i}", "pieces": p} for i, p in enumerate(_pieces(gen_cuts))]},
                     {"stage": "evaluate", "items": [{"key": f"e{i}", "pieces": p} for i, p in enumerate(_pieces(eval_cuts))]}]}
    _write(run_dir.plan_file, plan)
    return SimpleNamespace(
        run_dir=run_dir, recipe=recipe, plan=plan, index=index, item=plan["jobs"][1]["items"][index],
        dist=SimpleNamespace(is_main=True), data_dir=str(data_dir), should_stop=stop,
    )


def _write_pieces(ctx, programs, cuts):
    for a, b in cuts:
        _write(ctx.run_dir.piece_generations_file("tiny", "mbpp", a, b), programs[a:b])


def test_stage_joins_pieces_cut_differently_and_the_last_writes_the_metrics(tmp_path, data_dir, monkeypatch):
    fake = FakeSandbox()
    monkeypatch.setattr(evaluate, "_default_assemble", lambda: fake.assemble)
    monkeypatch.setattr(evaluate, "_default_execute_many", lambda: fake.execute_many)
    monkeypatch.setattr(evaluate, "resolve_backend", lambda settings: "fake-backend")
    gen_cuts, eval_cuts = ((0, 3), (3, 5)), ((0, 2), (2, 5))
    programs = [["PASS 0"], ["x 1"], ["PASS 2"], ["x 3"], ["x 4"]]
    first = _ctx(tmp_path, data_dir, _recipe(limit=5), gen_cuts, eval_cuts, index=0)
    _write_pieces(first, programs, gen_cuts)
    counts = evaluate.run_stage(first)
    assert counts["samples"] == 2 and counts["passed"] == 1 and counts["finished"] == []
    # the element's last progress line, as `status` shows it
    assert first.run_dir.read_progress("evaluate", 0).startswith("evaluate mbpp: 2/2 programs [")
    assert not first.run_dir.metrics_file("mbpp", "tiny").exists()  # the other piece is not scored yet
    counts = evaluate.run_stage(_ctx(tmp_path, data_dir, _recipe(limit=5), gen_cuts, eval_cuts, index=1))
    assert counts["samples"] == 3 and counts["passed"] == 1 and counts["finished"] == ["tiny/mbpp"]
    metrics = json.loads(first.run_dir.metrics_file("mbpp", "tiny").read_text())
    assert metrics["mbpp"]["pass@1"] == pytest.approx(0.4)
    assert metrics["config"]["model_name"] == "tiny" and metrics["config"]["prompt_format"] == "competition"
    assert metrics["config"]["num_problems"] == 5 and metrics["config"]["pieces"] == [[0, 2], [2, 5]]
    assert metrics["config"]["model_path"] == metrics["config"]["base_model_path"] == "builtin:tiny-llama"
    assert len(metrics["config"]["generations"]) == 2
    results = first.run_dir.results_file("mbpp", "tiny").read_text().splitlines()
    assert [json.loads(r)["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [json.loads(r)["passed"] for r in results] == [True, False, True, False, False]
    assert json.loads(first.run_dir.generations_file("mbpp", "tiny").read_text()) == programs
    assert fake.kwargs[0]["backend"] == "fake-backend"


def test_stage_rejects_a_short_piece(tmp_path, data_dir, monkeypatch):
    cuts = ((0, 3), (3, 5))
    ctx = _ctx(tmp_path, data_dir, _recipe(limit=5), gen_cuts=cuts)
    _write(ctx.run_dir.piece_generations_file("tiny", "mbpp", 0, 3), [["a"]] * 3)
    _write(ctx.run_dir.piece_generations_file("tiny", "mbpp", 3, 5), [["a"]] * 1)
    with pytest.raises(GenerationsError, match=r"the piece \[3, 5\) of mbpp needs 2"):
        evaluate.run_stage(ctx)
    ctx.run_dir.piece_generations_file("tiny", "mbpp", 3, 5).unlink()
    with pytest.raises(GenerationsError, match="not found"):
        evaluate.run_stage(ctx)


def test_stage_requeue_keeps_partial_results_and_resumes(tmp_path, data_dir, monkeypatch):
    fake = FakeSandbox()
    monkeypatch.setattr(evaluate, "_default_assemble", lambda: fake.assemble)
    monkeypatch.setattr(evaluate, "_default_execute_many", lambda: fake.execute_many)
    monkeypatch.setattr(evaluate, "resolve_backend", lambda settings: "none")
    monkeypatch.setattr(evaluate, "CHUNK_PER_WORKER", 2)  # 1 worker → chunks of 2 programs
    recipe = _recipe(limit=5)
    ctx = _ctx(tmp_path, data_dir, recipe, stop=_Stop(after=1))
    _write_pieces(ctx, [["PASS"], ["x"], ["PASS"], ["x"], ["PASS"]], ((0, 5),))
    with pytest.raises(RequeueRequested):
        evaluate.run_stage(ctx)
    assert fake.calls == [2]
    piece = ctx.run_dir.piece_results_file("tiny", "mbpp", 0, 5)
    partial = piece.with_name("results_mbpp_tiny.partial.jsonl")
    assert not ctx.run_dir.metrics_file("mbpp", "tiny").exists() and partial.is_file()
    counts = evaluate.run_stage(_ctx(tmp_path, data_dir, recipe))
    assert fake.calls == [2, 2, 1]  # the first two programs did not run again
    assert counts["passed"] == 3 and counts["finished"] == ["tiny/mbpp"]
    assert json.loads(ctx.run_dir.metrics_file("mbpp", "tiny").read_text())["mbpp"]["pass@1"] == pytest.approx(0.6)
    assert not partial.exists()
    evaluate.run_stage(_ctx(tmp_path, data_dir, recipe))  # a rerun of a scored piece runs nothing
    assert fake.calls == [2, 2, 1]


def test_stage_refuses_generations_made_from_other_data(tmp_path, data_dir, monkeypatch):
    fake = FakeSandbox()
    monkeypatch.setattr(evaluate, "_default_assemble", lambda: fake.assemble)
    monkeypatch.setattr(evaluate, "_default_execute_many", lambda: fake.execute_many)
    monkeypatch.setattr(evaluate, "resolve_backend", lambda settings: "none")
    ctx = _ctx(tmp_path, data_dir, _recipe(limit=2), gen_cuts=((0, 2),), eval_cuts=((0, 2),))
    _write_pieces(ctx, [["PASS"], ["x"]], ((0, 2),))
    ctx.run_dir.mark_done("generate", 0, {"data_sha256": {"mbpp": "f" * 64}})
    with pytest.raises(DataError, match="generations of mbpp were made from other benchmark data"):
        evaluate.run_stage(ctx)
    assert fake.calls == []
    pinned = load_benchmark("mbpp", data_dir).sha256
    ctx.run_dir.mark_done("generate", 0, {"data_sha256": {"mbpp": pinned}})
    evaluate.run_stage(ctx)
    config = json.loads(ctx.run_dir.metrics_file("mbpp", "tiny").read_text())["config"]
    assert config["generation_data_sha256"] == {"g0": pinned}
    assert config["data_sha256"] == config["data_pinned_sha256"] == pinned and config["data_matches_pin"]


def test_stage_on_other_ranks_does_nothing(tmp_path, data_dir):
    ctx = _ctx(tmp_path, data_dir, _recipe())
    ctx.dist.is_main = False
    assert evaluate.run_stage(ctx) == {}


# ----- end to end through the real sandbox


def _canonical(benchmark: str, row: dict) -> str:
    if benchmark == "mbpp":
        return row["code"].replace("\r\n", "\n")
    return row["prompt"] + row["canonical_solution"]


def _buggy(benchmark: str, row: dict) -> str:
    from jobs.code_benchmarks.prompts import prompt_base

    return prompt_base(benchmark, row) + row["buggy_solution"]


def _toolchain_ok(language: str) -> bool:
    """Whether the sandbox can run this language here (checked with a canonical program)."""
    import shutil

    need = {"python": "python3", "js": "node", "java": "javac", "cpp": "g++", "go": "go", "rust": "cargo"}[language]
    return shutil.which(need) is not None


REAL = [
    ("humanevalsynthesize-python", "python"),
    ("humanevalfixtests-python", "python"),
    ("humaneval", "python"),
    ("mbpp", "python"),
    ("humanevalsynthesize-js", "js"),
    ("humanevalfixtests-js", "js"),
    ("humanevalsynthesize-cpp", "cpp"),
    ("humanevalfixtests-java", "java"),
    ("humanevalsynthesize-go", "go"),
    ("humanevalfixtests-rust", "rust"),
]


@pytest.mark.sandbox
@pytest.mark.parametrize("benchmark,language", REAL)
def test_end_to_end_canonical_passes_buggy_fails(tmp_path, data_dir, benchmark, language):
    pytest.importorskip("jobs.code_benchmarks.assembly")
    import eval_sandbox

    if not _toolchain_ok(language):
        pytest.skip(f"no {language} toolchain on this machine")
    try:
        eval_sandbox.get_backend("auto")
    except eval_sandbox.SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    limit = 3
    rows = load_benchmark(benchmark, data_dir, limit=limit).problems
    canonical = _write(tmp_path / "canonical.json", [[_canonical(benchmark, r)] for r in rows])
    payload = evaluate.evaluate_file(benchmark, canonical, tmp_path / f"metrics_{benchmark}_ref.json", data_dir,
                                     sandbox="auto", workers=2, limit=limit)
    results = [json.loads(l) for l in (tmp_path / f"results_{benchmark}_ref.jsonl").read_text().splitlines()]
    assert payload[benchmark]["pass@1"] == 1.0, results
    config = payload["config"]
    assert config["sandbox"] == "auto" and config["sandbox_backend"] == "bubblewrap"
    assert config["timeout_s"] == reference_timeout_s(benchmark) and config["limits_comparable"]
    assert {"g++", "javac", "node", "go", "rustc"} <= set(config["toolchain"])
    if benchmark.startswith("humanevalfixtests"):
        buggy = _write(tmp_path / "buggy.json", [[_buggy(benchmark, r)] for r in rows])
        payload = evaluate.evaluate_file(benchmark, buggy, tmp_path / "buggy_metrics.json", data_dir,
                                         sandbox="auto", workers=2, limit=limit)
        assert payload[benchmark]["pass@1"] == 0.0
        results = [json.loads(l) for l in (tmp_path / "buggy_metrics.results.jsonl").read_text().splitlines()]
        assert all(r["error"] for r in results)


def test_sandbox_internal_errors_are_retried_never_scored(tmp_path, data_dir):
    fake = FakeSandbox()
    flaky = {"left": 1}

    def execute_many(jobs, workers, **kw):
        out = fake.execute_many(jobs, workers, **kw)
        for n, (_lang, prog) in enumerate(jobs):
            if "BROKEN" in prog or ("FLAKY" in prog and flaky["left"] > 0):
                flaky["left"] -= "FLAKY" in prog
                out[n] = FakeResult("killed", False, detail="internal error: OSError(24)")
        return out

    src = _write(tmp_path / "g.json", [["PASS FLAKY"], ["x"]])
    payload = evaluate.evaluate_file("mbpp", src, tmp_path / "m.json", data_dir, limit=2, workers=1,
                                     assemble=fake.assemble, execute_many=execute_many)
    assert payload["mbpp"]["pass@1"] == 0.5  # the flaky one ran again and passed
    src = _write(tmp_path / "g2.json", [["PASS"], ["x BROKEN"]])
    with pytest.raises(evaluate.SandboxError, match="1 programs failed inside the sandbox.*OSError"):
        evaluate.evaluate_file("mbpp", src, tmp_path / "m2.json", data_dir, limit=2, workers=1,
                               assemble=fake.assemble, execute_many=execute_many)
    assert not (tmp_path / "m2.json").exists()
    kept = (tmp_path / "m2.results.partial.jsonl").read_text().splitlines()
    assert [json.loads(l)["index"] for l in kept] == [0]
