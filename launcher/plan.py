"""Recipe + profile → plan: the small DAG of jobs that `submit` sends and `plan` renders.

A plan is plain data (it is written to plan.json and read back by every job): one entry per
stage with its items (array elements), resolved resources, array chunks and the dependency on the
stage before it. All recipe-vs-profile checks happen here, so an impossible recipe is refused
before the first sbatch.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from launcher.contract import ENV_DATA_DIR, is_builtin_model
from launcher.array_layout import ArrayLayout, array_layout, merge_items
from launcher.profile import Profile
from launcher.recipe import Recipe, Resources
from launcher.sweep import plan_models
from launcher.yamlsource import ConfigError, YamlSource

#: (field path in the recipe, message): turned into `file:line: field.path: message` at the end
Problem = tuple[tuple, str]

# How each stage waits for the one before it. `afterok` + kill-on-invalid-dep keeps a failed
# training from allocating GPU nodes for nothing; evaluation goes element by element where the
# arrays match; the collector runs whatever happened and names what is missing.
DEPENDENCY = {"merge": "afterok", "generate": "afterok", "evaluate": "aftercorr", "collect": "afterany"}


@dataclass
class ResolvedResources:
    partition: Optional[str]
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: Optional[int]
    mem_gb: Optional[float]
    time_minutes: int
    max_restarts: int
    constraint: Optional[str] = None


@dataclass
class PlannedJob:
    stage: str
    name: str
    items: list[dict[str, Any]]
    resources: ResolvedResources
    depends_on: Optional[str] = None
    dependency_type: Optional[str] = None
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (offset, count) per sbatch

    @property
    def is_array(self) -> bool:
        return self.stage in ("generate", "evaluate") or len(self.items) > 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chunks"] = [list(c) for c in self.chunks]
        out["is_array"] = self.is_array
        return out


@dataclass
class Plan:
    recipe: str
    profile: str
    scheduler: str
    model_name: str
    data_dir: Optional[str]
    limit: Optional[int]
    jobs: list[PlannedJob]
    notes: list[str] = field(default_factory=list)
    #: every model the run generates with and scores (launcher/sweep.py)
    models: list[dict[str, Any]] = field(default_factory=list)
    #: estimated cost of the generate / evaluate arrays (launcher/array_layout.py)
    balance: dict[str, Any] = field(default_factory=dict)

    def job(self, stage: str) -> PlannedJob:
        for job in self.jobs:
            if job.stage == stage:
                return job
        raise KeyError(stage)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Read back a plan.json (resume submits from the run directory alone)."""
        jobs = [
            PlannedJob(stage=j["stage"], name=j["name"], items=j["items"],
                       resources=ResolvedResources(**j["resources"]), depends_on=j["depends_on"],
                       dependency_type=j["dependency_type"], chunks=[tuple(c) for c in j["chunks"]])
            for j in data["jobs"]
        ]
        return cls(recipe=data["recipe"], profile=data["profile"], scheduler=data["scheduler"],
                   model_name=data["model_name"], data_dir=data["data_dir"], limit=data["limit"], jobs=jobs,
                   notes=data.get("notes", []), models=data.get("models", []), balance=data.get("balance", {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "profile": self.profile,
            "scheduler": self.scheduler,
            "model_name": self.model_name,
            "data_dir": self.data_dir,
            "limit": self.limit,
            "notes": self.notes,
            "models": self.models,
            "balance": self.balance,
            "jobs": [j.to_dict() for j in self.jobs],
        }


def job_name(recipe: Recipe, stage: str) -> str:
    """Readable in squeue, no '/': mft.<recipe>.<stage>."""
    return f"mft.{recipe.name}.{stage}"


def stage_items(stage: str, models: list[dict[str, Any]], layout: ArrayLayout) -> list[dict[str, Any]]:
    if stage == "generate":
        return layout.generate
    if stage == "evaluate":
        return layout.evaluate
    if stage == "merge":
        return merge_items(models)
    return [{"key": stage}]


def chosen_data_dir(recipe: Recipe) -> Optional[str]:
    """The benchmark data directory the user chose: the recipe's `data_dir`, else
    $MFTLAUNCH_DATA_DIR at submit time. None lets every job use the default copy
    (jobs/code_benchmarks/data.py:default_data_dir), so that default is defined in one place."""
    return recipe.data_dir or os.environ.get(ENV_DATA_DIR) or None
def _same_pieces(upstream: list[dict[str, Any]], items: list[dict[str, Any]]) -> bool:
    return [i.get("pieces") for i in upstream] == [i.get("pieces") for i in items]


def _resolve_resources(stage: str, res: Resources, profile: Profile, problems: list[Problem]) -> ResolvedResources:
    where = ("stages", stage, "resources")
    partition = res.partition or (profile.partitions.gpu if res.gpus_per_node else profile.partitions.cpu)
    if res.gpus_per_node > profile.gpus_per_node:
        problems.append((where + ("gpus_per_node",),
            f"asks for {res.gpus_per_node} GPUs per node, but nodes of profile "
            f"'{profile.name}' have {profile.gpus_per_node}; lower it or pick another profile (--profile)"
        ))
    if profile.is_local and res.nodes > 1:
        problems.append((where + ("nodes",), f"the local profile runs on one machine, got nodes: {res.nodes}; use a Slurm profile"))
    if profile.max_nodes and res.nodes > profile.max_nodes:
        problems.append((where + ("nodes",), f"{res.nodes} exceeds the max_nodes ({profile.max_nodes}) of profile '{profile.name}'"))
    tasks = res.tasks_per_node
    if res.cpus_per_task and profile.cpus_per_node and res.cpus_per_task * tasks > profile.cpus_per_node:
        problems.append((where + ("cpus_per_task",),
            f"{tasks} task(s) x {res.cpus_per_task} CPUs exceed the {profile.cpus_per_node} "
            f"CPUs of a node in profile '{profile.name}'"
        ))
    if res.mem_gb and profile.mem_gb_per_node and res.mem_gb > profile.mem_gb_per_node:
        problems.append((where + ("mem_gb",), f"{res.mem_gb} GB exceeds the {profile.mem_gb_per_node} GB of a node in profile '{profile.name}'"))
    if profile.max_time_minutes and res.time_minutes > profile.max_time_minutes:
        problems.append((where + ("time",),
            f"{res.time} is longer than the profile's max_time ({profile.max_time}); shorten it "
            f"(training resumes from checkpoints across requeues)"
        ))
    return ResolvedResources(
        partition=partition,
        nodes=res.nodes,
        tasks_per_node=tasks,
        gpus_per_node=res.gpus_per_node,
        cpus_per_task=res.cpus_per_task,
        mem_gb=res.mem_gb,
        time_minutes=res.time_minutes,
        max_restarts=res.max_restarts,
        constraint=res.constraint,
    )


def _chunks(stage: str, count: int, profile: Profile, problems: list[Problem]) -> list[tuple[int, int]]:
    size = profile.max_array_size
    if count <= size:
        return [(0, count)]
    if not profile.chunk_arrays:
        problems.append((("stages", stage),
            f"the array has {count} elements, more than MaxArraySize ({size}) of profile "
            f"'{profile.name}', and chunk_arrays is off; enable chunk_arrays or use fewer shards"
        ))
        return [(0, count)]
    return [(off, min(size, count - off)) for off in range(0, count, size)]


def check_paths(recipe: Recipe, data_dir: Optional[str], problems: list[Problem]) -> None:
    """Cluster paths must exist where `submit` (or `validate --check-paths`) runs."""
    located = [(("model", "path"), recipe.model.path)] if recipe.model else []
    located += [(("models", i, "path"), m.path) for i, m in enumerate(recipe.models or [])]
    for where, model_path in located:
        if not is_builtin_model(model_path) and not Path(model_path).exists():
            problems.append((where, f"{model_path} does not exist (a HF model directory, or builtin:tiny-llama)"))
    train = recipe.stages.train
    if train:
        for i, ds in enumerate(train.datasets):
            if not Path(ds.path).exists():
                problems.append((("stages", "train", "datasets", i, "path"), f"{ds.path} does not exist (a directory of chat_rounds JSONL)"))
    gen = recipe.stages.generate
    if gen and gen.model_path and not is_builtin_model(gen.model_path) and not Path(gen.model_path).exists():
        problems.append((("stages", "generate", "model_path"), f"{gen.model_path} does not exist"))
    if gen and data_dir:
        if not Path(data_dir).is_dir():
            problems.append((("data_dir",), f"{data_dir} is not a directory (`mftlaunch data fetch --dest {data_dir}`)"))


def _memory_notes(recipe: Recipe, profile: Profile, problems: list[Problem], notes: list[str]) -> None:
    """Per-GPU memory estimate of the training stage from the model's config.json (plain JSON maths,
    no torch); refuses a recipe that cannot fit when the profile states its GPUs' memory."""
    from launcher import memory_estimate as memory

    _generation_memory_notes(recipe, profile, problems, notes)
    train = recipe.stages.train
    if not train:
        return
    config = memory.load_model_config(recipe.model.path)
    if config is None:  # the model lives where only the compute nodes see it
        return
    estimate = memory.estimate(config, train, recipe.model.dtype)
    notes.append(f"train memory estimate: {estimate.summary()}")
    if profile.gpu_mem_gib and train.resources.gpus_per_node:
        for message in memory.problems(estimate, train, profile.gpu_mem_gib):
            problems.append((("stages", "train"), message))


def _generation_memory_notes(recipe: Recipe, profile: Profile, problems: list[Problem], notes: list[str]) -> None:
    """Per-GPU memory of the generate stage (weights + KV cache, launcher/generation_memory.py);
    refuses a layout that cannot fit when the profile states its GPUs' memory."""
    from launcher.memory_estimate import load_model_config
    from launcher import generation_memory

    gen = recipe.stages.generate
    if not gen:
        return
    specs = [m.spec(recipe.model) for m in recipe.models] if recipe.models else [recipe.model]
    for spec in specs:  # every model of an eval-only sweep; a training run's checkpoints are its base's shape
        config = load_model_config(gen.model_path or spec.path)
        if config is None:
            continue
        devices = gen.resources.gpus_per_node if gen.placement == "split" else 1
        who = f" ({spec.model_name})" if len(specs) > 1 else ""
        notes.append(f"generate memory estimate{who}: "
                     f"{generation_memory.estimate(config, gen, spec.dtype, devices).summary()}")
        if profile.gpu_mem_gib and gen.resources.gpus_per_node:
            for message in generation_memory.problems(config, gen, spec.dtype, profile.gpu_mem_gib,
                                                      profile.gpus_per_node):
                problems.append((("stages", "generate"), f"{spec.model_name}: {message}" if who else message))


def _format(problems: list[Problem], source: Optional[YamlSource]) -> list[str]:
    out = []
    for loc, message in problems:
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        where = source.where(loc) if source else "<recipe>"
        out.append(f"{where}: {dotted}: {message}")
    return out


def build_plan(recipe: Recipe, profile: Profile, *, paths: bool = False, source: Optional[YamlSource] = None) -> Plan:
    """Build the plan; raise ConfigError listing every problem (nothing is submitted then).

    `source` (the recipe's YAML) lets errors name the recipe file and line."""
    problems: list[Problem] = []
    notes: list[str] = []
    data_dir = chosen_data_dir(recipe)
    models = plan_models(recipe)
    layout = array_layout(recipe, profile, models, data_dir)
    notes.extend(layout.notes)
    jobs: list[PlannedJob] = []
    previous: Optional[PlannedJob] = None
    for stage in recipe.stages.present():
        spec = getattr(recipe.stages, stage)
        items = stage_items(stage, models, layout)
        resources = _resolve_resources(stage, spec.resources, profile, problems)
        if stage == "generate" and spec.placement == "split":
            resources.tasks_per_node = 1  # one rank drives all GPUs of its node
        job = PlannedJob(stage=stage, name=job_name(recipe, stage), items=items, resources=resources)
        job.chunks = _chunks(stage, len(items), profile, problems) if job.is_array else [(0, 1)]
        if previous is not None:
            job.depends_on = previous.stage
            kind = DEPENDENCY[stage]
            if kind == "aftercorr" and not _same_pieces(previous.items, items):
                kind = "afterany"  # other cuts: evaluation waits for the whole array, each element
            if kind == "aftercorr" and previous.chunks != job.chunks:  # checks its own pieces' sentinels
                kind = "afterany"
            if stage == "generate" and previous.is_array:
                kind = "afterany"  # one failed checkpoint's merge must not cancel the others' generation
            job.dependency_type = kind
        jobs.append(job)
        previous = job
    _memory_notes(recipe, profile, problems, notes)
    if paths:
        check_paths(recipe, data_dir, problems)
    if problems:
        raise ConfigError(_format(problems, source))
    return Plan(
        recipe=recipe.name,
        profile=profile.name,
        scheduler=profile.scheduler,
        model_name=models[0]["name"],
        data_dir=data_dir,
        limit=recipe.limit,
        jobs=jobs,
        notes=notes,
        models=models,
        balance=layout.summary,
    )

