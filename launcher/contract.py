"""The names the submit side and the compute side share, and nothing else.

`jobs/` may import three modules of `launcher/`: this one, `launcher.recipe` (the recipe models)
and `launcher.rundir` (the run directory layout). Everything here is plain data or a pure function
of plain data, so that a login node can import it without torch and a compute node can import it
without pulling the launcher's Slurm machinery. When a name is needed on both sides, it lives here
and only here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

#: The stages of a pipeline, in the order data flows through them.
STAGES = ("train", "merge", "generate", "evaluate", "collect")

#: Exit code of a job that saved its state and asks the batch script (or the local scheduler)
#: to requeue it. 75 is EX_TEMPFAIL: "try again later".
REQUEUE_EXIT_CODE = 75

# --- the benchmark suite --------------------------------------------------------------------

LANGUAGES = ("python", "java", "js", "cpp", "go", "rust")

#: The 13-task suite of the Qwen code competition (MBPP counts as one task of 13).
COMPETITION_SUITE = tuple(
    [f"humanevalsynthesize-{lang}" for lang in LANGUAGES]
    + [f"humanevalfixtests-{lang}" for lang in LANGUAGES]
    + ["mbpp"]
)

#: Reported beside the 13-task mean, never inside it.
EXTRA_BENCHMARKS = ("humaneval",)

ALL_BENCHMARKS = COMPETITION_SUITE + EXTRA_BENCHMARKS

#: Aliases a recipe may use in `benchmarks:`; each expands to a list of names.
BENCHMARK_ALIASES = {"competition": COMPETITION_SUITE, "all": ALL_BENCHMARKS}


def expand_benchmarks(names: list[str]) -> list[str]:
    """Expand aliases, keep order, drop repeats. Unknown names are left for the caller to reject."""
    out: list[str] = []
    for name in names:
        for item in BENCHMARK_ALIASES.get(name, (name,)):
            if item not in out:
                out.append(item)
    return out


#: How a benchmark problem becomes a prompt (jobs/code_benchmarks/prompts.py defines each).
PromptFormatName = Literal["instruct", "competition", "chatml", "codefuse", "custom"]
PROMPT_FORMATS: tuple[str, ...] = get_args(PromptFormatName)

# --- built-in models ------------------------------------------------------------------------

#: `model.path: builtin:tiny-llama` names a model the repository builds itself (jobs/tiny_model.py).
BUILTIN_MODEL_PREFIX = "builtin:"

#: Built-in models: name → the repository folder holding its config.json (and tokenizer corpus).
BUILTIN_MODELS = {"tiny-llama": Path(__file__).resolve().parent.parent / "recipes" / "models" / "tiny-llama"}


def is_builtin_model(path: str) -> bool:
    return str(path).startswith(BUILTIN_MODEL_PREFIX)


def builtin_model_dir(path: str) -> Path | None:
    """The repository folder of a `builtin:` model, None for any other path or an unknown name."""
    if not is_builtin_model(path):
        return None
    return BUILTIN_MODELS.get(str(path)[len(BUILTIN_MODEL_PREFIX):])


# --- environment variables ------------------------------------------------------------------

ENV_DATA_DIR = "MFTLAUNCH_DATA_DIR"          # benchmark data directory (overrides the default)
ENV_PROFILE = "MFTLAUNCH_PROFILE"            # default cluster profile of `submit`
ENV_PROFILES_PATH = "MFTLAUNCH_PROFILES"     # extra directories of admin profiles
ENV_CACHE = "MFTLAUNCH_CACHE"                # where built-in models are built
ENV_RUN_DIR = "MFTLAUNCH_RUN_DIR"            # set in every job script
ENV_NET_IFNAME = "MFTLAUNCH_NET_IFNAME"      # the profile's network interface for gloo/NCCL
ENV_MASTER_ADDR_MODE = "MFTLAUNCH_MASTER_ADDR_MODE"  # "ip": resolve MASTER_ADDR to an address
ENV_LOCAL_JOB_ID = "MFTLAUNCH_LOCAL_JOB_ID"  # the local scheduler's SLURM_JOB_ID
ENV_RESTART_COUNT = "MFTLAUNCH_RESTART_COUNT"  # the local scheduler's SLURM_RESTART_COUNT
ENV_START_TIME = "MFTLAUNCH_START_TIME"      # the local scheduler's SLURM_JOB_START_TIME
ENV_GEN_STATIC_CACHE = "MFTLAUNCH_GEN_STATIC_CACHE"  # "1": static KV cache without editing the recipe
ENV_GEN_COMPILE = "MFTLAUNCH_GEN_COMPILE"    # "1": compiled decode without editing the recipe

# --- the job graph --------------------------------------------------------------------------


def shard_key(benchmark: str, shard: int, num_shards: int) -> str:
    """The key of one generation shard: the benchmark itself when it is not sharded."""
    return benchmark if num_shards == 1 else f"{benchmark}-s{shard}of{num_shards}"


def plan_job(plan: dict[str, Any], stage: str) -> dict[str, Any]:
    """The job of `stage` in a plan.json dictionary."""
    for job in plan["jobs"]:
        if job["stage"] == stage:
            return job
    raise KeyError(f"stage '{stage}' is not in this run's plan")


def submitted_elements(manifest: dict[str, Any], plan: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(stage, index, Slurm id) of every element each submission of the run sent, oldest first.

    The manifest records each sbatch as {id, offset[, array]}: an array covers the chunk starting
    at `offset`, and its task ids (the `_4` of "123_4") count from the chunk's start; a resume's
    `array` lists the task ids it resubmitted. `status` keeps the latest id per element; the cost
    accounting asks sacct about all of them."""
    jobs = {job["stage"]: job for job in plan["jobs"]}
    out: list[tuple[str, int, str]] = []
    for attempt in manifest.get("attempts", []):
        for stage, entries in attempt.get("jobs", {}).items():
            job = jobs[stage]
            for entry in entries:
                offset = entry["offset"]
                count = next(c for o, c in job["chunks"] if o == offset)
                if entry.get("array"):
                    local = [int(x) for x in entry["array"].split("%")[0].split(",")]
                else:
                    local = list(range(count))
                for i in local:
                    out.append((stage, offset + i, f"{entry['id']}_{i}" if job["is_array"] else str(entry["id"])))
    return out


