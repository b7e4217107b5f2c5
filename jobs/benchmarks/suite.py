"""Names of the benchmarks mftlaunch knows. Plain data, so the launcher can read it without torch."""
from __future__ import annotations

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
ALIASES = {"competition": COMPETITION_SUITE, "all": ALL_BENCHMARKS}


def expand(names: list[str]) -> list[str]:
    """Expand aliases, keep order, drop repeats. Unknown names are left for the caller to reject."""
    out: list[str] = []
    for name in names:
        for item in ALIASES.get(name, (name,)):
            if item not in out:
                out.append(item)
    return out
