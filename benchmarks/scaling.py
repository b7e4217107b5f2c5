"""Scaling on paper: wall time of generating the 13-task suite (2,468 problems) on N GPUs.

Why: the generate stage runs one Slurm array element per benchmark, or per shard of a benchmark
(`generate.shards`, docs/CONTRACTS.md). With 13 benchmarks of very different sizes (MBPP has 500
problems, each HumanEvalPack task 164, prompts from ~60 to ~1,100 tokens) one element per
benchmark leaves GPUs idle while MBPP finishes. This script computes, from per-problem times, the
makespan (wall time until the last element ends) on N = 1, 2, 4, 8, 13, 16, 32 GPUs of

  (a) per-benchmark: 13 elements, one per benchmark;
  (b) count-balanced shards: benchmarks split into contiguous shards of equal problem count
      (`jobs.code_benchmarks.data.shard_range`, what the generate stage does today), the number of
      shards per benchmark chosen to minimise the makespan estimated with every problem costing
      the suite's mean time;
  (c) balanced: what `generate.shards: auto` does, with the planner's own balancer
      (launcher/balance.py) asked for one element per GPU: the benchmarks laid end to end and cut
      into elements of equal *estimated* cost, the estimate knowing only the prompt length
      (prefill x prompt tokens + decode x the suite's mean new tokens);

and a lower bound, max(total work / N, largest single problem) + one element's start-up.

It also plans the shipped eval-only recipe (recipes/qwen_competition_eval.yaml, the 13 tasks) with
the planner itself (launcher/array_layout.py: its cost model reads the data with the standard
library) at --elements elements (default 16) and prints the largest element's estimated cost over
the mean, for the generate and evaluate arrays, beside one element per benchmark.
Elements are started longest-first by their estimate (LPT), each on the next GPU that is free;
their real durations are the sums of their problems' times plus a start-up cost per element
(--element-overhead-s: Slurm start, model load, warm-up), so more shards are not free.

Per-problem times, in this order of preference:
- measured: generation sidecars (`generations_<benchmark>_<model>.raw.json`, from a run directory's
  generate/ folder or `mftlaunch generate`), passed with --generations FILE_OR_DIR ...; each
  sidecar's measured seconds are shared among its problems in proportion to the time model below
  (a batched engine gives no per-problem clock); problems without a sidecar get the time model
  scaled by the sidecars' median calibration;
- else the time model t = prefill x prompt tokens + decode x new tokens, with the constants from
  the command line (--prefill-ms-per-token, --decode-ms-per-token, or --generation-json with the
  raw JSON of benchmarks/generation.py: decode = 1 / its batched tokens/s). Defaults: decode
  1.905 ms/token (525 tok/s, DESIGN.md's measured HF `generate` with batch 64 on a 7B shape on one
  H100; the engine's target of 1,700 tok/s would be 0.588), prefill 0.06 ms/token (assumed, ~17k
  tok/s), new tokens = the canonical solution's length (`jobs.code_benchmarks.assembly`).

Prompt lengths are the real prompts of the suite (`jobs.code_benchmarks.prompts.build_prompt`,
--format, default competition) from the benchmark data (--data-dir, default $MFTLAUNCH_DATA_DIR
or ../shared/data), counted as UTF-8 bytes / 4 (default) or with a tokenizer.json
(--tokenizer DIR or builtin:tiny-llama). Pure Python; prints a table and writes raw JSON
(--out, default runs/benchmarks/scaling-<time>.json).

    python benchmarks/scaling.py
    python benchmarks/scaling.py --generations runs/<run>/generate --element-overhead-s 90
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GPU_COUNTS = (1, 2, 4, 8, 13, 16, 32)
DEFAULT_DECODE_MS = 1000 / 525  # DESIGN.md's measured anchor: HF generate, batch 64, 7B shape, one H100
DEFAULT_PREFILL_MS = 0.06  # assumed: ~17k prompt tok/s batched on a 7B shape
DEFAULT_OVERHEAD_S = 60.0  # assumed: array element start + 7B load + warm-up

Range = tuple[int, int]  # [start, stop) problem indices of one benchmark


# ------------------------------------------------------------------------------------------
# scheduling (pure functions; tests/test_benchmarks_scripts.py checks them on hand-made examples)


def list_schedule(durations: Sequence[float], order: Sequence[int], gpus: int) -> tuple[float, list[float], list[int]]:
    """Start the elements in `order`, each on the GPU that frees first (lowest index on ties).

    Returns (makespan, per-GPU busy time, the GPU of each element)."""
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    heap = [(0.0, g) for g in range(gpus)]
    busy = [0.0] * gpus
    where = [-1] * len(durations)
    for k in order:
        free_at, g = heapq.heappop(heap)
        busy[g] = free_at + durations[k]
        where[k] = g
        heapq.heappush(heap, (busy[g], g))
    return (max(busy) if durations else 0.0), busy, where


def lpt_order(estimates: Sequence[float]) -> list[int]:
    """Longest first by estimate (stable: equal estimates keep their order)."""
    return sorted(range(len(estimates)), key=lambda k: -estimates[k])


def count_split(num_problems: int, shards: int) -> list[Range]:
    """The generate stage's shards: contiguous, equal problem counts (jobs.code_benchmarks.data)."""
    from jobs.code_benchmarks.data import shard_range

    return [(r.start, r.stop) for r in (shard_range(num_problems, s, shards) for s in range(shards))]


