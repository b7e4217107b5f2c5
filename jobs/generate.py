"""Generate stage: completions for one benchmark (or one shard of it) with a Hugging Face model.

Entry points: `run(ctx)` for a plan item (docs/CONTRACTS.md) and `generate_standalone(...)` for
`mftlaunch generate` without a run directory. Both go through `generate_benchmark`, which turns
problems into rows (one per problem and sample), generates them with an `Engine`, and writes

- `generations_{benchmark}_{model_name}.json`: a list with one entry per problem of the shard, in
  dataset order, each a list of `n_samples` post-processed programs (`jobs.benchmarks.postprocess`);
- `generations_{benchmark}_{model_name}.raw.json` (sidecar): prompts, raw completions, token
  counts, finish reasons, settings and timings, so a surprising program can be traced back.

Both are written atomically. While running, `generations_..partial.json` holds every finished row
and is rewritten (atomically) after each batch: a restarted element skips what is done. The stage
also polls `ctx.should_stop()` between batches, and then saves and raises `RequeueRequested`.

Decisions worth knowing:

- Sharding: shard k of n holds a contiguous, balanced slice of the problems
  (`jobs.benchmarks.data.shard_range`), so concatenating the shards in order gives dataset order.
- Length rule (as the reference harness counts): `max_length` is prompt + generation tokens, so a
  row may generate `max_length - prompt_tokens` tokens; `max_new_tokens`, when set, wins. Either is
  also capped by the model's `max_position_embeddings`. A prompt that leaves no room is not sent to
  the model: its completion is empty (the program is the bare prompt base, which fails its tests),
  its finish reason is `prompt_too_long`, and the count of such rows is reported.
- Stopping: a row stops at an eos token (the tokenizer's, the model's generation config's, and
  every eos string of the format and the recipe's `eos:` that is one token), or once
  `jobs.benchmarks.postprocess.is_finished` holds for its new text (a stop word or eos string
  appeared; HumanEvalPack's end-of-function rule) — which by construction never changes the
  post-processed program. Post-processing cuts at stop words and eos strings again.
- Batching: rows sorted by prompt length (longest first, so an out-of-memory shows at once),
  left padding with an attention mask; HF derives position ids from the mask, so a batched greedy
  row equals the same prompt generated alone (tests/test_generate.py checks it).
- Precision: bf16/fp16/fp32 from the recipe on GPU; CPU always runs fp32.
- Decoding parameters the recipe does not set (e.g. `repetition_penalty`) come from the model's
  own generation_config.json, as they do in the reference harness's `generate` call; the sidecar
  records that config. Sampling seeds are per batch, so a resumed sampled run is not bit-identical
  to an uninterrupted one (greedy runs are).
- GPU speed levers (off by default): `static_cache` (HF static KV cache, prompts padded to a
  multiple of 64 so few shapes occur) and `compile` (torch.compile of the decode step, needs the
  static cache). Environment overrides for plan items: MFTLAUNCH_GEN_STATIC_CACHE=1,
  MFTLAUNCH_GEN_COMPILE=1.
- One rank generates: a multi-GPU element runs on its rank 0 only; use `shards:` to spread a
  benchmark over GPUs.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from jobs.benchmarks import postprocess as pp
from jobs.benchmarks import prompts as pr
from jobs.benchmarks.data import load_benchmark, shard_range
from jobs.context import RequeueRequested
from jobs.tiny_model import resolve_model_path
from launcher.rundir import atomic_write_json, generations_name, read_json

#: Bump when the meaning of a saved row changes: partial progress of another version is dropped.
PROGRESS_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

FinishedFn = Callable[[str], bool]


def sidecar_filename(benchmark: str, model_name: str) -> str:
    return generations_name(benchmark, model_name, ".raw.json")


def partial_filename(benchmark: str, model_name: str) -> str:
    return generations_name(benchmark, model_name, ".partial.json")


# ---------------------------------------------------------------------------------------------
# settings and rows


@dataclass
class DecodeSettings:
    """How to decode; mirrors `launcher.recipe.GenerateStage` plus the GPU speed levers."""

    greedy: bool = True
    n_samples: int = 1
    temperature: float = 0.2
    top_p: float = 0.95
    max_length: int = 2048
    max_new_tokens: Optional[int] = None
    batch_size: int = 16
    seed: int = 0
    static_cache: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.greedy and self.n_samples > 1:
            raise ValueError("greedy decoding gives identical samples: use greedy=False for n_samples > 1")
        if self.compile and not self.static_cache:
            raise ValueError("compile needs static_cache (a dynamic KV cache changes shape every step)")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change generated text (batch size does not, by design)."""
        keys = ("greedy", "n_samples", "temperature", "top_p", "max_length", "max_new_tokens", "seed")
        out = {k: getattr(self, k) for k in keys}
        if self.greedy:
            out.pop("temperature"), out.pop("top_p"), out.pop("seed")
        return out


