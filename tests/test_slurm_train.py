"""DeepSpeed ZeRO-3 LoRA across the two nodes of the real test cluster, through the launcher:
one rank per node (gloo), each holding about half of the partitioned parameters, the loss
falling over 30 steps, and the saved adapter reloading into a model with the trained outputs."""
from __future__ import annotations

import pytest
import yaml

from jobs.training import checkpoint
from test_slurm_pipeline import run_log, submit, wait_final
from test_train_resume import tb_scalars
from test_train_zero3 import STEPS, base_plus_adapter, validation_loss, zero3_recipe

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_zero3_lora_across_two_slurm_nodes(slurm, tmp_path, capsys):
    recipe = zero3_recipe()
    data = recipe.model_dump(mode="json", exclude_none=True)
    data["output_root"] = str(tmp_path / "runs")
    data["stages"] = {"train": data["stages"]["train"]}
    data["stages"]["train"]["resources"].update({"cpus_per_task": 1, "time": "00:20:00"})
    path = tmp_path / "zero3.yaml"
    path.write_text(yaml.safe_dump(data))
    run_dir = submit(path, capsys)
    rows = wait_final(run_dir, timeout=900)
    log = run_log(run_dir)
    assert rows[0]["state"] == "COMPLETED" and rows[0]["done"], log[-4000:]

    done = run_dir.done_record("train", 0)
    assert done["steps"] == STEPS
    per_rank, total = done["params_per_rank"], done["params_total"]
    assert len(per_rank) == 2 and all(0.45 * total <= n <= 0.55 * total for n in per_rank), done
    # one rank on each of the two nodes
    assert "rank 0/2" in log
    assert rows[0]["node"] == "mft-n[1-2]", rows[0]

    loss = tb_scalars(run_dir.tensorboard_dir, "train/loss")
    head = sum(loss[s] for s in range(1, 6)) / 5
    tail = sum(loss[s] for s in range(STEPS - 4, STEPS + 1)) / 5
    assert tail < head - 0.2, (head, tail)

    reloaded = base_plus_adapter(recipe, checkpoint.step_dir(run_dir.checkpoints_dir, STEPS) / "adapter")
    assert validation_loss(reloaded, run_dir, recipe, world_size=2) == pytest.approx(done["eval_loss"], abs=1e-5)
