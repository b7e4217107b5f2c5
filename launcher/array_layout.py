"""The items of the merge, generate and evaluate arrays of a plan, and what `plan` says about them.

Generate and evaluate items hold pieces (model, benchmark, problem range) laid out by
`launcher.balance` from the estimates of `launcher.cost_model`: `shards: auto` balances cost,
`shards: benchmark` keeps one element per (model, benchmark), `shards: {benchmark: n}` splits
named benchmarks into n equal parts. Evaluation follows the same choice with its own costs (a
compiled language costs more per program than a long prompt does). Merge has one item per model
that a merge makes (one per selected checkpoint in a sweep).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from launcher import balance, cost_model
from launcher.profile import Profile
from launcher.recipe import Recipe

GENERATE_STARTUP_S = 60.0  # assumed: element start + model load + warm-up (benchmarks/scaling.py)
EVALUATE_STARTUP_S = 5.0  # assumed: element start + data load


@dataclass
class ArrayLayout:
    """Items of the two arrays plus the summaries `plan` prints."""

    generate: list[dict[str, Any]] = field(default_factory=list)
    evaluate: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def merge_items(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    made = [m for m in models if m["merge_index"] is not None]
    if len(made) == 1 and not made[0]["merged_subdir"]:
        return [{"key": "merge", "model": made[0]["name"], "selector": made[0]["selector"], "step": made[0]["step"]}]
    return [{"key": m["name"], "model": m["name"], "selector": m["selector"], "step": m["step"]} for m in made]


def _layout(units: list[balance.Unit], shards: Any, target: Any, startup_s: float) -> list[balance.Element]:
    if isinstance(shards, dict):
        return balance.sharded(units, shards, startup_s)
    if shards == "benchmark":
        return balance.per_unit(units, startup_s)
    if target.elements is not None:
        count = target.elements
    elif target.minutes_per_element is not None:
        count = balance.elements_for_minutes(units, target.minutes_per_element, startup_s)
    else:
        count = len(units)
    return balance.balanced(units, count, startup_s)


def _describe(name: str, chosen: balance.LayoutSummary, per_bench: balance.LayoutSummary, parallel: Optional[int]) -> str:
    slots = f"{parallel} at a time" if parallel else "all at once"
    return (f"{name}: {chosen.elements} elements, largest {chosen.max_s / 60:.1f} min = {chosen.ratio:.2f} x the mean "
            f"{chosen.mean_s / 60:.1f} min, estimated makespan {chosen.makespan_s / 60:.1f} min ({slots}); "
            f"one element per benchmark: {per_bench.elements} elements, largest {per_bench.ratio:.2f} x the mean, "
            f"makespan {per_bench.makespan_s / 60:.1f} min")


def array_layout(recipe: Recipe, profile: Profile, models: list[dict[str, Any]], data_dir: Optional[str]) -> ArrayLayout:
    gen = recipe.stages.generate
    out = ArrayLayout()
    if gen is None:
        return out
    parallel = profile.array_throttle
    names = [m["name"] for m in models]
    settings = []
    for m in models:
        prompt = m["prompt"]
        settings.append((m["name"], cost_model.GenerationSettings(
            prompt_format=prompt.get("prompt_format", gen.prompt_format), max_length=gen.max_length,
            max_new_tokens=gen.max_new_tokens, n_samples=gen.n_samples,
            decode_s=gen.balance.decode_ms_per_token / 1000, prefill_s=gen.balance.prefill_ms_per_token / 1000,
            tokenizer_dir=m.get("tokenizer_path"))))
    units, counted = cost_model.generation_units(settings, gen.benchmarks, data_dir, recipe.limit)
    startup = gen.balance.startup_s if gen.balance.startup_s is not None else GENERATE_STARTUP_S
    chosen = _layout(units, gen.shards, gen.balance, startup)
    per_bench = balance.per_unit(units, startup)
    out.generate = [e.to_item() for e in chosen]
    gen_summary = balance.summarize(chosen, parallel)
    per_summary = balance.summarize(per_bench, parallel)
    out.summary["generate"] = {"layout": _mode(gen.shards), **gen_summary.to_dict(),
                               "per_benchmark": per_summary.to_dict(), "prompts_counted_as": sorted(counted)}
    out.notes.append(_describe("generate", gen_summary, per_summary, parallel)
                     + f" (prompt tokens: {', '.join(sorted(counted))})")
    ev = recipe.stages.evaluate
    if ev is None:
        return out
    workers = ev.workers or ev.resources.cpus_per_task or 1
    eval_units = cost_model.evaluation_units(names, gen.benchmarks, gen.n_samples, workers, recipe.limit)
    eval_startup = ev.balance.startup_s if ev.balance.startup_s is not None else EVALUATE_STARTUP_S
    eval_chosen = _layout(eval_units, gen.shards if gen.shards != "auto" else "auto", ev.balance, eval_startup)
    if isinstance(gen.shards, dict):  # manual shards: each benchmark is evaluated whole, as before
        eval_chosen = balance.per_unit(eval_units, eval_startup)
    eval_per_bench = balance.per_unit(eval_units, eval_startup)
    out.evaluate = [e.to_item() for e in eval_chosen]
    eval_summary = balance.summarize(eval_chosen, parallel)
    eval_per_summary = balance.summarize(eval_per_bench, parallel)
    out.summary["evaluate"] = {"layout": _mode(gen.shards), **eval_summary.to_dict(),
                               "per_benchmark": eval_per_summary.to_dict(), "workers": workers}
    out.notes.append(_describe("evaluate", eval_summary, eval_per_summary, parallel) + f" ({workers} worker(s) per element)")
    return out


def _mode(shards: Any) -> str:
    return "manual" if isinstance(shards, dict) else str(shards)
