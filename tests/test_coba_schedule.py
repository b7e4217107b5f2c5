"""CoBa follows MFTCoder's schedule step by step: weights recomputed on the micro-batch that
synchronises gradients, validation records after optimizer steps iv+1, 2iv+1, ..., dataset
weights ignored; and a task absent from the validation records is given the mean weight."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs import train
from jobs.mft import losses
from jobs.mft.coba_schedule import record_batches, record_due, weights_due
from jobs.mft.losses import CobaBalancer
from jobs.training import trainer as trainer_module
from launcher.recipe import CobaSpec
from test_train_resume import context, tiny_recipe


def test_schedule_counter_by_counter():
    spec = CobaSpec(warmup_steps=3, update_interval=2, sample_valid_num=2)
    assert [c for c in range(10) if weights_due(c, spec)] == [4, 6, 8]
    # records after 1-based optimizer steps iv+1, 2iv+1, ...: counters 2, 4, 6, 8
    assert [c + 1 for c in range(10) if record_due(c, spec)] == [3, 5, 7, 9]
    assert [record_batches(c, spec, 5) for c in (2, 4, 6)] == [[2, 3], [4, 0], [1, 2]]
    every = CobaSpec(warmup_steps=0, update_interval=1)
    assert not record_due(0, every) and record_due(1, every)  # nothing is kept from before step 2


def test_the_trainer_drives_coba_on_mftcoders_schedule(tmp_path: Path, monkeypatch):
    """Gradient accumulation 2, update_interval 1, warmup 2, five optimizer steps."""
    events: list[tuple] = []
    real_loss, real_eval = trainer_module.Trainer._loss, trainer_module.Trainer.evaluate
    real_weights, real_init = CobaBalancer.step_weights, CobaBalancer.__init__

    def loss(self, batch, weights):
        if self.engine.module.training:
            events.append(("micro", self.state.step, [round(w, 6) for w in weights.tolist()]))
        return real_loss(self, batch, weights)

    def evaluate(self, batch_indices=None):
        events.append(("eval", self.state.step, batch_indices))
        return real_eval(self, batch_indices)

    def step_weights(self, step):
        events.append(("weights", step))
        return real_weights(self, step)

    def init(self, num_tasks, spec, base_weights=None):
        assert base_weights is None  # the dataset weights are not CoBa's starting point
        real_init(self, num_tasks, spec, base_weights)

    monkeypatch.setattr(trainer_module.Trainer, "_loss", loss)
    monkeypatch.setattr(trainer_module.Trainer, "evaluate", evaluate)
    monkeypatch.setattr(CobaBalancer, "step_weights", step_weights)
    monkeypatch.setattr(CobaBalancer, "__init__", init)
    recipe = tiny_recipe(max_steps=5, gradient_accumulation_steps=2, weighted_loss_mode="coba",
                         coba={"warmup_steps": 2, "history_length": 8, "update_interval": 1, "sample_valid_num": 2},
                         evaluation_steps=100, checkpointing_steps=100)
    train.run_stage(context(tmp_path, recipe))

    expected: list[tuple] = [("eval", 0, None)]  # the reference pass
    for c in range(5):
        expected += [("micro", c), ("weights", c), ("micro", c)]
        if c >= 1:  # records after 1-based optimizer steps 2, 3, 4, 5
            expected.append(("eval", c + 1, record_batches(c, recipe.stages.train.coba, 2)))
    expected.append(("eval", 5, None))  # the final validation
    got = [(e[0], e[1]) if e[0] != "eval" else e for e in events]
    assert got == expected
    # both validation batches (2 c, 2 c + 1 mod 2) each time: every task is in each record
    assert [e[2] for e in got if e[0] == "eval" and e[2]] == [[0, 1]] * 4
    micro = [e for e in events if e[0] == "micro"]
    uniform = [round(1 / 3, 6)] * 3
    # counter 3 is the first with two records (after steps 2 and 3): its first micro-batch still
    # has the uniform weights, the one that synchronises gradients has CoBa's
    assert all(m[2] == uniform for m in micro[:7])
    assert micro[7][2] != uniform and micro[8][2] == micro[7][2]


def test_a_task_absent_from_validation_gets_the_mean_weight_not_the_largest():
    spec = CobaSpec(warmup_steps=2, history_length=10, tau=5.0, update_interval=1)
    coba = CobaBalancer(3, spec)
    coba.set_reference([1.0, 1.0, 1.0])
    records = [[1.0, 1.0, 0.0], [0.9, 0.99, 0.0], [0.8, 0.98, 0.0], [0.7, 0.97, 0.0]]
    for step, row in enumerate(records, start=1):
        weights = coba.step_weights(step).tolist()
        coba.record(row)
    weights = coba.step_weights(len(records) + 1).tolist()
    assert weights[2] == pytest.approx(1 / 3) and max(weights) > weights[2]
    assert sum(weights) == pytest.approx(1.0)
    # the two present tasks are balanced as CoBa balances two tasks alone, scaled to the 2/3 left
    alone = CobaBalancer(2, spec)
    alone.set_reference([1.0, 1.0])
    for step, row in enumerate(records, start=1):
        alone.step_weights(step)
        alone.record(row[:2])
    pair = alone.step_weights(len(records) + 1).tolist()
    assert weights[:2] == pytest.approx([w * 2 / 3 for w in pair], rel=1e-9)
    # what the slope-0 reading would have done: the absent task highest
    slopes = torch.tensor([-0.1, -0.01, 0.0], dtype=torch.float64)
    assert int(torch.softmax(losses._normalised(slopes, 3), -1).argmax()) == 2


def test_a_dataset_weight_under_coba_is_refused():
    with pytest.raises(Exception, match=r"datasets\[0\].weight is not used with weighted_loss_mode: coba"):
        tiny_recipe(weighted_loss_mode="coba", datasets=[{"path": "a", "weight": 2.0}, {"path": "b"}])
