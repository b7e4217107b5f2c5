"""Merge stage: the trained checkpoint → a plain Hugging Face model directory at run.merged_dir.

LoRA/QLoRA: the adapter is merged into an unquantised base in model.dtype (what generation loads).
For QLoRA that base is, by default (`merge.qlora_base: dequantized`), the 4-bit base of training
dequantised: the adapter was learned against those weights, so the merged model computes what was
trained and validated. `qlora_base: original` merges into the original full-precision weights
(MFTCoder's way); the merged model then differs from the trained one by the quantisation error. Full fine-tuning: the checkpoint's
weights — DeepSpeed ZeRO shards consolidated to fp32 with DeepSpeed's own reader, or the plain
weights file of the torch engine — are loaded into the base architecture and saved in
model.dtype. The tokenizer is saved with the model, so the directory stands alone.

Which checkpoint: `merge.checkpoint: best` takes the lowest validation loss when evaluation ran
(the trainer keeps that checkpoint from pruning), else the last. In a sweep
(`merge.checkpoints`) each array element merges the checkpoint of its plan model (a step, best
or last) into merged/<model>/ (the trainer keeps the selected steps from pruning too). The output
appears atomically: written to a temporary directory, then renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from jobs.context import StageContext

INFO_FILE = "mftlaunch_merge.json"


def choose_checkpoint(checkpoints_dir: Path, which: str | int) -> tuple[Path, str]:
    """(checkpoint directory, why it was chosen); `which` is best, last or a step."""
    from jobs.training import checkpoint

    last = checkpoint.latest(checkpoints_dir)
    if last is None:
        raise FileNotFoundError(f"no complete checkpoint in {checkpoints_dir}: did the train stage finish?")
    if isinstance(which, int):
        chosen = checkpoint.step_dir(checkpoints_dir, which)
        if not (chosen / checkpoint.STATE_FILE).is_file():
            final = checkpoint.read_state(last)
            why = " (training stopped early)" if final.stopped_early else ""
            raise FileNotFoundError(f"checkpoint step {which} was never saved or is gone{why}; saved steps: "
                                    f"{checkpoint.saved_steps(checkpoints_dir)}")
        return chosen, f"step {which} (merge.checkpoints)"
    state = checkpoint.read_state(last)
    if which == "last":
        return last, "last (merge.checkpoint: last)"
    if state.best_step is None:
        return last, "last (no validation loss was recorded)"
    best = checkpoint.step_dir(checkpoints_dir, state.best_step)
    if not (best / checkpoint.STATE_FILE).is_file():
        return last, f"last (the best checkpoint, step {state.best_step}, is gone)"
    return best, f"best (validation loss {state.best_loss:.4f} at step {state.best_step})"


def full_state_dict(ckpt: Path) -> dict[str, Any]:
    """All weights of a full fine-tune checkpoint, as the trained module named them."""
    import torch
    from jobs.training.engine import ENGINE_TAG, TRAINABLE_FILE

    if (ckpt / TRAINABLE_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(ckpt / TRAINABLE_FILE))
    engine_dir = ckpt / ENGINE_TAG
    if any(engine_dir.glob("*optim_states.pt")) and any(engine_dir.glob("zero_pp_rank_*")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=ENGINE_TAG)
    states = sorted(engine_dir.glob("mp_rank_*_model_states.pt"))
    if not states:
        raise FileNotFoundError(f"{ckpt} holds neither {TRAINABLE_FILE} nor a DeepSpeed checkpoint '{ENGINE_TAG}'")
    return torch.load(states[0], map_location="cpu", weights_only=False)["module"]


def qlora_base_choice(ctx: StageContext) -> str:
    """`merge.qlora_base` for a QLoRA run, else "original" (LoRA and full fine-tunes have one base)."""
    merge_stage = ctx.recipe.stages.merge
    if ctx.recipe.stages.train.peft_type != "qlora":
        return "original"
    return merge_stage.qlora_base if merge_stage else "dequantized"


def load_base(ctx: StageContext):
    """The base weights the adapter is merged into, unquantised, in model.dtype, on CPU. For QLoRA
    with `qlora_base: dequantized`: the base quantised exactly as in training (same
    BitsAndBytesConfig), then dequantised, so the merged model is the one that was trained."""
    from transformers import AutoModelForCausalLM

    from jobs.tiny_model import resolve_model_path
    from jobs.training.model import TORCH_DTYPES, keep_cpu_weight_layout, quantization_config, storage_dtype

    spec, train = ctx.recipe.model, ctx.recipe.stages.train
    path, dtype = str(resolve_model_path(spec.path)), TORCH_DTYPES[spec.dtype]
    if qlora_base_choice(ctx) != "dequantized":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=spec.trust_remote_code)
    quantised = AutoModelForCausalLM.from_pretrained(
        path, dtype=storage_dtype(spec, train), quantization_config=quantization_config(spec, train),
        device_map={"": "cpu"}, trust_remote_code=spec.trust_remote_code,
    )
    keep_cpu_weight_layout(quantised)
    return quantised.dequantize().to(dtype)


def load_merged(ctx: StageContext, ckpt: Path):
    """The merged model (base architecture + trained weights) in model.dtype, on CPU."""
    from jobs.training.trainer import ADAPTER_DIR

    train = ctx.recipe.stages.train
    base = load_base(ctx)
    if train.is_peft:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(ckpt / ADAPTER_DIR)).merge_and_unload()
    weights = full_state_dict(ckpt)
    missing, unexpected = base.load_state_dict(weights, strict=False)
    tied = set(getattr(base, "all_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"checkpoint {ckpt} does not match the base model: missing {sorted(set(missing) - tied)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    if missing:
        base.tie_weights()
    return base


def run_stage(ctx: StageContext) -> dict[str, Any]:
    """Merge on rank 0 (the stage runs one task; extra ranks have nothing to do)."""
    if not ctx.dist.is_main:
        return {}
    from jobs.training import checkpoint
    from jobs.tiny_model import resolve_model_path
    from jobs.training.model import load_tokenizer

    from jobs import run_models

    entry = run_models.plan_model(ctx.plan, ctx.item["model"]) if "model" in ctx.item \
        else run_models.plan_models(ctx.plan, ctx.recipe)[0]
    which = entry["step"] if entry.get("step") is not None else (entry.get("selector") or "best")
    ckpt, reason = choose_checkpoint(ctx.run_dir.checkpoints_dir, which)
    step = checkpoint.read_state(ckpt).step
    print(f"[merge] {entry['name']} <- {ckpt.name}: {reason}; base: {qlora_base_choice(ctx)}", flush=True)
    model = load_merged(ctx, ckpt)
    tokenizer = load_tokenizer(ctx.recipe.model, resolve_model_path(ctx.recipe.model.path))

    out = Path(run_models.model_location(ctx.run_dir, ctx.recipe, entry))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.config.use_cache = True
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        info = {"checkpoint": str(ckpt), "step": step, "selection": reason, "peft_type": ctx.recipe.stages.train.peft_type,
                "base": qlora_base_choice(ctx)}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"[merge] wrote {out}", flush=True)
    return {"model": entry["name"], "merged_dir": str(out), "checkpoint": ckpt.name, "step": step,
            "selection": reason.split(" ")[0]}


def _replace(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an older `out` (a rerun) is moved aside first, then deleted."""
    if out.exists():
        old = out.with_name(f".old-{out.name}-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
