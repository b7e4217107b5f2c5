"""pass@k: the unbiased estimator of Chen et al. (2021), and the metrics of one benchmark from
its per-sample records. Emitted for k in (1, 10, 100) where every problem has at least k
samples, as the reference harness does; greedy runs therefore report pass@1 only.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from jobs.results.generations import GenerationsError

KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c passed: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1 or n < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n, n >= 1, k >= 1 (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_summary(counts: Sequence[tuple[int, int]], ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean pass@k over problems for every k that all problems have enough samples for."""
    if not counts:
        return {}
    min_n = min(n for n, _ in counts)
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
        for k in ks
        if k <= min_n
    }


def pass_at_k_stderr(counts: Sequence[tuple[int, int]], ks: Sequence[int] = KS) -> dict[str, float]:
    """Standard error of each mean pass@k over problems: the sample standard deviation of the
    per-problem estimates / sqrt(problems). It measures how much the score would move on another
    draw of problems of the same kind (and, with n_samples > 1, of samples); needs 2+ problems."""
    if len(counts) < 2:
        return {}
    min_n = min(n for n, _ in counts)
    out = {}
    for k in ks:
        if k > min_n:
            continue
        values = [pass_at_k(n, c, k) for n, c in counts]
        out[f"pass@{k}_stderr"] = statistics.stdev(values) / math.sqrt(len(values))
    return out


def summarize(records: Sequence[dict[str, Any]], num_problems: int) -> tuple[dict[str, float], dict[str, Any]]:
    """pass@k metrics and counts from per-sample records."""
    per_problem: dict[int, list[bool]] = {i: [] for i in range(num_problems)}
    statuses: dict[str, int] = {}
    for rec in records:
        per_problem[rec["index"]].append(bool(rec["passed"]))
        statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
    empty = [i for i, outcomes in per_problem.items() if not outcomes]
    if empty:
        raise GenerationsError(f"problems without any generated sample: indices {empty[:10]}")
    counts = [(len(o), sum(o)) for o in per_problem.values()]
    metrics = {**pass_at_k_summary(counts), **pass_at_k_stderr(counts)}
    extra = {
        "num_problems": num_problems,
        "num_samples": len(records),
        "n_samples_min": min(n for n, _ in counts),
        "n_samples_max": max(n for n, _ in counts),
        "problems_solved": sum(1 for _n, c in counts if c > 0),
        "samples_passed": sum(c for _n, c in counts),
        "status_counts": dict(sorted(statuses.items())),
    }
    return metrics, extra