def token_budget(prompt_tokens: int, settings: DecodeSettings, model_max: Optional[int]) -> int:
    """New tokens a row may generate (<= 0: the prompt leaves no room). See the module docstring."""
    if settings.max_new_tokens is not None:
        budget = settings.max_new_tokens
    else:
        budget = settings.max_length - prompt_tokens
    if model_max:
        budget = min(budget, model_max - prompt_tokens)
    return budget


@dataclass
class Row:
    """One completion to produce: problem `problem` (index in the benchmark), sample `sample`."""

    problem: int
    sample: int
    prompt_ids: list[int]
    budget: int

    @property
    def key(self) -> str:
        return f"{self.problem}:{self.sample}"


@dataclass
class RowResult:
    completion: str  # decoded new text, special tokens kept, eos token dropped
    new_tokens: int
    finish: str  # "stop" | "eos" | "length" | "prompt_too_long"


# ---------------------------------------------------------------------------------------------
# the HF engine


class IncrementalText:
    """Decoded new text of growing token lists, decoding a short window per step (the streaming
    detokenizer of TGI and HF's TextStreamer): the per-step stop check then costs O(1) per row,
    not O(tokens so far). A window that ends inside a multi-byte character waits for the next
    token. `contexts` are a few prompt tokens in front of the new ones, so a tokenizer that drops
    the first token's leading space (SentencePiece) still shows the indentation."""

    def __init__(self, tokenizer, contexts: Sequence[Sequence[int]]):
        self.tokenizer = tokenizer
        self.seqs = [list(c) for c in contexts]
        self.prefix = [0] * len(self.seqs)
        self.read = [len(c) for c in self.seqs]
        self.text = [""] * len(self.seqs)

    def push(self, rows: Sequence[int], tokens: Sequence[int]) -> None:
        """Append token `tokens[i]` to row `rows[i]` and bring `text` up to date."""
        for row, token in zip(rows, tokens):
            self.seqs[row].append(token)
        before = [self.seqs[r][self.prefix[r]:self.read[r]] for r in rows]
        after = [self.seqs[r][self.prefix[r]:] for r in rows]
        decoded = batch_decode(self.tokenizer, before + after)
        for i, row in enumerate(rows):
            head, full = decoded[i], decoded[len(rows) + i]
            if len(full) > len(head) and not full.endswith("\ufffd"):
                self.text[row] += full[len(head):]
                self.prefix[row], self.read[row] = self.read[row], len(self.seqs[row])


class RowStopper:
    """Per-row stopping for HF `generate` (a `StoppingCriteria`): a row is done at an eos token,
    at its own token budget, or when `finished(new_text)` holds. Records why and where, so the
    caller cuts each row at its own end (HF pads finished rows until the whole batch ends)."""

    def __init__(self, tokenizer, prompt_width: int, budgets: Sequence[int], eos_ids: Iterable[int],
                 finished: Optional[FinishedFn], context_ids: Sequence[Sequence[int]]):
        self.prompt_width = prompt_width
        self.budgets = list(budgets)
        self.eos_ids = set(eos_ids)
        self.finished = finished
        self.text = IncrementalText(tokenizer, context_ids) if finished is not None else None
        self.generated: list[list[int]] = [[] for _ in self.budgets]
        self.finish: list[Optional[str]] = [None] * len(self.budgets)

    def __call__(self, input_ids, scores=None, **_kwargs):
        import torch

        last = input_ids[:, -1].tolist()  # one device sync per step (generate syncs anyway)
        to_check: list[int] = []
        for row, token in enumerate(last):
            if self.finish[row] is not None:
                continue
            if token in self.eos_ids:
                self.finish[row] = "eos"
                continue
            self.generated[row].append(token)
            if self.text is not None:
                to_check.append(row)
            elif len(self.generated[row]) >= self.budgets[row]:
                self.finish[row] = "length"
        if to_check:
            self.text.push(to_check, [last[r] for r in to_check])
            for row in to_check:
                if self.finished(self.text.text[row]):
                    self.finish[row] = "stop"
                elif len(self.generated[row]) >= self.budgets[row]:
                    self.finish[row] = "length"
        done = [f is not None for f in self.finish]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def results(self) -> list[tuple[list[int], str]]:
        return [(ids, finish or "length") for ids, finish in zip(self.generated, self.finish)]


