"""Results of several models side by side (a sweep of checkpoints or of models, or one model):
the best model by the 13-task mean, the best model of each task, and collect/results.json
(schema 2, /work/coord/results-schema.md and docs/CONTRACTS.md).

The best model is chosen among the models with all 13 competition tasks sound; a model missing
any is left out and the reason said. Equal means are a tie: the first model in the run's order
(earliest step, or the recipe's order) is chosen and the others are named as tied with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from launcher import contract
from jobs.results.collection import Collection, ResultsError

#: means closer than this are equal (metrics are ratios of small integers; float noise only)
TIE_TOLERANCE = 1e-9
SCHEMA = 2


@dataclass
class BestModel:
    model: Optional[str]
    mean: Optional[float]
    tied_with: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mean_competition": self.mean, "tied_with": self.tied_with,
                "excluded": self.excluded, "reason": self.reason}


def choose_best(models: list[Collection]) -> BestModel:
    """Highest 13-task mean among the models that have one; ties go to the first in order."""
    excluded = {c.model: c.problem_summary() for c in models if c.mean is None}
    scored = [c for c in models if c.mean is not None]
    if not scored:
        return BestModel(None, None, excluded=excluded,
                         reason=f"no model has all {len(contract.COMPETITION_SUITE)} competition tasks")
    top = max(c.mean for c in scored)  # type: ignore[type-var]
    tied = [c.model for c in scored if abs(c.mean - top) <= TIE_TOLERANCE]  # type: ignore[operator]
    reason = f"highest {len(contract.COMPETITION_SUITE)}-task mean of {len(scored)} complete model(s)"
    if len(tied) > 1:
        reason += f"; tied with {', '.join(tied[1:])}: the first in the run's order is chosen"
    if excluded:
        reason += f"; {len(excluded)} incomplete model(s) left out"
    return BestModel(tied[0], top, tied_with=tied[1:], excluded=excluded, reason=reason)


def best_per_task(models: list[Collection]) -> dict[str, list[str]]:
    """Every model at the top pass@1 of each task (several on a tie); tasks nobody scored: []."""
    tasks = [t for t in contract.ALL_BENCHMARKS if any(t in c.tasks for c in models)]
    out = {}
    for task in tasks:
        values = {c.model: c.tasks[task].pass_at_1 for c in models if task in c.tasks}
        scored = {m: v for m, v in values.items() if v is not None}
        top = max(scored.values(), default=None)
        out[task] = [m for m, v in scored.items() if top is not None and abs(v - top) <= TIE_TOLERANCE]
    return out


@dataclass
class Results:
    """Every model of a run (or of a folder of metrics files) and the choice among them."""

    models: list[Collection]
    source: str = ""
    recipe: Optional[str] = None
    #: `--model`: the model the submission zip is built for instead of the best one
    requested: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ResultsError(f"no models to collect in {self.source}")
        names = [c.model for c in self.models]
        if self.requested is not None and self.requested not in names:
            raise ResultsError(f"--model {self.requested}: not a model of {self.source} (models: {', '.join(names)})")

    @property
    def limited(self) -> bool:
        return any(c.limited for c in self.models)

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.models)

    @property
    def best(self) -> BestModel:
        return choose_best(self.models)

    @property
    def submission_model(self) -> Optional[Collection]:
        """The model the zip is for: --model, else the best; None when there is none."""
        name = self.requested or self.best.model
        return next((c for c in self.models if c.model == name), None)

    def model(self, name: str) -> Collection:
        for collection in self.models:
            if collection.model == name:
                return collection
        raise KeyError(name)

    def problem_summary(self) -> str:
        broken = [c for c in self.models if not c.complete]
        if len(self.models) == 1:
            return broken[0].problem_summary() if broken else ""
        return "; ".join(f"{c.model}: {c.problem_summary()}" for c in broken)

    @property
    def n_samples(self) -> Optional[int]:
        """Samples per problem: the smallest any scored task had (pass@k needs k of them)."""
        seen = [r.n_samples for c in self.models for r in c.tasks.values() if r.status == "ok" and r.n_samples]
        return min(seen) if seen else None

    def to_dict(self, submission: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        ks = sorted({k for c in self.models for r in c.tasks.values() for k in r.metrics
                     if k.startswith("pass@") and not k.endswith("_stderr")}, key=lambda k: int(k[5:]))
        limits = {r.limit for c in self.models for r in c.tasks.values() if r.limit is not None}
        return {
            "schema": SCHEMA,
            "run": self.source,
            "recipe": self.recipe,
            "limited": self.limited,
            "limit": min(limits) if limits else None,
            "n_samples": self.n_samples,
            "ks": ks,
            "complete": self.complete,
            "comparable": all(c.to_dict()["comparable"] for c in self.models),
            "competition_tasks": list(contract.COMPETITION_SUITE),
            "extra_tasks": list(contract.EXTRA_BENCHMARKS),
            "models": [c.to_dict() for c in self.models],
            "best_per_task": best_per_task(self.models),
            "best": self.best.to_dict(),
            "submission": submission or {"model": None, "zip": None, "no_zip_reason": "not written"},
        }
