"""The reference harnesses' run-time limits per benchmark, used by default so that a slow but
correct solution fails here exactly when it fails there.

- HumanEval and MBPP: 3 s per program (bigcode's `compute_code_eval` default, which both the
  competition fork and upstream use for these tasks);
- HumanEvalPack: `LANGUAGE_TO_TIMEOUT` of bigcode's humanevalpack task (python 10 s, js 10 s,
  java 10 s, go 20 s, cpp 60 s); Rust 30 s, the `cargo test` timeout of the competition fork's
  octopack executor (its 300 s covers the first `cargo check` of the dependencies).

The reference counts interpreter/JVM start-up inside these seconds and, for Go, the compile
(`go test`); here compiling is a separate step with its own limits (eval_sandbox.limits), so the
run step gets the reference's seconds for running only (docs/EVALUATION.md, "Limits").
"""
from __future__ import annotations

from jobs.code_benchmarks.data import split_benchmark

HUMANEVALPACK_RUN_TIMEOUT_S = {"python": 10.0, "js": 10.0, "java": 10.0, "go": 20.0, "cpp": 60.0, "rust": 30.0}
PYTHON_TASK_RUN_TIMEOUT_S = 3.0


def reference_timeout_s(benchmark: str) -> float:
    """The reference harness's per-program run timeout for `benchmark`, in seconds."""
    family, lang = split_benchmark(benchmark)
    if family in ("mbpp", "humaneval"):
        return PYTHON_TASK_RUN_TIMEOUT_S
    return HUMANEVALPACK_RUN_TIMEOUT_S[lang or "python"]