@dataclass
class Element:
    benchmark: str
    start: int
    stop: int
    estimate: float  # seconds, what the planner believes (with the start-up)
    actual: float  # seconds, per-problem times summed (with the start-up)


def elements_of(
    times: dict[str, list[float]],
    estimates: dict[str, list[float]],
    shards: dict[str, int],
    splitter: Callable[[list[float], int], list[Range]],
    overhead: float,
) -> list[Element]:
    out = []
    for bench, est in estimates.items():
        for start, stop in splitter(est, shards[bench]):
            out.append(Element(bench, start, stop, sum(est[start:stop]) + overhead, sum(times[bench][start:stop]) + overhead))
    return out


def choose_shards(
    estimates: dict[str, list[float]],
    gpus: int,
    overhead: float,
    splitter: Callable[[list[float], int], list[Range]],
    max_elements: Optional[int] = None,
) -> dict[str, int]:
    """Shard counts per benchmark that minimise the estimated makespan: starting from one element
    per benchmark, split the benchmark holding the largest element one shard further, up to
    `max_elements` (default max(benchmarks, 3 x gpus)) elements; the best estimate wins (the
    first one on ties, so fewer elements)."""
    shards = {b: 1 for b in estimates}
    limit = max_elements or max(len(estimates), 3 * gpus)

    def estimated(sh: dict[str, int]) -> tuple[float, list[Element]]:
        els = elements_of(estimates, estimates, sh, splitter, overhead)
        est = [e.estimate for e in els]
        return list_schedule(est, lpt_order(est), gpus)[0], els

    best, els = estimated(shards)
    chosen = dict(shards)
    while sum(shards.values()) < limit:
        splittable = [e for e in els if shards[e.benchmark] < len(estimates[e.benchmark])]
        if not splittable:
            break
        largest = max(splittable, key=lambda e: e.estimate)
        shards[largest.benchmark] += 1
        value, els = estimated(shards)
        if value < best - 1e-9:
            best, chosen = value, dict(shards)
    return chosen


@dataclass
class Outcome:
    strategy: str
    makespan: float
    elements: int
    shards: dict[str, int]
    gpu_busy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        busy = sum(self.gpu_busy)
        return {"makespan_s": self.makespan, "elements": self.elements, "shards": self.shards,
                "gpu_busy_s": self.gpu_busy, "utilisation": busy / (len(self.gpu_busy) * self.makespan) if self.makespan else 0.0}


def run_strategy(name: str, times, estimates, shards, splitter, gpus: int, overhead: float) -> Outcome:
    els = elements_of(times, estimates, shards, splitter, overhead)
    makespan, busy, _ = list_schedule([e.actual for e in els], lpt_order([e.estimate for e in els]), gpus)
    return Outcome(name, makespan, len(els), dict(shards), busy)


