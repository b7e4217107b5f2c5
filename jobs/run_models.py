"""The models of a run as the jobs see them: plan.json's `models` (written by launcher/sweep.py)
turned into a ModelSpec, a model directory and the generate-stage settings of each one.

The plan decides names, checkpoints and paths before anything runs; the jobs only look them up,
so a merge element, the generate pieces and the collector always agree on which model is which.
"""
from __future__ import annotations

from typing import Any, Optional

from launcher.recipe import GenerateStage, ModelSpec, Recipe
from launcher.rundir import RunDir


class UnknownModel(KeyError):
    """A plan item names a model that plan.json does not list."""


def plan_models(plan: dict[str, Any], recipe: Optional[Recipe] = None) -> list[dict[str, Any]]:
    """plan.json's models; a plan without them (written before sweeps existed, or a bare one in a
    test) has the recipe's one model, merged into merged/ when the recipe merges."""
    if plan.get("models"):
        return plan["models"]
    merge = recipe.stages.merge if recipe is not None else None
    name = plan.get("model_name") or (recipe.base_model.model_name if recipe is not None else None)
    return [{"name": name, "path": None, "selector": (merge.checkpoint or "best") if merge else None, "step": None,
             "merge_index": 0 if merge else None, "merged_subdir": "" if merge else None, "prompt": {}}]


def plan_model(plan: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in plan_models(plan):
        if entry["name"] == name:
            return entry
    raise UnknownModel(f"plan.json lists no model named {name!r} (models: {[m['name'] for m in plan_models(plan)]})")


def model_spec(recipe: Recipe, entry: dict[str, Any]) -> ModelSpec:
    """dtype, model type, tokenizer of this model: its `models:` entry over `model:`, or `model:`
    under this entry's name (a checkpoint of a training run is the base model's architecture)."""
    for sweep_entry in recipe.models or []:
        if sweep_entry.name == entry["name"]:
            return sweep_entry.spec(recipe.model)
    assert recipe.model is not None
    return recipe.model.model_copy(update={"model_name": entry["name"]})


def model_location(run: RunDir, recipe: Recipe, entry: dict[str, Any]) -> str:
    """The model directory (or builtin: name) to load: a merged checkpoint or the given path."""
    if entry.get("merged_subdir") is not None:
        return str(run.merged_model_dir(entry["merged_subdir"]))
    if entry.get("path"):
        return entry["path"]
    if recipe.stages.merge is not None:
        return str(run.merged_dir)
    gen = recipe.stages.generate
    return (gen.model_path if gen and gen.model_path else None) or recipe.base_model.path


def generate_settings(recipe: Recipe, entry: dict[str, Any]) -> GenerateStage:
    """The generate stage with this model's own prompt format / strings over the recipe's."""
    stage = recipe.stages.generate
    assert stage is not None
    overrides = {k: v for k, v in (entry.get("prompt") or {}).items() if getattr(stage, k) != v}
    return stage.model_copy(update=overrides) if overrides else stage


def selected_steps(plan: dict[str, Any]) -> set[int]:
    """Checkpoint steps a sweep evaluates: training keeps them from pruning."""
    return {m["step"] for m in plan.get("models") or [] if m.get("step") is not None}
