"""Task directories of chat_rounds JSONL → tokenized, cached, train/validation datasets.

A dataset (`DatasetSpec`) is a directory searched recursively for `*.jsonl` (or one `.jsonl`
file); its task name is `DatasetSpec.task_name`. Each line is
`{"chat_rounds": [{"role": "system"|"human"|"bot", "content": "..."}, ...]}` (`user` is accepted
for human, `assistant` and `gpt` for bot, as MFTCoder accepts them). Bad rows are errors naming the file and line: a
silently skipped row is a silently different training set.

Tokenization runs once per dataset and is cached on shared storage under a key made of the data
files' contents, the template, the tokenizer, seq_length, the overlong policy and this code, so
a requeued job or a second stage never re-tokenizes, and any change re-tokenizes. Rank 0 builds;
other ranks wait for the entry (jobs.mft.cache).

Lengths: a sample of n tokens gives n-1 (input, next-token) positions, and seq_length bounds the
positions (MFTCoder's seq_length+1 tokens). Longer samples are truncated or dropped as the recipe
says (`overlong: drop` is what MFTCoder does); samples left without any target token are dropped. Both are counted and logged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from jobs.mft import cache, templates
from jobs.mft.templates import ChatTemplate, Turn
from launcher.recipe import DatasetSpec, TrainStage

log = logging.getLogger(__name__)

ROLES = {"system": "system", "human": "human", "user": "human", "bot": "bot", "assistant": "bot", "gpt": "bot"}
MAX_LISTED_PROBLEMS = 20
ENCODE_CHUNK = 2048  # conversations per batched tokenizer call


class DataError(ValueError):
    """Bad training data; the message lists `file:line: problem` entries."""


# ------------------------------------------------------------------------------------------
# reading


def task_files(path: Path) -> list[Path]:
    """The JSONL files of a dataset, in a fixed (sorted) order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"dataset path {path} does not exist")
    files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    if not files:
        raise DataError(f"dataset directory {path} holds no *.jsonl file")
    return files


def parse_conversation(row: Any) -> list[Turn]:
    """Check one JSONL row and return its turns; ValueError says what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    rounds = row.get("chat_rounds")
    if not isinstance(rounds, list) or not rounds:
        raise ValueError("needs a non-empty list `chat_rounds` of {role, content} objects")
    turns: list[Turn] = []
    for k, item in enumerate(rounds):
        where = f"chat_rounds[{k}]"
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise ValueError(f"{where} must be an object with `role` and `content`")
        role = ROLES.get(str(item["role"]).lower())
        if role is None:
            raise ValueError(f"{where}: unknown role {item['role']!r}; use system, human (user) or bot (assistant, gpt)")
        if not isinstance(item["content"], str):
            raise ValueError(f"{where}: content must be a string")
        expected = "human" if not turns or turns[-1].role in ("system", "bot") else "bot"
        if role == "system" and turns:
            raise ValueError(f"{where}: a system turn may only come first")
        if role != "system" and role != expected:
            raise ValueError(f"{where}: expected a {expected} turn, got {role} (human and bot must alternate)")
        turns.append(Turn(role, item["content"]))  # type: ignore[arg-type]
    if turns[-1].role != "bot":
        raise ValueError("the conversation must end with a bot turn (the last turn is what is trained)")
    return turns


def read_task(path: Path) -> list[list[Turn]]:
    """All conversations of a dataset, file by file, line by line; blank lines are skipped."""
    conversations: list[list[Turn]] = []
    problems: list[str] = []
    for file in task_files(path):
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    conversations.append(parse_conversation(json.loads(line)))
                except json.JSONDecodeError as exc:
                    problems.append(f"{file}:{number}: not valid JSON ({exc.msg} at column {exc.colno})")
                except ValueError as exc:
                    problems.append(f"{file}:{number}: {exc}")
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise DataError(f"{len(problems)} bad row(s) in dataset {path}:\n  {listed}{more}")
    if not conversations:
        raise DataError(f"dataset {path} holds no conversations")
    return conversations


# ------------------------------------------------------------------------------------------
# tokenizing


@dataclass
class TaskStats:
    """What tokenization did to one dataset; logged and returned, never silent."""

    task: str
    conversations: int = 0
    samples: int = 0
    overlong: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    dropped_no_target: int = 0
    tokens: int = 0
    target_tokens: int = 0
    train_samples: int = 0
    valid_samples: int = 0


@dataclass
class TaskArrays:
    """One dataset's samples, flat: sample i is tokens[offsets[i]:offsets[i+1]]."""

    tokens: np.ndarray  # int32
    targets: np.ndarray  # uint8, 1 = this token is a training target
    offsets: np.ndarray  # int64, len = samples + 1
    conversation: np.ndarray  # int32, the source conversation of each sample (for the split)