def required_upstream(plan: dict[str, Any], stage: str, index: int) -> list[tuple[str, int, str]]:
    """(stage, index, key) of every element that element `index` of `stage` needs.

    The one dependency rule, used by a job before it starts (jobs/run.py), by the local scheduler
    to skip what cannot run, and by `resume` to choose what reruns. Element-wise (`aftercorr`)
    stages need their partner element; an evaluation element needs the generate elements holding
    a piece that overlaps one of its pieces (plan items' `pieces`: model, benchmark, [start, stop));
    a generate element after a merge array needs the merges of its own models; the collector
    needs nothing, because it reports what is missing itself.
    """
    job = plan_job(plan, stage)
    upstream = job.get("depends_on")
    if not upstream or stage == "collect":
        return []
    up = plan_job(plan, upstream)
    if job.get("dependency_type") == "aftercorr":
        return [(upstream, index, up["items"][index]["key"])]
    pieces = job["items"][index].get("pieces", [])
    if stage == "evaluate":
        return [(upstream, i, it["key"]) for i, it in enumerate(up["items"])
                if any(pieces_overlap(mine, theirs) for mine in pieces for theirs in it.get("pieces", []))]
    if stage == "generate" and upstream == "merge":
        models = {p["model"] for p in pieces}
        return [(upstream, i, it["key"]) for i, it in enumerate(up["items"]) if it.get("model") in models]
    return [(upstream, i, it["key"]) for i, it in enumerate(up["items"])]


def pieces_overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two pieces of array elements share a problem (same model and benchmark, ranges meet)."""
    return (a["model"] == b["model"] and a["benchmark"] == b["benchmark"]
            and a["start"] < b["stop"] and b["start"] < a["stop"])
