"""The default engine: batched generation with transformers' `generate`.

Rows of a batch are left-padded with an attention mask; HF derives position ids from the mask, so
a batched greedy row equals the same prompt generated alone (tests/test_generate.py checks it).
Each row stops on its own (`RowStopper`): at an eos token (the tokenizer's, the model's generation
config's, and every eos string of the format and the recipe's `eos:` that is one token), at its
token budget, or once its new text is finished by `jobs.code_benchmarks.postprocess.is_finished` —
which by construction never changes the post-processed program.

Decoding parameters the recipe does not set (e.g. `repetition_penalty`) come from the model's own
generation_config.json, as they do in the reference harness's `generate` call. GPU runs in the
recipe's precision; CPU always runs fp32.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from jobs.generation.engine import StopRule
from jobs.generation.rows import FinishedFn, Row, RowResult
from jobs.generation.settings import DTYPES, DecodeSettings, row_seed
from jobs.generation.text import IncrementalText, decode_new_text


class RowStopper:
    """Per-row stopping for HF `generate` (a `StoppingCriteria`): a row is done at an eos token,
    at its own token budget, or when `finished(new_text)` holds. Records why and where, so the
    caller cuts each row at its own end (HF pads finished rows until the whole batch ends)."""

    def __init__(self, tokenizer: Any, budgets: Sequence[int], eos_ids: Iterable[int],
                 finished: Optional[FinishedFn], context_ids: Sequence[Sequence[int]]):
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
        """(new token ids without the eos token, finish reason) of each row."""
        return [(ids, finish or "length") for ids, finish in zip(self.generated, self.finish)]


class HFEngine:
    """Batched generation with transformers' `generate` (a `GenerationEngine`)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, eos_ids: Sequence[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = list(dict.fromkeys(int(i) for i in eos_ids))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.device = next(model.parameters()).device
        self.model_max = getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def load(cls, model_path: str | Path, tokenizer_path: str | Path | None = None, dtype: str = "bf16",
             device: Optional[str] = None, attn_implementation: str = "sdpa", trust_remote_code: bool = False,
             eos_strings: Sequence[str] = (), split_memory: Optional[dict[Any, int]] = None) -> "HFEngine":
        """Load the model on `device`, or across the devices of `split_memory` (accelerate's
        max_memory: a cap per device; the model is placed by `device_map="auto"` within them)."""
        import torch
        from transformers import AutoModelForCausalLM

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if split_memory:
            device = "split"
        if device == "cpu":
            cpu_threads()
        torch_dtype = getattr(torch, DTYPES["fp32" if device == "cpu" else dtype])
        tokenizer = load_tokenizer(tokenizer_path or model_path, trust_remote_code)
        placement: dict[str, Any] = {"device_map": None if device == "cpu" else device}
        if split_memory:
            placement = {"device_map": "auto", "max_memory": split_memory}
        model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=torch_dtype, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, **placement,
        ).eval()
        if split_memory:
            outside = set(getattr(model, "hf_device_map", {}).values()) - set(split_memory)
            if outside:
                raise RuntimeError(
                    f"{model_path} does not fit the devices it is split over ({sorted(split_memory, key=str)}, "
                    f"capped at {sorted(split_memory.values())} bytes): accelerate put part of it on "
                    f"{sorted(map(str, outside))}; use more GPUs (resources.gpus_per_node) or a smaller model")
        return cls(model, tokenizer, eos_token_ids(tokenizer, model, eos_strings))

    def encode(self, prompt: str) -> list[int]:
        # special tokens in the prompt text (<|im_start|>) are parsed as such; no BOS is added
        # unless the tokenizer adds one itself, as the reference harness does
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def batch_rows(self, settings: DecodeSettings) -> Optional[int]:
        return settings.batch_size

    def dtype_used(self, requested: str) -> str:
        return "fp32" if self.device.type == "cpu" else requested

    def generation_config(self) -> dict[str, Any]:
        config = getattr(self.model, "generation_config", None)
        try:
            return json.loads(config.to_json_string(use_diff=True)) if config is not None else {}
        except (AttributeError, TypeError, ValueError):
            return {}

    def generate(self, rows: Sequence[Row], stop: Optional[StopRule], settings: DecodeSettings) -> list[RowResult]:
        """Generate one batch of rows (the caller sorts and sizes the batches). A sampled batch is
        seeded from its first row, so the same batch gives the same text in any run."""
        import torch
        from transformers import GenerationConfig

        finished = stop.finished if stop is not None else None
        if not settings.greedy:
            torch.manual_seed(row_seed(settings, rows[0]))

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
        stopper = RowStopper(self.tokenizer, [r.budget for r in rows], self.eos_ids, finished,
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


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer, padding on the left (batched decoding continues every row at the right end)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def eos_token_ids(tokenizer: Any, model: Any, eos_strings: Sequence[str]) -> list[int]:
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