def tokenize_task(
    task: str,
    conversations: Sequence[Sequence[Turn]],
    template: ChatTemplate,
    tokenizer: Any,
    seq_length: int,
    overlong: str,
) -> tuple[TaskArrays, TaskStats]:
    """Tokenize, apply the overlong policy, drop target-less samples; count everything."""
    stats = TaskStats(task=task, conversations=len(conversations))
    max_tokens = seq_length + 1
    tokens: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    kept: list[int] = []
    for start in range(0, len(conversations), ENCODE_CHUNK):
        chunk = conversations[start : start + ENCODE_CHUNK]
        for k, (ids, mask) in enumerate(templates.encode_conversations(template, tokenizer, chunk)):
            cut = len(ids) > max_tokens
            if cut:
                stats.overlong += 1
                if overlong == "drop":
                    stats.dropped_overlong += 1
                    continue
                ids, mask = ids[:max_tokens], mask[:max_tokens]
            if not any(mask[1:]):  # the first token is never predicted
                stats.dropped_no_target += 1
                continue
            stats.truncated += cut
            tokens.append(np.asarray(ids, dtype=np.int32))
            targets.append(np.asarray(mask, dtype=np.uint8))
            kept.append(start + k)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arrays = TaskArrays(
        tokens=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
        targets=np.concatenate(targets) if targets else np.zeros(0, np.uint8),
        offsets=offsets,
        conversation=np.asarray(kept, dtype=np.int32),
    )
    stats.samples = len(tokens)
    stats.tokens = int(lengths.sum())
    stats.target_tokens = int(sum(int(t[1:].sum()) for t in targets))
    return arrays, stats