def run_balanced(times: dict[str, list[float]], estimates: dict[str, list[float]], gpus: int,
                 overhead: float) -> Outcome:
    """The planner's balancer (launcher/balance.py) asked for one element per GPU: the suite cut into
    elements of equal estimated cost (an element may hold the end of one benchmark and the start
    of the next); each element pays the start-up once."""
    from launcher.balance import Unit, balanced

    elements = balanced([Unit("model", bench, list(est)) for bench, est in estimates.items()], gpus)
    est = [sum(sum(estimates[p.benchmark][p.start:p.stop]) for p in e.pieces) + overhead for e in elements]
    act = [sum(sum(times[p.benchmark][p.start:p.stop]) for p in e.pieces) + overhead for e in elements]
    makespan, busy, _ = list_schedule(act, lpt_order(est), gpus)
    pieces: dict[str, int] = {}
    for element in elements:
        for piece in element.pieces:
            pieces[piece.benchmark] = pieces.get(piece.benchmark, 0) + 1
    return Outcome("balanced", makespan, len(elements), pieces, busy)


def plan(
    times: dict[str, list[float]],
    prompt_cost: dict[str, list[float]],
    gpus: int,
    overhead: float,
) -> dict[str, Any]:
    """Makespans of the three strategies and the lower bound on `gpus` GPUs.

    times: real seconds per problem (dataset order) per benchmark; prompt_cost: the estimate per
    problem from what is known before generating (the prompt), in seconds."""
    everything = [t for ts in times.values() for t in ts]
    mean = sum(everything) / len(everything)
    by_count = {b: [mean] * len(ts) for b, ts in times.items()}

    def counted(est: list[float], k: int) -> list[Range]:
        return count_split(len(est), k)

    ones = {b: 1 for b in times}
    per_benchmark = run_strategy("per_benchmark", times, by_count, ones, counted, gpus, overhead)
    count = run_strategy("count_shards", times, by_count, choose_shards(by_count, gpus, overhead, counted),
                         counted, gpus, overhead)
    cost = run_balanced(times, prompt_cost, gpus, overhead)
    bound = max(sum(everything) / gpus, max(everything)) + overhead
    return {"gpus": gpus, "per_benchmark": per_benchmark.as_dict(), "count_shards": count.as_dict(),
            "balanced": cost.as_dict(), "lower_bound_s": bound}


def planner_balance(data_dir: str, elements: int) -> dict[str, Any]:
    """The planner itself on the shipped eval-only recipe (13 tasks, full data): the estimated
    cost of the largest element over the mean, balanced vs one element per benchmark."""
    from launcher.plan import build_plan
    from launcher.profile import load_profile
    from launcher.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "qwen_competition_eval.yaml", [
        f"data_dir={data_dir}", "generate.benchmarks=[competition]", f"generate.balance.elements={elements}",
        f"evaluate.balance.elements={elements}"])
    return build_plan(recipe, load_profile("slurm-generic")).balance


# ------------------------------------------------------------------------------------------
# inputs


def token_counter(spec: Optional[str]) -> tuple[Callable[[str], int], str]:
    """(count, description): bytes/4 by default, else a tokenizer.json of a model directory."""
    if not spec:
        return (lambda text: max(1, round(len(text.encode("utf-8")) / 4))), "UTF-8 bytes / 4"
    from tokenizers import Tokenizer

    folder = Path(spec)
    if spec.startswith("builtin:"):
        from jobs.tiny_model import resolve_model_path

        folder = resolve_model_path(spec)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), f"tokenizer {spec} ({folder / 'tokenizer.json'})"


def suite_problems(data_dir: Path, fmt: str, count: Callable[[str], int]) -> dict[str, dict[str, list[int]]]:
    """Per benchmark of the 13-task suite: prompt tokens and canonical-answer tokens per problem."""
    from jobs.code_benchmarks import assembly
    from jobs.code_benchmarks.data import load_benchmark
    from jobs.code_benchmarks.prompts import build_prompt
    from launcher.contract import COMPETITION_SUITE

    out = {}
    for bench in COMPETITION_SUITE:
        problems = load_benchmark(bench, data_dir).problems
        prompts, answers = [], []
        for problem in problems:
            prompts.append(count(build_prompt(bench, problem, fmt)))
            program = assembly.canonical_program(bench, problem)  # mbpp: the code; else prompt base + solution
            base = "" if bench == "mbpp" else assembly.prompt_base(bench, problem)
            answers.append(count(program[len(base):] if program.startswith(base) else program))
        out[bench] = {"prompt_tokens": prompts, "answer_tokens": answers}
    return out


