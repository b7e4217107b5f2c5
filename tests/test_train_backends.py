"""Gradient accumulation, clipping and the lr schedule count the same on every backend: the same
recipe on DeepSpeed (ZeRO-2, one rank) and on plain torch gives the same losses and lr curve."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs import train
from local_ranks import prepare_run_dir, start_ranks
from launcher.rundir import RunDir
from test_train_resume import context, tb_scalars, tiny_recipe
from test_train_zero3 import free_port


@pytest.mark.slow
def test_deepspeed_and_torch_engines_agree(tmp_path: Path) -> None:
    fields = dict(max_steps=6, gradient_accumulation_steps=3, learning_rate=3e-3, evaluation_steps=6,
                  lora={"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
                  distributed={"gradient_clipping": 0.5, "backend": "none", "zero_stage": 0, "mixed_precision": "no"})
    torch_result = train.run_stage(context(tmp_path / "torch", tiny_recipe(**fields)))

    fields["distributed"] = {**fields["distributed"], "backend": "deepspeed", "zero_stage": 2}
    run_dir = prepare_run_dir(tmp_path / "ds", tiny_recipe(**fields))
    assert start_ranks(run_dir, 1, free_port(), log_dir=tmp_path).wait(timeout_s=300) == [0], \
        (tmp_path / "train-rank0-attempt0.log").read_text()[-3000:]

    for tag in ("train/loss", "train/lr", "train/grad_norm"):
        ours = tb_scalars(RunDir(tmp_path / "torch").tensorboard_dir, tag)
        theirs = tb_scalars(run_dir.tensorboard_dir, tag)
        assert sorted(ours) == sorted(theirs) == list(range(1, 7)), tag
        assert [theirs[s] for s in range(1, 7)] == pytest.approx([ours[s] for s in range(1, 7)], rel=1e-4, abs=1e-6), tag
    assert run_dir.done_record("train", 0)["eval_loss"] == pytest.approx(torch_result["eval_loss"], abs=1e-5)