# ------------------------------------------------------------------------------------------
# caching


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any, template: ChatTemplate) -> str:
    """What decides the tokenizer's output: its full definition where the tokenizer can serialise
    itself (fast tokenizers), else its vocabulary; plus how it actually encodes the template's
    markers, which catches settings kept outside the definition (prefix spaces, legacy modes)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    probe = [template.system_prefix, template.human_prefix, template.bot_prefix + "def f(x):\n    return x\n"]
    digest.update(json.dumps(tokenizer(probe, add_special_tokens=False)["input_ids"]).encode())
    digest.update(json.dumps(template.end_ids(tokenizer)).encode())
    return digest.hexdigest()


def _code_fingerprint() -> str:
    """This module and the templates: any edit to how samples are built invalidates the cache."""
    digest = hashlib.sha256()
    for module in (templates.__file__, __file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()


def cache_key(files: Sequence[Path], root: Path, template: ChatTemplate, tokenizer_fp: str, seq_length: int, overlong: str) -> str:
    """Content hash of everything that decides a dataset's tokenized samples."""
    parts = {
        "code": _code_fingerprint(),
        "files": [[str(f.relative_to(root)) if f != root else f.name, _sha256_file(f)] for f in files],
        "template": asdict(template),
        "tokenizer": tokenizer_fp,
        "seq_length": seq_length,
        "overlong": overlong,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _entry_name(task: str, key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in task)
    return f"{safe}-{key[:20]}"


def _save(arrays: TaskArrays, stats: TaskStats, directory: Path) -> None:
    np.savez(
        directory / "samples.npz",
        tokens=arrays.tokens,
        targets=arrays.targets,
        offsets=arrays.offsets,
        conversation=arrays.conversation,
    )
    (directory / "stats.json").write_text(json.dumps(asdict(stats), indent=1) + "\n")


def _load(directory: Path) -> tuple[TaskArrays, TaskStats]:
    with np.load(directory / "samples.npz", allow_pickle=False) as npz:
        arrays = TaskArrays(npz["tokens"], npz["targets"], npz["offsets"], npz["conversation"])
    stats = TaskStats(**json.loads((directory / "stats.json").read_text()))
    return arrays, stats


def tokenized_task(
    spec: DatasetSpec,
    root: Path,
    template: ChatTemplate,
    tokenizer: Any,
    tokenizer_fp: str,
    seq_length: int,
    overlong: str,
    cache_dir: Path,
    *,
    is_builder: bool,
    timeout_s: float,
) -> tuple[TaskArrays, TaskStats, bool]:
    """One dataset's samples from the cache, built first if missing; the bool says 'built now'."""
    files = task_files(root)
    key = cache_key(files, root, template, tokenizer_fp, seq_length, overlong)
    entry = cache_dir / _entry_name(spec.task_name, key)

    def build(tmp: Path) -> None:
        arrays, stats = tokenize_task(spec.task_name, read_task(root), template, tokenizer, seq_length, overlong)
        _save(arrays, stats, tmp)

    built = cache.build_once(entry, build, is_builder=is_builder, timeout_s=timeout_s)
    arrays, stats = _load(entry)
    return arrays, stats, built


# ------------------------------------------------------------------------------------------
# splitting and assembling


def validation_mask(conversations: int, fraction: float, seed: int, task: str) -> np.ndarray:
    """Which conversations of a task are held out, deterministic in (seed, task).

    The split is over conversations, before tokenization, so it does not move when seq_length or
    the template change. A task with 2+ conversations and fraction > 0 keeps at least one for
    validation and one for training (MFTCoder's ceil-based split leaves small tasks with none,
    which breaks per-task validation losses and CoBa).
    """
    held = np.zeros(conversations, dtype=bool)
    if fraction <= 0 or conversations < 2:
        return held
    count = min(conversations - 1, max(1, round(conversations * fraction)))
    order = list(range(conversations))
    random.Random(f"{seed}/{task}").shuffle(order)
    held[order[:count]] = True
    return held


@dataclass
class TokenizedDataset:
    """Samples of several tasks, flat; sample i is tokens[offsets[i]:offsets[i+1]] of task task_ids[i]."""

    tokens: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    task_ids: np.ndarray
    task_names: list[str]

    def __len__(self) -> int:
        return len(self.task_ids)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, target flags) of one sample."""
        lo, hi = self.offsets[index], self.offsets[index + 1]
        return self.tokens[lo:hi], self.targets[lo:hi]

    @cached_property
    def lengths(self) -> np.ndarray:
        """Positions per sample (tokens - 1): what a sample occupies in a batch row."""
        return np.diff(self.offsets) - 1

    @classmethod
    def assemble(cls, parts: Sequence[tuple[TaskArrays, np.ndarray]], task_names: list[str]) -> "TokenizedDataset":
        """Concatenate the chosen samples (`parts[t]` = task t's arrays and sample indices)."""
        tokens, targets, lengths, task_ids = [], [], [], []
        for task_id, (arrays, chosen) in enumerate(parts):
            for i in chosen:
                lo, hi = arrays.offsets[i], arrays.offsets[i + 1]
                tokens.append(arrays.tokens[lo:hi])
                targets.append(arrays.targets[lo:hi])
                lengths.append(hi - lo)
            task_ids.extend([task_id] * len(chosen))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
        return cls(
            tokens=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
            targets=np.concatenate(targets) if targets else np.zeros(0, np.uint8),
            offsets=offsets,
            task_ids=np.asarray(task_ids, dtype=np.int64),
            task_names=task_names,
        )


@dataclass
class MftData:
    train: TokenizedDataset
    valid: TokenizedDataset
    task_names: list[str]
    task_weights: list[float]  # DatasetSpec.weight per task id
    stats: list[TaskStats]
    pad_id: int
    built: list[str] = field(default_factory=list)  # tasks tokenized by this call (cache misses)

    def summary(self) -> dict[str, Any]:
        """Totals for logs and the stage's completion counts."""
        keys = ("samples", "overlong", "truncated", "dropped_overlong", "dropped_no_target", "train_samples", "valid_samples")
        return {k: sum(getattr(s, k) for s in self.stats) for k in keys}


def _resolve(path: str, base_dir: Optional[Path]) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base_dir is None else base_dir / candidate


def _log_stats(stats: TaskStats, built: bool) -> None:
    log.info(
        "dataset %s: %d conversations → %d samples (%d train, %d valid), %d tokens, %d target tokens%s",
        stats.task, stats.conversations, stats.samples, stats.train_samples, stats.valid_samples,
        stats.tokens, stats.target_tokens, " (tokenized now)" if built else " (from cache)",
    )
    if stats.overlong or stats.dropped_no_target:
        log.warning(
            "dataset %s: %d sample(s) over seq_length (%d truncated, %d dropped), %d dropped for having no target token",
            stats.task, stats.overlong, stats.truncated, stats.dropped_overlong, stats.dropped_no_target,
        )


def load_mft_data(
    stage: TrainStage,
    tokenizer: Any,
    cache_dir: Path,
    *,
    rank: int = 0,
    base_dir: Optional[Path] = None,
    timeout_s: float = 3600.0,
) -> MftData:
    """Tokenized train and validation sets of a train stage; task id = position in stage.datasets.

    `cache_dir` must be shared by all ranks (the run directory); rank 0 tokenizes, the others
    wait. Relative dataset paths are taken from `base_dir` (default: the working directory).
    """
    template = templates.resolve_template(stage.template, stage.custom_template)
    tokenizer_fp = tokenizer_fingerprint(tokenizer, template)
    names: list[str] = []
    weights: list[float] = []
    train_parts: list[tuple[TaskArrays, np.ndarray]] = []
    valid_parts: list[tuple[TaskArrays, np.ndarray]] = []
    all_stats: list[TaskStats] = []
    built: list[str] = []
    task_names = [d.task_name for d in stage.datasets]
    duplicated = sorted({n for n in task_names if task_names.count(n) > 1})
    if duplicated:  # the recipe checks this too; the task name keys losses, logs and the cache
        raise DataError(f"dataset names must be unique, repeated: {', '.join(duplicated)}")
    for spec in stage.datasets:
        root = _resolve(spec.path, base_dir)
        arrays, stats, was_built = tokenized_task(
            spec, root, template, tokenizer, tokenizer_fp, stage.seq_length, stage.overlong, Path(cache_dir),
            is_builder=rank == 0, timeout_s=timeout_s,
        )
        if stats.samples == 0:
            raise DataError(
                f"dataset {spec.task_name} ({root}) has no usable sample: {stats.conversations} conversations, "
                f"{stats.dropped_overlong} dropped as overlong, {stats.dropped_no_target} without target tokens "
                f"(seq_length {stage.seq_length})"
            )
        held = validation_mask(stats.conversations, stage.validation_split, stage.seed, spec.task_name)[arrays.conversation]
        train_parts.append((arrays, np.flatnonzero(~held)))
        valid_parts.append((arrays, np.flatnonzero(held)))
        stats.train_samples, stats.valid_samples = int((~held).sum()), int(held.sum())
        names.append(spec.task_name)
        weights.append(spec.weight)
        all_stats.append(stats)
        if was_built:
            built.append(spec.task_name)
        _log_stats(stats, was_built)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return MftData(
        train=TokenizedDataset.assemble(train_parts, names),
        valid=TokenizedDataset.assemble(valid_parts, names),
        task_names=names,
        task_weights=weights,
        stats=all_stats,
        pad_id=int(pad_id if pad_id is not None else 0),
        built=built,
    )