def read_sidecars(paths: Sequence[str]) -> list[dict[str, Any]]:
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        files.extend(sorted(p.rglob("*.raw.json")) if p.is_dir() else [p])
    out = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        if "problems" in data and "benchmark" in data:
            data["_path"] = str(f)
            out.append(data)
    return out


def problem_times(suite, sidecars, prefill_s: float, decode_s: float, new_tokens: Optional[int]):
    """(times per benchmark, prompt tokens per benchmark, new tokens per benchmark, provenance)."""
    times, prompts, news = {}, {}, {}
    measured: dict[str, dict[int, float]] = {}
    calibrations = []
    for car in sidecars:
        rows = car["problems"]
        model = [prefill_s * r["prompt_tokens"] + decode_s * sum(r["new_tokens"]) for r in rows]
        seconds = (car.get("counts") or {}).get("seconds_this_attempt")
        if not seconds or not sum(model):
            continue
        scale = seconds / sum(model)
        calibrations.append(scale)
        bench = measured.setdefault(car["benchmark"], {})
        for r, m in zip(rows, model):
            bench[int(r["index"])] = (m * scale, r["prompt_tokens"], sum(r["new_tokens"]))
    default_scale = statistics.median(calibrations) if calibrations else 1.0
    counts = {"measured": 0, "modelled": 0}
    for bench, data in suite.items():
        t, p, n = [], [], []
        for i, (prompt, answer) in enumerate(zip(data["prompt_tokens"], data["answer_tokens"])):
            if i in measured.get(bench, {}):
                seconds, prompt, new = measured[bench][i]
                counts["measured"] += 1
            else:
                new = new_tokens if new_tokens is not None else answer
                seconds = default_scale * (prefill_s * prompt + decode_s * new)
                counts["modelled"] += 1
            t.append(seconds)
            p.append(prompt)
            n.append(new)
        times[bench], prompts[bench], news[bench] = t, p, n
    provenance = {"problems_measured": counts["measured"], "problems_modelled": counts["modelled"],
                  "sidecars": [c["_path"] for c in sidecars], "calibration_scales": calibrations,
                  "modelled_scale": default_scale}
    return times, prompts, news, provenance


# ------------------------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MFTLAUNCH_DATA_DIR") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--format", default="competition", help="prompt format (jobs.code_benchmarks.prompts)")
    p.add_argument("--tokenizer", default=None, help="model dir with tokenizer.json, or builtin:tiny-llama (default: bytes/4)")
    p.add_argument("--generations", nargs="*", default=[], help="generation sidecars (*.raw.json) or directories holding them")
    p.add_argument("--generation-json", default=None, help="raw JSON of benchmarks/generation.py: decode = 1 / its tok/s")
    p.add_argument("--prefill-ms-per-token", type=float, default=DEFAULT_PREFILL_MS)
    p.add_argument("--decode-ms-per-token", type=float, default=None, help=f"default {DEFAULT_DECODE_MS:.3f}")
    p.add_argument("--new-tokens", type=int, default=None, help="new tokens per problem (default: the canonical answer's)")
    p.add_argument("--element-overhead-s", type=float, default=DEFAULT_OVERHEAD_S)
    p.add_argument("--gpus", default=",".join(map(str, GPU_COUNTS)))
    p.add_argument("--elements", type=int, default=16, help="array elements of the planner check")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    decode_ms, decode_src = args.decode_ms_per_token, "--decode-ms-per-token"
    if decode_ms is None and args.generation_json:
        gen = json.loads(Path(args.generation_json).read_text(encoding="utf-8"))
        decode_ms, decode_src = 1000 / gen["mftlaunch"]["tokens_per_s"], f"1 / tokens_per_s of {args.generation_json}"
    if decode_ms is None:
        decode_ms, decode_src = DEFAULT_DECODE_MS, "default: 525 tok/s, HF generate batch 64, 7B, H100 (DESIGN.md)"
    count, counted_as = token_counter(args.tokenizer)
    suite = suite_problems(Path(args.data_dir), args.format, count)
    sidecars = read_sidecars(args.generations)
    prefill_s, decode_s = args.prefill_ms_per_token / 1000, decode_ms / 1000
    times, prompts, news, provenance = problem_times(suite, sidecars, prefill_s, decode_s, args.new_tokens)
    all_new = [n for ns in news.values() for n in ns]
    mean_new = sum(all_new) / len(all_new)
    scale = provenance["modelled_scale"]
    prompt_cost = {b: [scale * (prefill_s * p + decode_s * mean_new) for p in ps] for b, ps in prompts.items()}
    gpus = [int(x) for x in args.gpus.split(",")]
    results = [plan(times, prompt_cost, n, args.element_overhead_s) for n in gpus]
    no_startup = [plan(times, prompt_cost, n, 0.0) for n in gpus] if args.element_overhead_s else None

    benchmarks = {b: {"problems": len(times[b]), "prompt_tokens": sum(prompts[b]), "new_tokens": sum(news[b]),
                      "seconds": sum(times[b])} for b in times}
    report = {
        "inputs": {"data_dir": args.data_dir, "format": args.format, "prompt_tokens_counted_as": counted_as,
                   "prefill_ms_per_token": args.prefill_ms_per_token, "decode_ms_per_token": decode_ms,
                   "decode_source": decode_src,
                   "new_tokens": args.new_tokens if args.new_tokens is not None else "canonical answer length",
                   "element_overhead_s": args.element_overhead_s, **provenance},
        "suite": {"problems": sum(len(t) for t in times.values()), "seconds": sum(sum(t) for t in times.values()),
                  "mean_new_tokens": mean_new},
        "benchmarks": benchmarks,
        "results": results,
        "results_without_startup": no_startup,
        "planner_balance": planner_balance(args.data_dir, args.elements),
    }
    print_table(report)
    out = Path(args.out) if args.out else REPO / "runs" / "benchmarks" / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"raw figures: {out}")
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.2f}"