def decode_new_text(tokenizer, prompt_ids: Sequence[Sequence[int]], new_ids: Sequence[Sequence[int]],
                    heads: Optional[Sequence[str]] = None) -> list[str]:
    """The text the new tokens add after the prompt: decode(prompt + new) minus decode(prompt), as
    the reference harness slices its decoded output; plain decode(new) where that prefix differs
    (a prompt ending inside a multi-byte character). `heads`: decode(prompt), when known."""
    full = batch_decode(tokenizer, [list(p) + list(n) for p, n in zip(prompt_ids, new_ids)])
    if heads is None:
        heads = batch_decode(tokenizer, [list(p) for p in prompt_ids])
    out = []
    for text, head, new in zip(full, heads, new_ids):
        out.append(text[len(head):] if text.startswith(head) else batch_decode(tokenizer, [list(new)])[0])
    return out


def batch_decode(tokenizer, sequences: Sequence[Sequence[int]]) -> list[str]:
    """Decode with special tokens kept and no clean-up; straight into the Rust tokenizer when there
    is one (the stop check runs every step, and transformers' wrapper costs as much as the decode)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch([list(s) for s in sequences], skip_special_tokens=False)
    return tokenizer.batch_decode(sequences, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class HFEngine:
    """Batched generation with transformers' `generate`."""

    name = "hf"

    def __init__(self, model, tokenizer, eos_ids: Sequence[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = list(dict.fromkeys(int(i) for i in eos_ids))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.device = next(model.parameters()).device
        self.model_max = getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def load(cls, model_path: str | Path, tokenizer_path: str | Path | None = None, dtype: str = "bf16",
             device: Optional[str] = None, attn_implementation: str = "sdpa", trust_remote_code: bool = False,
             eos_strings: Sequence[str] = ()) -> "HFEngine":
        import torch
        from transformers import AutoModelForCausalLM

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu":
            cpu_threads()
        torch_dtype = getattr(torch, DTYPES["fp32" if device == "cpu" else dtype])
        tokenizer = load_tokenizer(tokenizer_path or model_path, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=torch_dtype, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, device_map=None if device == "cpu" else device,
        ).eval()
        return cls(model, tokenizer, eos_token_ids(tokenizer, model, eos_strings))

    def encode(self, prompt: str) -> list[int]:
        # special tokens in the prompt text (<|im_start|>) are parsed as such; no BOS is added
        # unless the tokenizer adds one itself, as the reference harness does
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def generate(self, rows: Sequence[Row], finished: Optional[FinishedFn], settings: DecodeSettings) -> list[RowResult]:
        """Generate one batch of rows (the caller sorts and sizes the batches)."""
        import torch
        from transformers import GenerationConfig

        multiple = 64 if settings.static_cache else 8
        width = max(len(r.prompt_ids) for r in rows)
        width = -(-width // multiple) * multiple
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.prompt_ids)
            input_ids[i, width - n:] = torch.tensor(row.prompt_ids, dtype=torch.long)
            mask[i, width - n:] = 1
        max_new = max(r.budget for r in rows)
        if settings.static_cache:
            # fewer distinct cache shapes; rows still end at their own budgets (RowStopper)
            max_new = -(-max_new // multiple) * multiple
        stopper = RowStopper(self.tokenizer, width, [r.budget for r in rows], self.eos_ids, finished,
                             [r.prompt_ids[-4:] for r in rows])
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=not settings.greedy,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            num_return_sequences=1,
        )
        if not settings.greedy:
            config.temperature, config.top_p, config.top_k = settings.temperature, settings.top_p, 0
        if settings.static_cache:
            config.cache_implementation = "static"
        if not settings.compile:
            config.disable_compile = True
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                generation_config=config, stopping_criteria=[stopper])
        finished_rows = stopper.results()
        texts = decode_new_text(self.tokenizer, [r.prompt_ids for r in rows], [ids for ids, _ in finished_rows])
        return [RowResult(text, len(ids) + (finish == "eos"), finish)
                for text, (ids, finish) in zip(texts, finished_rows)]


def cpu_threads(environ: Optional[dict[str, str]] = None) -> int:
    """Match torch's CPU threads to the CPUs Slurm gave the task. Without cgroups (TaskPlugin=none)
    torch sees every core of the node, and oversubscribed threads run many times slower than one.
    OMP_NUM_THREADS, when set, is left to torch."""
    import torch

    env = os.environ if environ is None else environ
    granted = env.get("SLURM_CPUS_PER_TASK")
    if granted and not env.get("OMP_NUM_THREADS") and granted.isdigit():
        torch.set_num_threads(max(1, int(granted)))
    return torch.get_num_threads()


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def eos_token_ids(tokenizer, model, eos_strings: Sequence[str]) -> list[int]:
    """The tokenizer's eos, the model's generation-config eos, and each eos string that is a single
    token of this vocabulary (`<|im_end|>` in a ChatML fine-tune): the recipe's `eos` override."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for item in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]):
        if item is not None:
            ids.append(int(item))
    vocab = tokenizer.get_vocab()
    for text in eos_strings:
        if text in vocab:
            ids.append(int(vocab[text]))
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------------------------------------
# optional vLLM engine


class VLLMEngine:
    """vLLM backend (only when `vllm` is importable; not installed by mftlaunch). vLLM schedules
    and refills rows itself; stop strings and eos ids are passed per request."""

    name = "vllm"

    def __init__(self, model_path: str | Path, tokenizer_path: str | Path | None, dtype: str,
                 eos_strings: Sequence[str], trust_remote_code: bool = False):
        try:
            import vllm
        except ImportError:
            raise RuntimeError("backend: vllm needs the vllm package (pip install vllm); "
                               "or use backend: hf") from None
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model_path), tokenizer=str(tokenizer_path or model_path),
                            dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype],
                            trust_remote_code=trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = [i for i in [self.tokenizer.eos_token_id] if i is not None]
        vocab = self.tokenizer.get_vocab()
        self.eos_ids += [vocab[s] for s in eos_strings if s in vocab]
        try:
            self.model_max = self.llm.llm_engine.model_config.max_model_len
        except AttributeError:  # the attribute moved between vLLM versions
            self.model_max = None

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def generate_all(self, rows: Sequence[Row], stop: Sequence[str], settings: DecodeSettings) -> list[RowResult]:
        params = [self._vllm.SamplingParams(
            n=1, temperature=0.0 if settings.greedy else settings.temperature,
            top_p=1.0 if settings.greedy else settings.top_p, max_tokens=row.budget, stop=list(stop),
            stop_token_ids=self.eos_ids, include_stop_str_in_output=True, skip_special_tokens=False,
            seed=None if settings.greedy else settings.seed + i,
        ) for i, row in enumerate(rows)]
        prompts = [{"prompt_token_ids": row.prompt_ids} for row in rows]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for out in outputs:
            comp = out.outputs[0]
            reason = {"stop": "stop", "length": "length"}.get(comp.finish_reason, comp.finish_reason or "length")
            results.append(RowResult(comp.text, len(comp.token_ids), reason))
        return results


# ---------------------------------------------------------------------------------------------
# one benchmark


@dataclass
class Progress:
    """Finished rows of one element, saved atomically after each batch."""

    path: Path
    fingerprint: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> "Progress":
        if path.is_file():
            try:
                data = read_json(path)
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("fingerprint") == fingerprint:
                return cls(path, fingerprint, dict(data.get("rows", {})))
            print(f"mftlaunch: {path.name} was written with other settings/prompts; starting over", flush=True)
        return cls(path, fingerprint)

    def save(self) -> None:
        atomic_write_json(self.path, {"fingerprint": self.fingerprint, "rows": self.rows})


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    """Longest prompt first (OOM shows in the first batch); ties in problem/sample order."""
    return sorted(rows, key=lambda r: (-len(r.prompt_ids), r.problem, r.sample))


def batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


def _fingerprint(model_id: str, benchmark: str, prompts: Sequence[str], stop: Sequence[str],
                 eos_ids: Sequence[int], settings: DecodeSettings, dtype: str) -> str:
    blob = json.dumps({"v": PROGRESS_VERSION, "model": model_id, "benchmark": benchmark, "prompts": list(prompts),
                       "stop": list(stop), "eos_ids": list(eos_ids), "settings": settings.fingerprint(),
                       "dtype": dtype}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def generate_benchmark(
    engine: Any,
    benchmark: str,
    problems: Sequence[dict[str, Any]],
    indices: Sequence[int],
    fmt: pr.PromptFormat,
    settings: DecodeSettings,
    out_dir: Path,
    model_name: str,
    model_id: str = "",
    dtype: str = "fp32",
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = lambda msg: print(msg, flush=True),
) -> dict[str, Any]:
    """Generate problems `indices` of `problems` and write the generations file and sidecar.

    Resumes from the partial-progress file; when `should_stop()` turns true between batches,
    saves and raises RequeueRequested. Returns the counts for the completion sentinel."""
    out_dir = Path(out_dir)
    final = out_dir / generations_name(benchmark, model_name)
    sidecar = out_dir / sidecar_filename(benchmark, model_name)
    extra_eos = [engine.tokenizer.eos_token] if getattr(engine.tokenizer, "eos_token", None) else []
    stop = pr.generation_stop_strings(benchmark, fmt, extra_eos)
    prompts = [pr.build_prompt(benchmark, problems[i], fmt) for i in indices]
    fingerprint = _fingerprint(model_id, benchmark, prompts, stop, engine.eos_ids, settings, dtype)

    if final.is_file() and sidecar.is_file():
        meta = read_json(sidecar)
        if meta.get("fingerprint") == fingerprint:
            log(f"mftlaunch: {final.name} is complete already; nothing to generate")
            return meta["counts"]

    progress = Progress.load(out_dir / partial_filename(benchmark, model_name), fingerprint)
    rows: list[Row] = []
    prompt_tokens: dict[int, int] = {}
    for i, prompt in zip(indices, prompts):
        ids = engine.encode(prompt)
        prompt_tokens[i] = len(ids)
        for sample in range(settings.n_samples):
            rows.append(Row(i, sample, ids, token_budget(len(ids), settings, engine.model_max)))
    overlong = [r for r in rows if r.budget <= 0]
    for row in overlong:
        progress.rows.setdefault(row.key, asdict(RowResult("", 0, "prompt_too_long")))
    if overlong:
        log(f"mftlaunch: WARNING {len({r.problem for r in overlong})} prompt(s) of {benchmark} leave no room "
            f"to generate (max_length {settings.max_length}, model limit {engine.model_max}); their "
            "completions are empty and reported as prompt_too_long")
    todo = sort_rows(r for r in rows if r.key not in progress.rows)
    if len(todo) < len(rows):
        log(f"mftlaunch: resuming {benchmark}: {len(rows) - len(todo)} of {len(rows)} rows already done")

    def finished(text: str) -> bool:
        return pp.is_finished(benchmark, fmt, text, extra_eos)

    started = time.time()
    new_tokens = 0
    if todo and isinstance(engine, VLLMEngine):
        for row, res in zip(todo, engine.generate_all(todo, stop, settings)):
            progress.rows[row.key] = asdict(res)
            new_tokens += res.new_tokens
        progress.save()
        todo = []
    for number, batch in enumerate(batches(todo, settings.batch_size)):
        if not settings.greedy:
            import torch

            torch.manual_seed(settings.seed * 1_000_003 + batch[0].problem * 1009 + batch[0].sample)
        for row, res in zip(batch, engine.generate(batch, finished, settings)):
            progress.rows[row.key] = asdict(res)
            new_tokens += res.new_tokens
        progress.save()
        done = sum(1 for r in rows if r.key in progress.rows)
        elapsed = time.time() - started
        log(f"mftlaunch: {benchmark} batch {number + 1}: {done}/{len(rows)} rows, "
            f"{new_tokens / max(elapsed, 1e-9):.1f} new tok/s")
        if done < len(rows) and should_stop():
            raise RequeueRequested(f"generate {benchmark}: saved {done}/{len(rows)} rows")
    elapsed = time.time() - started

    generations, raw = [], []
    for i, prompt in zip(indices, prompts):
        samples = [progress.rows[f"{i}:{s}"] for s in range(settings.n_samples)]
        generations.append([pp.postprocess(benchmark, problems[i], s["completion"], fmt, extra_eos) for s in samples])
        raw.append({
            "index": i,
            "task_id": problems[i].get("task_id"),
            "prompt": prompt,
            "prompt_tokens": prompt_tokens[i],
            "completions": [s["completion"] for s in samples],
            "new_tokens": [s["new_tokens"] for s in samples],
            "finish": [s["finish"] for s in samples],
        })
    total_tokens = sum(sum(r["new_tokens"]) for r in raw)
    counts = {
        "benchmark": benchmark,
        "problems": len(indices),
        "samples": len(indices) * settings.n_samples,
        "generated_tokens": total_tokens,
        "prompt_too_long": len({r.problem for r in overlong}),  # problems (all their samples are empty)
        "seconds_this_attempt": round(elapsed, 3),
        "new_tokens_per_s_this_attempt": round(new_tokens / elapsed, 2) if elapsed > 0 else None,
    }
    atomic_write_json(sidecar, {
        "benchmark": benchmark, "model_name": model_name, "model": model_id, "backend": engine.name,
        "prompt_format": asdict(fmt), "stop": stop, "eos_ids": engine.eos_ids, "dtype": dtype,
        "settings": asdict(settings), "fingerprint": fingerprint, "counts": counts,
        "model_generation_config": _model_generation_config(engine), "problems": raw,
    })
    atomic_write_json(final, generations)
    progress.path.unlink(missing_ok=True)
    return counts


def _model_generation_config(engine: Any) -> dict[str, Any]:
    config = getattr(getattr(engine, "model", None), "generation_config", None)
    try:
        return json.loads(config.to_json_string(use_diff=True)) if config is not None else {}
    except (AttributeError, TypeError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------
# entry points


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def pick_model(recipe: Any, run: Any) -> tuple[Path, Path]:
    """(model dir, tokenizer dir) of the generate stage: stages.generate.model_path, else the
    merged model when the recipe merges, else model.path; the tokenizer comes from the model dir
    when it has one, else model.tokenizer_path."""
    stage = recipe.stages.generate
    if stage.model_path:
        model = resolve_model_path(stage.model_path)
    elif recipe.stages.merge is not None:
        model = Path(run.merged_dir)
    else:
        model = resolve_model_path(recipe.model.path)
    tokenizer = model
    if not _has_tokenizer(model):
        for candidate in (recipe.model.tokenizer_path, recipe.model.path):
            if candidate and _has_tokenizer(resolve_model_path(candidate)):
                tokenizer = resolve_model_path(candidate)
                break
    return model, tokenizer


def settings_from_stage(stage: Any, environ: Optional[dict[str, str]] = None) -> DecodeSettings:
    env = os.environ if environ is None else environ
    static = stage.static_cache or env.get("MFTLAUNCH_GEN_STATIC_CACHE", "") == "1"
    compiled = stage.compile or env.get("MFTLAUNCH_GEN_COMPILE", "") == "1"
    return DecodeSettings(
        greedy=stage.greedy, n_samples=stage.n_samples, temperature=stage.temperature, top_p=stage.top_p,
        max_length=stage.max_length, max_new_tokens=stage.max_new_tokens, batch_size=stage.batch_size,
        static_cache=static or compiled, compile=compiled,
    )


def make_engine(backend: str, model: Path, tokenizer: Path, model_spec: Any, fmt: pr.PromptFormat,
                device: Optional[str] = None) -> Any:
    eos = pr.eos_strings(fmt)
    if backend == "vllm":
        return VLLMEngine(model, tokenizer, model_spec.dtype, eos, model_spec.trust_remote_code)
    return HFEngine.load(model, tokenizer, model_spec.dtype, device, model_spec.attn_implementation,
                         model_spec.trust_remote_code, eos)


def effective_dtype(engine: Any, requested: str) -> str:
    """What the engine really runs: CPU is always fp32."""
    device = getattr(engine, "device", None)
    return "fp32" if device is not None and device.type == "cpu" else requested


def run(ctx: Any) -> dict[str, Any]:
    """Generate the plan item's benchmark (or shard) into `run.generate_dir(item key)`."""
    recipe, stage, item = ctx.recipe, ctx.recipe.stages.generate, ctx.item
    if ctx.dist.world_size > 1 and not ctx.dist.is_main:
        print(f"mftlaunch: generate runs on rank 0 only; rank {ctx.dist.rank} has nothing to do", flush=True)
        return {}
    benchmark = item["benchmark"]
    shard, num_shards = int(item.get("shard", 0)), int(item.get("num_shards", 1))
    data_dir = ctx.data_dir or recipe.data_dir or os.environ.get("MFTLAUNCH_DATA_DIR")
    data = load_benchmark(benchmark, data_dir, recipe.limit)
    indices = list(shard_range(len(data.problems), shard, num_shards))
    fmt = pr.PromptFormat.from_stage(stage)
    model, tokenizer = pick_model(recipe, ctx.run)
    engine = make_engine(stage.backend, model, tokenizer, recipe.model, fmt)
    counts = generate_benchmark(
        engine, benchmark, data.problems, indices, fmt, settings_from_stage(stage),
        ctx.run.generate_dir(item["key"]), recipe.model.model_name, model_id=str(model),
        dtype=effective_dtype(engine, recipe.model.dtype),
        should_stop=ctx.should_stop,
    )
    return {**counts, "shard": shard, "num_shards": num_shards, "data_sha256": data.sha256}


def generate_standalone(
    model: str,
    benchmarks: Sequence[str] | str,
    out_dir: str | Path,
    *,
    model_name: Optional[str] = None,
    data_dir: Optional[str] = None,
    limit: Optional[int] = None,
    prompt_format: str = "competition",
    prefix: str = "",
    suffix: str = "",
    system: str = "",
    eos: Sequence[str] = (),
    max_length: int = 2048,
    max_new_tokens: Optional[int] = None,
    batch_size: int = 16,
    n_samples: int = 1,
    greedy: bool = True,
    temperature: float = 0.2,
    top_p: float = 0.95,
    seed: int = 0,
    dtype: str = "bf16",
    device: Optional[str] = None,
    tokenizer: Optional[str] = None,
    backend: str = "hf",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    static_cache: bool = False,
    compile: bool = False,
    shard: int = 0,
    num_shards: int = 1,
) -> dict[str, dict[str, Any]]:
    """`mftlaunch generate`: generations for `benchmarks` into `out_dir` (the files are named as
    in a run directory), loading the model once. Returns {benchmark: counts}."""
    from jobs.benchmarks import suite

    names = suite.expand([benchmarks] if isinstance(benchmarks, str) else list(benchmarks))
    model_dir = resolve_model_path(model)
    tok_dir = resolve_model_path(tokenizer) if tokenizer else model_dir
    name = model_name or (model[len("builtin:"):] if model.startswith("builtin:") else model_dir.name)
    fmt = pr.PromptFormat(name=prompt_format, prefix=prefix, suffix=suffix, system=system, eos=tuple(eos))
    settings = DecodeSettings(greedy=greedy, n_samples=n_samples, temperature=temperature, top_p=top_p,
                              max_length=max_length, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              seed=seed, static_cache=static_cache or compile, compile=compile)
    spec = type("Spec", (), {"dtype": dtype, "attn_implementation": attn_implementation,
                             "trust_remote_code": trust_remote_code})()
    engine = make_engine(backend, model_dir, tok_dir, spec, fmt, device)
    used_dtype = effective_dtype(engine, dtype)
    results = {}
    for benchmark in names:
        data = load_benchmark(benchmark, data_dir or os.environ.get("MFTLAUNCH_DATA_DIR"), limit)
        indices = list(shard_range(len(data.problems), shard, num_shards))
        results[benchmark] = generate_benchmark(engine, benchmark, data.problems, indices, fmt, settings,
                                                Path(out_dir), name, model_id=str(model_dir), dtype=used_dtype)
    return results


if __name__ == "__main__":  # pragma: no cover - convenience: python -m jobs.generate MODEL BENCH OUT
    print(json.dumps(generate_standalone(sys.argv[1], sys.argv[2].split(","), sys.argv[3]), indent=2))
