"""Which model and tokenizer the generate stage uses, and which engine loads them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from jobs.code_benchmarks import prompts as pr
from jobs.generation.devices import DevicePlan, gpu_totals, split_memory, visible_gpus
from jobs.generation.engine import GenerationEngine
from jobs.generation.hf_engine import HFEngine
from jobs.generation.vllm_engine import VLLMEngine
from jobs.tiny_model import resolve_model_path

#: Any of these in a directory means it holds a tokenizer (a merged LoRA model may not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def pick_model(location: str, spec: Any) -> tuple[Path, Path]:
    """(model dir, tokenizer dir) of one model of the run (`jobs.run_models.model_location`); the
    tokenizer comes from the model dir when it has one, else the spec's tokenizer_path or path."""
    model = resolve_model_path(location)
    tokenizer = model
    if not _has_tokenizer(model):
        for candidate in (spec.tokenizer_path, spec.path):
            if candidate and _has_tokenizer(resolve_model_path(candidate)):
                tokenizer = resolve_model_path(candidate)
                break
    return model, tokenizer


def make_engine(backend: str, model: Path, tokenizer: Path, model_spec: Any, fmt: pr.PromptFormat,
                device: Optional[str] = None, devices: Optional[DevicePlan] = None) -> GenerationEngine:
    """The engine of `backend` ("hf" or "vllm"); `model_spec` holds dtype, attn_implementation
    and trust_remote_code (the recipe's `model:` section). `devices` (a rank's `DevicePlan`)
    decides the device or the split; without it, `device` or the engine's default."""
    eos = pr.eos_strings(fmt)
    if devices is not None and not devices.is_split:
        device = devices.device
    if backend == "vllm":
        if device and device.startswith("cuda:") and visible_gpus() > 1:
            # vLLM runs on the first visible GPU: show this rank only its own
            os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        return VLLMEngine(model, tokenizer, model_spec.dtype, eos, model_spec.trust_remote_code,
                          tensor_parallel_size=devices.split_over if devices else 1)
    caps = split_memory(gpu_totals(devices.split_over)) if devices is not None and devices.is_split else None
    return HFEngine.load(model, tokenizer, model_spec.dtype, device, model_spec.attn_implementation,
                         model_spec.trust_remote_code, eos, split_memory=caps)

