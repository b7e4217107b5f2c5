"""The training loop of the train stage: data → model → engine, evaluation, checkpoints, requeue.

One optimizer step = gradient_accumulation_steps micro-batches (the last window of an epoch may be
shorter). After every step, in this order: metrics and the stop flag are all-reduced (one call),
the window is logged, validation runs every evaluation_steps (early stopping), a checkpoint is
saved every checkpointing_steps, at a new best validation loss, and when the ranks agreed to stop;
then a stop raises RequeueRequested. A restart resumes from the newest checkpoint exactly: same
weights, optimizer and scheduler state, RNG states and position in the data.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from jobs.context import RequeueRequested, StageContext
from jobs.run_models import selected_steps
from jobs.mft.batching import EpochLoader, collate, model_inputs
from jobs.mft.data import MftData, load_mft_data
from jobs.mft.coba_schedule import record_batches, record_due
from jobs.mft.moe_aux import RouterLogits, aux_coefficient, load_balancing
from jobs.mft.losses import CobaBalancer, MftLoss, mft_loss
from jobs.tiny_model import resolve_model_path
from jobs.training import checkpoint, engine as engines, schedule
from jobs.training.checkpoint import TrainerState
from jobs.training.metrics import Logger, StepAccumulator
from jobs.training.model import build_model, compute_dtype, describe_quantization, load_tokenizer

ADAPTER_DIR = "adapter"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One attempt of the train stage on one rank; `fit()` runs it to the end or to a requeue."""

    def __init__(self, ctx: StageContext) -> None:
        if ctx.recipe.stages.train is None:
            raise ValueError("the recipe has no train stage")
        self.ctx = ctx
        self.model_spec = ctx.recipe.model
        self.train = ctx.recipe.stages.train
        self.rank = ctx.dist.rank
        self.is_main = ctx.dist.is_main
        self.checkpoints = ctx.run_dir.checkpoints_dir
        self.last_step_s = 0.0
        self.last_save_s = 0.0

    # ---------------------------------------------------------------------------------------
    # setup

    def _setup(self) -> None:
        train = self.train
        self.device = engines.init_process_group(self.ctx.dist, train)
        self.model_dir = resolve_model_path(self.model_spec.path)
        self.tokenizer = load_tokenizer(self.model_spec, self.model_dir)
        self.data: MftData = load_mft_data(
            train, self.tokenizer, self.ctx.run_dir.data_cache_dir, rank=self.rank,
            timeout_s=train.distributed.init_timeout_s,
        )
        world = self.ctx.dist.world_size
        common = dict(mode=train.padding_mode, seq_length=train.seq_length, pad_id=self.data.pad_id,
                      seed=train.seed, rank=self.rank, world_size=world)
        self.loader = EpochLoader(self.data.train, batch_size=train.per_device_train_batch_size, **common)
        self.valid_loader = (
            EpochLoader(self.data.valid, batch_size=train.per_device_eval_batch_size, shuffle=False, **common)
            if len(self.data.valid) else None
        )
        if train.weighted_loss_mode == "coba" and self.valid_loader is None:
            raise ValueError("weighted_loss_mode: coba balances tasks by their validation loss: set validation_split > 0")
        epochs = [] if train.max_steps else [self.loader.num_batches(e) for e in range(train.epochs)]
        self.total_steps = schedule.total_optimizer_steps(epochs, train.gradient_accumulation_steps, train.max_steps)
        warmup = schedule.warmup_steps(train.num_warmup_steps, self.total_steps)

        seed_everything(train.seed)
        zero3_loading = engines.zero3_init(train)  # must be alive while transformers loads the weights
        net = build_model(self.model_spec, train, self.model_dir, self.device)
        self.engine = engines.build_engine(net, self.model_spec, train, self.device, self.total_steps, warmup)
        del zero3_loading
        if train.peft_type == "qlora":  # every rank: the 4-bit layers really present, in each rank's log
            print(f"[train] rank {self.rank}/{world}: {describe_quantization(net, train)}", flush=True)
        self.compute_dtype = compute_dtype(self.model_spec, train)
        self.model_config = self.engine.module.config
        self.moe_aux_coef = aux_coefficient(train.moe_aux_loss_coef, self.model_config)
        self.routers = RouterLogits(self.engine.module) if self.moe_aux_coef > 0 else None
        self.base_weights = torch.tensor(self.data.task_weights, dtype=torch.float32)
        # under CoBa the dataset weights are ignored (MFTCoder sets them all to 1): CoBa sets them
        self.coba = CobaBalancer(len(self.data.task_names), train.coba) if train.weighted_loss_mode == "coba" else None
        self.state = self._resume()
        self.logger = Logger(self.data.task_names, self.ctx.run_dir.tensorboard_dir, self.is_main, self.total_steps,
                             self.state.step)

    def _resume(self) -> TrainerState:
        if self.is_main:
            checkpoint.remove_partial(self.checkpoints)
        engines.barrier()
        latest = checkpoint.latest(self.checkpoints)
        if latest is None:
            return TrainerState()
        self.engine.load(latest)
        state = checkpoint.read_state(latest)
        checkpoint.load_rng(latest, self.rank)
        if self.coba and state.coba:
            self.coba.load_state_dict(state.coba)
        if self.is_main:
            print(f"[train] resumed from {latest.name}: step {state.step}, epoch {state.epoch}, "
                  f"micro-batch {state.batch_in_epoch}", flush=True)
        return state

    # ---------------------------------------------------------------------------------------
    # forward passes

    def _loss(self, batch: dict[str, torch.Tensor], weights: torch.Tensor) -> MftLoss:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        inputs = model_inputs(batch, self.model_spec.attn_implementation, self.compute_dtype)
        balance = self.routers is not None and self.engine.module.training
        with self.engine.autocast():
            if balance:
                with self.routers:
                    logits = self.engine.module(**inputs).logits
            else:
                logits = self.engine.module(**inputs).logits
        result = mft_loss(logits, batch, weights, self.train.weighted_loss_mode)
        if balance:
            real = (batch["sample_index"] >= 0).reshape(inputs["input_ids"].shape)
            result.aux_loss = self.moe_aux_coef * load_balancing(self.routers.logits, self.model_config, real).float()
            result.loss = result.loss + result.aux_loss
        return result

    def evaluate(self, batch_indices: Optional[list[int]] = None) -> tuple[float, list[float], list[float]]:
        """Validation loss (mean over all ranks' batches) and per-task losses with their counts.
        Collective: every rank runs the same number of batches (the loader pads cyclically)."""
        plan = self.valid_loader.plan(0)
        chosen = range(len(plan)) if batch_indices is None else [i % len(plan) for i in batch_indices]
        k = len(self.data.task_names)
        sums = torch.zeros(2 + 2 * k, dtype=torch.float64, device=self.device)
        self.engine.module.eval()
        with torch.no_grad():
            for index in chosen:
                batch = collate(self.data.valid, plan[index], self.train.padding_mode, self.train.seq_length, self.data.pad_id)
                out = self._loss(batch, self.base_weights)
                present = out.task_present.double()
                sums[0] += out.loss.double()
                sums[1] += 1
                sums[2 : 2 + k] += out.task_loss.double() * present
                sums[2 + k :] += present
        self.engine.module.train()
        if engines.is_distributed():
            torch.distributed.all_reduce(sums)
        v = sums.cpu().tolist()
        counts = v[2 + k :]
        tasks = [s / c if c else 0.0 for s, c in zip(v[2 : 2 + k], counts)]
        return v[0] / max(1.0, v[1]), tasks, counts

    # ---------------------------------------------------------------------------------------
    # checkpoints

    def save(self) -> Path:
        start = time.monotonic()
        if self.coba:
            self.state.coba = self.coba.state_dict()

        def write(directory: Path) -> None:
            self.engine.save(directory)
            checkpoint.save_rng(directory, self.rank)
            if self.train.is_peft:
                weights = self.engine.gathered_trainable()
                if weights is not None:
                    self.engine.net.save_pretrained(str(directory / ADAPTER_DIR), state_dict=weights)

        protect = {self.state.best_step} if self.state.best_step is not None else set()
        protect |= selected_steps(self.ctx.plan)  # checkpoints a sweep merges and evaluates
        path = checkpoint.save(self.checkpoints, self.state, write, is_main=self.is_main, barrier=engines.barrier,
                               keep_last=self.train.saving_limit, protect=protect)
        self.last_save_s = time.monotonic() - start
        if self.is_main:
            print(f"[train] saved {path} ({self.last_save_s:.1f}s)", flush=True)
        return path

    def _should_stop(self) -> bool:
        """This rank's vote: USR2 / budget end, or the budget would end during the next step and
        the save after it."""
        if self.ctx.should_stop():
            return True
        deadline = self.ctx.deadline
        return deadline is not None and time.time() + self.last_step_s + self.last_save_s >= deadline

    # ---------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> dict[str, Any]:
        self._setup()
        try:
            result = self._loop()
        except RequeueRequested:
            engines.shutdown()
            raise
        finally:
            self.logger.close()
        engines.shutdown()
        return result

    def _loop(self) -> dict[str, Any]:
        train, state = self.train, self.state
        if self.coba and self.coba.reference is None:
            _, reference, _ = self.evaluate()
            self.coba.set_reference(reference)
        accumulator = StepAccumulator(len(self.data.task_names), self.device)
        ga = train.gradient_accumulation_steps
        saved_at: Optional[int] = None
        self.engine.module.train()
        weights = self.base_weights if self.coba is None else self.coba.weights.float()
        step_start = time.monotonic()
        while state.step < self.total_steps and (train.max_steps or state.epoch < train.epochs) and not state.stopped_early:
            num_batches = self.loader.num_batches(state.epoch)
            for index, batch in enumerate(self.loader.iterate(state.epoch, state.batch_in_epoch), state.batch_in_epoch):
                boundary = (index + 1) % ga == 0 or index + 1 == num_batches
                self.engine.set_boundary(boundary)
                if boundary and self.coba is not None:
                    weights = self.coba.step_weights(state.step).float()
                out = self._loss(batch, weights)
                self.engine.backward(out.loss)
                self.engine.step()
                accumulator.add(out.loss, batch, out.task_loss, out.task_present, out.aux_loss)
                if not boundary:
                    continue
                state.step += 1
                state.batch_in_epoch = index + 1
                if state.batch_in_epoch == num_batches:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                totals = accumulator.reduce(self._should_stop())
                state.tokens += int(totals.real_tokens)
                self.last_step_s = time.monotonic() - step_start
                self.logger.add_step(totals, self.last_step_s)
                if state.step % train.log_interval == 0 or state.step == self.total_steps:
                    self.logger.flush(state.step, state.epoch, self.engine.lr(), self.engine.grad_norm())
                self._coba_record()
                save = state.step % train.checkpointing_steps == 0 or totals.stop > 0
                if self.valid_loader is not None and state.step % train.evaluation_steps == 0:
                    save |= self._evaluate_and_track()
                if save:
                    self.save()
                    saved_at = state.step
                if totals.stop > 0:
                    raise RequeueRequested(f"stopped at step {state.step} ({self.ctx.stop.reason or 'time budget'})")
                if state.step >= self.total_steps or state.stopped_early:
                    break
                step_start = time.monotonic()
        return self._finish(saved_at)

    def _coba_record(self) -> None:
        """CoBa's validation record after this optimizer step, when MFTCoder's schedule has one
        (`jobs.mft.coba_schedule`; `state.step - 1` is the counter before this step)."""
        spec = self.train.coba
        if self.coba is None or not record_due(self.state.step - 1, spec):
            return
        batches = record_batches(self.state.step - 1, spec, len(self.valid_loader.plan(0)))
        _, tasks, _ = self.evaluate(batches)
        self.coba.record(tasks)

    def _evaluate_and_track(self) -> bool:
        """Run validation; True when this step is a new best (worth a checkpoint for merge)."""
        loss, tasks, counts = self.evaluate()
        self.logger.log_eval(self.state.step, loss, tasks, counts)
        improved = self.state.record_eval(loss)
        if self.train.early_stopping.enabled and self.state.stall >= self.train.early_stopping.patience:
            self.state.stopped_early = True
            if self.is_main:
                print(f"[train] early stopping: no improvement in {self.state.stall} evaluations "
                      f"(best {self.state.best_loss:.4f} at step {self.state.best_step})", flush=True)
        return improved

    def _finish(self, saved_at: Optional[int]) -> dict[str, Any]:
        state = self.state
        evaluated = bool(state.eval_history) and state.eval_history[-1][0] == state.step
        if self.valid_loader is not None and not evaluated:
            self._evaluate_and_track()
        if saved_at != state.step:
            self.save()
        local, total = self.engine.partition_counts()
        per_rank = [local]
        if engines.is_distributed():
            per_rank = [0] * self.ctx.dist.world_size
            torch.distributed.all_gather_object(per_rank, local)
        trainable = sum(getattr(p, "ds_numel", p.numel()) for p in self.engine.net.parameters() if p.requires_grad)
        result = {
            "steps": state.step,
            "epochs_done": state.epoch,
            "train_loss": self.logger.last_loss,
            "eval_loss": state.eval_history[-1][1] if state.eval_history else None,
            "best_step": state.best_step,
            "best_eval_loss": state.best_loss,
            "stopped_early": state.stopped_early,
            "checkpoint": str(checkpoint.step_dir(self.checkpoints, state.step)),
            "tokens": state.tokens,
            "params_total": total,
            "params_trainable": trainable,
            "params_per_rank": per_rank,
            "restarts": self.ctx.restart_count,
            **{f"data_{k}": v for k, v in self.data.summary().items()},
        }
        if self.is_main:
            print(f"[train] done: {result}", flush=True)
        return result
