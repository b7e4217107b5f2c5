"""The optional vLLM backend (`backend: vllm`; vllm is not installed by mftlaunch)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from jobs.generation.engine import StopRule
from jobs.generation.rows import Row, RowResult
from jobs.generation.settings import DTYPES, DecodeSettings, row_seed


class VLLMEngine:
    """A `GenerationEngine`. vLLM schedules and refills rows itself, so it takes all rows at once
    (`batch_rows` is None); stop strings and eos ids are passed per request instead of a per-step
    stop check."""

    name = "vllm"

    def __init__(self, model_path: str | Path, tokenizer_path: str | Path | None, dtype: str,
                 eos_strings: Sequence[str], trust_remote_code: bool = False, tensor_parallel_size: int = 1):
        try:
            import vllm
        except ImportError:
            raise RuntimeError("backend: vllm needs the vllm package (pip install vllm); "
                               "or use backend: hf") from None
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model_path), tokenizer=str(tokenizer_path or model_path),
                            dtype=DTYPES[dtype], trust_remote_code=trust_remote_code,
                            tensor_parallel_size=tensor_parallel_size)
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

    def batch_rows(self, settings: DecodeSettings) -> Optional[int]:
        return None

    def dtype_used(self, requested: str) -> str:
        return requested

    def generation_config(self) -> dict[str, Any]:
        return {}

    def generate(self, rows: Sequence[Row], stop: Optional[StopRule], settings: DecodeSettings) -> list[RowResult]:
        params = [self._vllm.SamplingParams(
            n=1, temperature=0.0 if settings.greedy else settings.temperature,
            top_p=1.0 if settings.greedy else settings.top_p, max_tokens=row.budget,
            stop=list(stop.strings) if stop is not None else [],
            stop_token_ids=self.eos_ids, include_stop_str_in_output=True, skip_special_tokens=False,
            seed=None if settings.greedy else row_seed(settings, row),
        ) for row in rows]
        prompts = [{"prompt_token_ids": row.prompt_ids} for row in rows]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for out in outputs:
            comp = out.outputs[0]
            results.append(RowResult(comp.text, len(comp.token_ids), comp.finish_reason or "length"))
        return results