def print_table(report: dict[str, Any]) -> None:
    inp, suite = report["inputs"], report["suite"]
    src = (f"{inp['problems_measured']} problems timed from {len(inp['sidecars'])} sidecar(s), "
           f"{inp['problems_modelled']} modelled" if inp["sidecars"] else "all problems modelled")
    print(f"suite: {suite['problems']} problems, 13 benchmarks; prompt tokens: {inp['prompt_tokens_counted_as']}; "
          f"new tokens: {inp['new_tokens']} (mean {suite['mean_new_tokens']:.0f})")
    print(f"per-problem time = {inp['prefill_ms_per_token']:g} ms x prompt tokens + {inp['decode_ms_per_token']:.3f} ms x new "
          f"tokens ({inp['decode_source']}); {src}; {suite['seconds'] / 60:.1f} GPU-minutes of generation in all; "
          f"start-up per element {inp['element_overhead_s']:g} s")
    longest = max(report["benchmarks"].items(), key=lambda kv: kv[1]["seconds"])
    print(f"largest benchmark: {longest[0]} ({longest[1]['problems']} problems, {_minutes(longest[1]['seconds'])} min)")
    print_results(f"makespan in minutes (elements), start-up {inp['element_overhead_s']:g} s per element", report["results"])
    if report["results_without_startup"]:
        print_results("the same without start-up (generation alone)", report["results_without_startup"])
    for stage, figures in report["planner_balance"].items():
        per = figures["per_benchmark"]
        print(f"planner, {stage} array of the 13 tasks ({figures['layout']}): {figures['elements']} elements, largest "
              f"= {figures['max_over_mean']:.3f} x the mean estimated cost; one element per benchmark "
              f"({per['elements']}): {per['max_over_mean']:.3f} x")


def print_results(title: str, results: list[dict[str, Any]]) -> None:
    print(title)
    print(f"{'GPUs':>5}{'per-benchmark':>16}{'count shards':>18}{'balanced':>18}{'lower bound':>13}{'best vs per-bm':>16}")
    for r in results:
        a, b, c = r["per_benchmark"], r["count_shards"], r["balanced"]
        best = min(b["makespan_s"], c["makespan_s"])
        print(f"{r['gpus']:>5}{_minutes(a['makespan_s']):>11} ({a['elements']:>2}){_minutes(b['makespan_s']):>12} ({b['elements']:>3})"
              f"{_minutes(c['makespan_s']):>12} ({c['elements']:>3}){_minutes(r['lower_bound_s']):>13}"
              f"{a['makespan_s'] / best:>15.2f}x")


if __name__ == "__main__":
    sys.exit(main())
