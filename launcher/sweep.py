"""The models a run generates with and scores: one, the selected checkpoints of a training run, or
the `models:` of an eval-only sweep. The planner writes them into plan.json (`plan["models"]`),
which every job reads, so names and paths are decided once, before anything runs.

Names (the `<model>` of every file name): the recipe's model_name; `<model_name>-step<N>`,
`<model_name>-best`, `<model_name>-last` for checkpoints; a sweep entry's own `name`.
"""
from __future__ import annotations

from typing import Any, Optional

from launcher.recipe import Recipe, checkpoint_steps

PROMPT_FIELDS = ("prompt_format", "prefix", "suffix", "system", "eos")


def _prompt(recipe: Recipe, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    gen = recipe.stages.generate
    base = {k: getattr(gen, k) for k in PROMPT_FIELDS} if gen else {}
    return {**base, **(overrides or {})}


def plan_models(recipe: Recipe) -> list[dict[str, Any]]:
    """The run's models in table order (steps ascending, best, last; or the recipe's order).

    `path` is null where the merge stage writes the model: RunDir.merged_model_dir(merged_subdir)
    (merged/<name>/ in a sweep, merged/ itself otherwise); `merge_index` is the merge element
    that makes it."""
    stages = recipe.stages
    if recipe.models:
        return [{"name": m.name, "path": m.path, "selector": None, "step": None, "merge_index": None, "merged_subdir": None,
                 "tokenizer_path": m.spec(recipe.model).tokenizer_path,
                 "prompt": _prompt(recipe, m.prompt_overrides)} for m in recipe.models]
    assert recipe.model is not None
    base = recipe.model.model_name
    if stages.train and stages.merge and stages.merge.is_sweep:
        out = []
        for index, selector in enumerate(checkpoint_steps(recipe)):
            label = f"step{selector}" if isinstance(selector, int) else selector
            out.append({"name": f"{base}-{label}", "path": None, "selector": label, "merged_subdir": f"{base}-{label}",
                        "step": selector if isinstance(selector, int) else None, "merge_index": index,
                        "tokenizer_path": recipe.model.tokenizer_path or recipe.model.path, "prompt": _prompt(recipe)})
        return out
    gen = stages.generate
    if stages.merge:
        path = None
    elif gen and gen.model_path:
        path = gen.model_path
    else:
        path = recipe.model.path
    return [{"name": base, "path": path, "selector": (stages.merge.checkpoint or "best") if stages.merge else None, "step": None,
             "merged_subdir": "" if stages.merge else None,
             "merge_index": 0 if stages.merge else None,
             "tokenizer_path": recipe.model.tokenizer_path or path or recipe.model.path, "prompt": _prompt(recipe)}]
