"""Decoding settings and the length rule, shared by every engine."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional
from launcher.contract import ENV_GEN_COMPILE, ENV_GEN_STATIC_CACHE

#: Recipe precision names to torch dtype names.
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass
class DecodeSettings:
    """How to decode; mirrors `launcher.recipe.GenerateStage` plus the GPU speed levers.

    `static_cache` (HF static KV cache, prompts padded to a multiple of 64 so few shapes occur) and
    `compile` (torch.compile of the decode step, needs the static cache) are off by default: they
    pay off on GPU only."""

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


def settings_from_stage(stage: Any, environ: Optional[dict[str, str]] = None) -> DecodeSettings:
    """Settings of a recipe's generate stage. MFTLAUNCH_GEN_STATIC_CACHE=1 and
    MFTLAUNCH_GEN_COMPILE=1 turn the speed levers on for plan items without editing the recipe."""
    env = os.environ if environ is None else environ
    static = stage.static_cache or env.get(ENV_GEN_STATIC_CACHE, "") == "1"
    compiled = stage.compile or env.get(ENV_GEN_COMPILE, "") == "1"
    return DecodeSettings(
        greedy=stage.greedy, n_samples=stage.n_samples, temperature=stage.temperature, top_p=stage.top_p,
        max_length=stage.max_length, max_new_tokens=stage.max_new_tokens, batch_size=stage.batch_size,
        static_cache=static or compiled, compile=compiled,
    )


def token_budget(prompt_tokens: int, settings: DecodeSettings, model_max: Optional[int]) -> int:
    """New tokens a row may generate; <= 0 means the prompt leaves no room.

    As the reference harness counts, `max_length` is prompt + generation tokens; `max_new_tokens`,
    when set, wins. Either is also capped by the model's own limit (`model_max`), so a long prompt
    never runs past the position embeddings."""
    if settings.max_new_tokens is not None:
        budget = settings.max_new_tokens
    else:
        budget = settings.max_length - prompt_tokens
    if model_max:
        budget = min(budget, model_max - prompt_tokens)
    return budget


def row_seed(settings: DecodeSettings, row: Any) -> int:
    """The sampling seed of a row (or of a batch, by its first row): fixed by the row's problem and
    sample, so neither the rank that generates it nor a resume changes it."""
    return settings.seed * 1_000_003 + row.problem * 1009 + row.sample
