"""Merge stage: adapter + base → plain HF directory; full fine-tunes (torch weights or ZeRO-3
shards) → the same; checkpoint choice (best / last); atomic output."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from jobs import merge, train
from jobs.context import StageContext
from jobs.training import checkpoint
from jobs.training.checkpoint import TrainerState
from local_ranks import prepare_run_dir, start_ranks
from launcher.recipe import Recipe
from launcher.rundir import RunDir
from test_train_resume import context, tiny_recipe
from test_train_zero3 import base_plus_adapter, free_port, validation_loss


def with_merge(recipe: Recipe, which: str = "best") -> Recipe:
    data = recipe.model_dump(mode="json")
    data["stages"]["merge"] = {"checkpoint": which}
    return Recipe.model_validate(data)


def merge_context(root: Path, recipe: Recipe) -> StageContext:
    ctx = context(root, recipe)
    ctx.stage, ctx.item = "merge", {"key": "merge"}
    return ctx


def load(path: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def test_lora_merge_equals_base_plus_adapter(tmp_path: Path) -> None:
    recipe = with_merge(tiny_recipe(max_steps=6, evaluation_steps=2, checkpointing_steps=2, saving_limit=1))
    trained = train.run_stage(context(tmp_path, recipe))
    run_dir = RunDir(tmp_path)
    result = merge.run_stage(merge_context(tmp_path, recipe))
    assert result["checkpoint"] == f"step_{trained['best_step']}" and result["selection"] == "best"

    ids = torch.randint(8, 1024, (2, 24), generator=torch.Generator().manual_seed(0))
    merged = load(run_dir.merged_dir)
    reference = base_plus_adapter(recipe, run_dir.checkpoints_dir / result["checkpoint"] / "adapter").eval()
    with torch.no_grad():
        got, want = merged(ids).logits, reference(ids).logits
        base = load(reference.peft_config["default"].base_model_name_or_path)(ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert (got - base).abs().max() > 1e-3  # the adapter did change the model
    assert AutoTokenizer.from_pretrained(str(run_dir.merged_dir)).eos_token == "<|endoftext|>"

    # a second merge (the last checkpoint) replaces the directory in one rename, leaving nothing behind
    again = merge.run_stage(merge_context(tmp_path, with_merge(recipe, "last")))
    assert again["checkpoint"] == "step_6" and again["selection"] == "last"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_checkpoint_choice(tmp_path: Path) -> None:
    def save(step: int, best: int | None) -> None:
        state = TrainerState(step=step, best_step=best, best_loss=1.0 if best else None)
        checkpoint.save(tmp_path, state, lambda d: None, is_main=True, barrier=lambda: None, keep_last=None, protect=set())

    save(2, 2)
    save(4, 2)
    assert merge.choose_checkpoint(tmp_path, "best")[0].name == "step_2"
    assert merge.choose_checkpoint(tmp_path, "last")[0].name == "step_4"
    save(6, None)
    path, reason = merge.choose_checkpoint(tmp_path, "best")
    assert path.name == "step_6" and "no validation loss" in reason
    save(8, 7)  # best checkpoint missing
    assert merge.choose_checkpoint(tmp_path, "best")[0].name == "step_8"
    with pytest.raises(FileNotFoundError):
        merge.choose_checkpoint(tmp_path / "nothing", "best")


def test_full_finetune_merge_torch_engine(tmp_path: Path) -> None:
    recipe = with_merge(tiny_recipe(peft_type="full", max_steps=3, learning_rate=1e-3, evaluation_steps=3), "last")
    trained = train.run_stage(context(tmp_path, recipe))
    merge.run_stage(merge_context(tmp_path, recipe))
    merged = load(RunDir(tmp_path).merged_dir)
    assert validation_loss(merged, RunDir(tmp_path), recipe, world_size=1) == pytest.approx(trained["eval_loss"], abs=1e-5)


@pytest.mark.slow
def test_full_finetune_zero3_shards_are_consolidated(tmp_path: Path) -> None:
    data = tiny_recipe(peft_type="full", max_steps=3, learning_rate=1e-3, evaluation_steps=3,
                       distributed={"backend": "deepspeed", "zero_stage": 3, "mixed_precision": "no"}).model_dump(mode="json")
    data["stages"]["merge"] = {"checkpoint": "last"}
    recipe = Recipe.model_validate(data)
    run_dir = prepare_run_dir(tmp_path / "run", recipe)
    codes = start_ranks(run_dir, 1, free_port(), log_dir=tmp_path).wait(timeout_s=300)
    assert codes == [0], (tmp_path / "train-rank0-attempt0.log").read_text()[-3000:]
    last = checkpoint.latest(run_dir.checkpoints_dir)
    assert list((last / "engine").glob("zero_pp_rank_0_*optim_states.pt")) and not (last / "trainable.safetensors").exists()
    merge.run_stage(merge_context(run_dir.root, recipe))
    merged = load(run_dir.merged_dir)
    assert validation_loss(merged, run_dir, recipe, world_size=1) == pytest.approx(run_dir.done_record("train", 0)["eval_loss"], abs=1e-5)
