"""Training throughput: every sample padded to seq_length (MFTCoder's padding mode) vs. packing.

Why: DESIGN.md asks packing (samples kept apart by a block-diagonal mask) for >= 2x the effective
(non-pad) tokens/s of the pad-to-seq_length mode with the same per-sample loss, LoRA bf16 on a 7B
shape >= 40% MFU, and QLoRA on CodeLlama-34B's layer shape >= 1.5x plain HF+peft+bnb. This script
measures both modes in one process, on the same model and the same samples, through the project's
own code: `jobs.mft.batching` (EpochLoader plans, `collate`, `model_inputs`), `jobs.mft.losses`
(`mft_loss`), `jobs.training.model.build_model` and `jobs.training.engine.build_engine` (torch
engine, AdamW, one optimizer step per micro-batch).

    # CPU, the built-in tiny model (about a minute on 2 idle cores)
    python benchmarks/training.py --device cpu
    # GPU: CodeLlama-7B shape, random bf16 weights, LoRA
    python benchmarks/training.py --device cuda --model recipes/models/codellama-7b/config.json
    # GPU: QLoRA (nf4) on CodeLlama-34B's layer shape with fewer layers (needs bitsandbytes)
    python benchmarks/training.py --device cuda --model recipes/models/codellama-34b/config.json \
        --peft qlora --layers 8 --gradient-checkpointing

Samples: synthetic token ids with log-normal lengths (--median-tokens, --sigma; default median
384 tokens, sigma 0.9: mean ~575, a long right tail), clipped to [--min-tokens, seq_length + 1].
Below seq_length 4096 the median and the minimum shrink by seq_length/4096, which keeps the
padding mode's fill at what it is at 4096 (~14%). This is a stand-in shaped like code instruction
data (a prompt and an answer of a few hundred tokens), not fitted to a particular dataset. The
first 20-60% of each sample (uniform) is prompt (no loss), the rest answer (loss); three tasks,
drawn at random. Both modes take the same seeded epoch order (EpochLoader, --seed): padding puts
one sample in each of the --batch-size rows, packing fills as many rows with consecutive samples.

Before any step, the per-sample losses of the first packed batch are compared with the same
samples padded one per row (eval mode: no dropout). The timed steps of the two modes are then
interleaved (padding step k, pack step k), so both see the same load on a shared machine; with
--repeats R each step runs R times and its fastest run counts. Per mode: step time (collate +
forward + loss + backward + optimizer step), effective tokens/s (non-pad positions; loss tokens
separately), padded tokens/s (all positions), peak memory (CUDA max allocated, per step; on CPU
only the process's max RSS, both modes together), and MFU.

MFU = effective tokens/s x model FLOPs per token / peak; FLOPs per token = 6N + 12*L*h*s (full)
or 4N + 12*L*h*s (LoRA/QLoRA), N = all base parameters (embeddings and lm_head included, like the
7B's 6.74e9 in training.md), L layers, h hidden size, s = seq_length for both modes (the formula's
convention; packed samples attend over fewer positions, so packing's attention term is a little
overcounted). Peak: dense bf16 of the GPU (H100 SXM 989 TFLOP/s; --peak-tflops to set another).

Models: `builtin:tiny-llama` or a model directory (its weights), or a config.json (random
weights, no download). LoRA/full with random weights go through `build_model` with its
`load_base` swapped for a random init from the config on the device; QLoRA with random weights
writes a random bf16 checkpoint once under --scratch and loads it through `build_model` unchanged
(from_pretrained + BitsAndBytesConfig). --layers N keeps the layer shape with N layers (random
weights; reported). --builder peft builds with transformers + peft directly instead.
Writes the raw figures as JSON (--out, default runs/benchmarks/training-<device>-<time>.json).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

#: Dense bf16 peaks (TFLOP/s) by GPU name; the first matching substring wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
)

#: Measured anchors (DESIGN.md, one H100, plain HF+peft, seq 4096, micro-batch 1, tok/s).
ANCHORS = {
    "codellama-7b/lora": {"tok_s_gradient_checkpointing": 5405, "tok_s_no_checkpointing": 7452,
                          "target_mfu": 0.40, "target_tok_s_h100": 11800},
    "codellama-34b/qlora": {"tok_s_48_layers": 1590, "peak_gb_48_layers": 27.5, "target_ratio": 1.5},
}
TASKS = ("codegen", "explain", "unittest")
#: Sample lengths at seq_length >= 4096: log-normal median and the shortest sample, in tokens.
MEDIAN_TOKENS = 384.0
MIN_TOKENS = 32


# ------------------------------------------------------------------------------------------
# samples


def sample_lengths(count: int, seq_length: int, median: float, sigma: float, min_tokens: int, seed: int) -> np.ndarray:
    """Tokens per sample: log-normal(ln median, sigma), rounded, clipped to [min_tokens, seq_length + 1]
    (a sample of n tokens takes n - 1 positions of a row)."""
    rng = np.random.default_rng([seed, 1])
    raw = np.exp(rng.normal(math.log(median), sigma, size=count))
    return np.clip(np.rint(raw), min_tokens, seq_length + 1).astype(np.int64)


def synthetic_dataset(lengths: np.ndarray, vocab_size: int, first_id: int, seed: int):
    """A jobs.mft TokenizedDataset of random token ids with the given lengths; the first 20-60% of
    each sample is prompt (target 0), the rest answer (target 1)."""
    from jobs.mft.data import TokenizedDataset

    rng = np.random.default_rng([seed, 2])
    total = int(lengths.sum())
    tokens = rng.integers(first_id, vocab_size, size=total, dtype=np.int32)
    targets = np.zeros(total, dtype=np.uint8)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    for i, n in enumerate(lengths):
        prompt = min(int(n) - 1, max(1, int(round(rng.uniform(0.2, 0.6) * n))))
        targets[offsets[i] + prompt : offsets[i + 1]] = 1
    task_ids = rng.integers(0, len(TASKS), size=len(lengths)).astype(np.int64)
    return TokenizedDataset(tokens=tokens, targets=targets, offsets=offsets, task_ids=task_ids, task_names=list(TASKS))


# ------------------------------------------------------------------------------------------
# model


def model_source(arg: str) -> tuple[Path, bool, str]:
    """(folder, has_weights, label) for --model."""
    from jobs.tiny_model import resolve_model_path

    path = Path(arg) if arg.endswith(".json") else resolve_model_path(arg)
    folder = path.parent if path.is_file() else path
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    label = folder.name if not arg.startswith("builtin:") else arg
    return folder, has_weights, label


def load_config(folder: Path, layers: Optional[int]):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    if layers:
        config.num_hidden_layers = layers
    return config


def count_parameters(config) -> int:
    """All parameters of the architecture (meta device: no memory, exact for any model type)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def random_base(config, dtype, attn: str, device):
    """A model of `config` with random weights made on `device` (the init of transformers)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model


def random_checkpoint(config, dtype, scratch: Path, device, log) -> Path:
    """A random checkpoint of `config` written once under `scratch` (reused when complete)."""
    import torch

    key = hashlib.sha256(config.to_json_string(use_diff=False).encode() + str(dtype).encode()).hexdigest()[:12]
    folder = scratch / f"random-{config.model_type}-{config.num_hidden_layers}l-{key}"
    if (folder / ".complete").is_file():
        return folder
    log(f"writing random {dtype} weights for {config.num_hidden_layers} layers to {folder} (once)")
    model = random_base(config, dtype, "sdpa", device)
    model.save_pretrained(str(folder), safe_serialization=True)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    (folder / ".complete").write_text("ok\n")
    return folder


def build_with_peft(model_spec, train, base):
    """--builder peft: transformers + peft directly, the same choices as build_model."""
    from peft import LoraConfig, get_peft_model

    from jobs.training.model import target_modules

    base.config.use_cache = False
    if train.peft_type == "qlora":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if train.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if train.peft_type == "full":
        for p in base.parameters():
            p.requires_grad_(True)
        net = base
    else:
        net = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=train.lora.rank, lora_alpha=train.lora.alpha,
                                              lora_dropout=train.lora.dropout, bias="none",
                                              target_modules=target_modules(model_spec, train)))
    net.train()
    return net


def build_net(args, folder: Path, has_weights: bool, config, model_spec, train, device, log):
    """(net, how it was built)."""
    from jobs.training import model as tm

    if train.peft_type == "qlora":
        if not has_weights or args.layers:
            folder = random_checkpoint(config, tm.compute_dtype(model_spec, train), Path(args.scratch), device, log)
            model_spec = model_spec.model_copy(update={"path": str(folder)})
        if args.builder == "peft":
            return build_with_peft(model_spec, train, tm.load_base(model_spec, train, folder, device)), \
                "transformers from_pretrained + BitsAndBytesConfig, then peft directly (--builder peft)"
        return tm.build_model(model_spec, train, folder, device), (
            "jobs.training.model.build_model unchanged (from_pretrained + BitsAndBytesConfig"
            + (f", random bf16 checkpoint in {folder})" if not has_weights or args.layers else ")"))
    if has_weights and not args.layers:
        if args.builder == "peft":
            return build_with_peft(model_spec, train, tm.load_base(model_spec, train, folder, device)), \
                f"transformers + peft directly (--builder peft), weights from {folder}"
        return tm.build_model(model_spec, train, folder, device), f"jobs.training.model.build_model (weights from {folder})"

    def load(spec, stage, where, dev):
        return random_base(config, tm.storage_dtype(spec, stage), spec.attn_implementation, dev)

    if args.builder == "peft":
        return build_with_peft(model_spec, train, load(model_spec, train, folder, device)), \
            "transformers + peft directly (--builder peft), random init from the config on the device"
    with mock.patch.object(tm, "load_base", load):
        net = tm.build_model(model_spec, train, folder, device)
    return net, "jobs.training.model.build_model with load_base swapped for a random init from the config on the device"


def flops_per_token(params: int, layers: int, hidden: int, seq_length: int, peft: str) -> float:
    """Model FLOPs per token: 6N + 12*L*h*s (full) or 4N + 12*L*h*s (LoRA/QLoRA)."""
    return (6 if peft == "full" else 4) * params + 12 * layers * hidden * seq_length


def gpu_peak_tflops(name: str) -> Optional[float]:
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


# ------------------------------------------------------------------------------------------
# measuring


class Bench:
    """The model, its engine and the trainer's forward/loss path (jobs.training.trainer._loss)."""

    def __init__(self, net, engine, model_spec, train, device, dataset, pad_id: int) -> None:
        import torch

        from jobs.training.model import compute_dtype

        self.net, self.engine, self.model_spec, self.train = net, engine, model_spec, train
        self.device, self.dataset, self.pad_id = device, dataset, pad_id
        self.compute_dtype = compute_dtype(model_spec, train)
        self.weights = torch.ones(len(TASKS), dtype=torch.float32)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def loss(self, batch):
        from jobs.mft.batching import model_inputs
        from jobs.mft.losses import mft_loss

        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        inputs = model_inputs(batch, self.model_spec.attn_implementation, self.compute_dtype)
        with self.engine.autocast():
            logits = self.engine.module(**inputs).logits
        return mft_loss(logits, batch, self.weights, self.train.weighted_loss_mode)

    def sample_losses(self, units, mode: str, rows_per_forward: int) -> np.ndarray:
        """Per-sample losses of the samples in `units` (flattened in order), eval mode, no grad."""
        import torch

        from jobs.mft.batching import collate

        out = []
        self.engine.module.eval()
        with torch.no_grad():
            for k in range(0, len(units), rows_per_forward):
                batch = collate(self.dataset, units[k : k + rows_per_forward], mode, self.train.seq_length, self.pad_id)
                out.append(self.loss(batch).sample_loss.float().cpu().numpy())
        self.engine.module.train()
        return np.concatenate(out)

    def step(self, units, mode: str) -> dict[str, Any]:
        """One training step on a batch of `units`: time, token counts, loss, peak CUDA memory."""
        import torch

        from jobs.mft.batching import collate

        cuda = self.device.type == "cuda"
        self.sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        batch = collate(self.dataset, units, mode, self.train.seq_length, self.pad_id)
        t1 = time.perf_counter()
        out = self.loss(batch)
        self.engine.set_boundary(True)
        self.engine.backward(out.loss)
        self.engine.step()
        self.sync()
        return {
            "seconds": time.perf_counter() - t0,
            "data_seconds": t1 - t0,
            "positions": int(batch["input_ids"].numel()),
            "nonpad": int((batch["sample_index"] >= 0).sum()),
            "loss_tokens": int((batch["labels"] != -100).sum()),
            "samples": int(batch["sample_task"].numel()),
            "loss": float(out.loss.detach().float().cpu()),
            "peak_gb": torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None,
        }


def process_max_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def summarise(records: list[dict[str, Any]], flops: float, peak_tflops: Optional[float]) -> dict[str, Any]:
    """Totals of one mode's timed steps (each the best of its rounds)."""
    def total(key: str) -> float:
        return float(sum(r[key] for r in records))

    n = len(records)
    total_s = total("seconds")
    eff = total("nonpad") / total_s
    padded = total("positions") / total_s
    peaks = [r["peak_gb"] for r in records if r["peak_gb"] is not None]
    out = {
        "steps": n,
        "step_s_mean": total_s / n,
        "step_s_median": statistics.median(r["seconds"] for r in records),
        "data_s_mean": total("data_seconds") / n,
        "samples_per_step": total("samples") / n,
        "positions_per_step": total("positions") / n,
        "nonpad_per_step": total("nonpad") / n,
        "loss_tokens_per_step": total("loss_tokens") / n,
        "fill": total("nonpad") / total("positions"),
        "effective_tokens_per_s": eff,
        "loss_tokens_per_s": total("loss_tokens") / total_s,
        "padded_tokens_per_s": padded,
        "model_tflops_per_s": eff * flops / 1e12,
        "peak_memory_gb": max(peaks) if peaks else None,
        "step_seconds": [r["seconds"] for r in records],
        "losses": [r["loss"] for r in records],
    }
    out["mfu"] = out["model_tflops_per_s"] / peak_tflops if peak_tflops else None
    out["mfu_counting_pad"] = padded * flops / 1e12 / peak_tflops if peak_tflops else None
    return out


def environment(device) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "machine": platform.machine()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        info["bitsandbytes"] = None
    return info


def qlora_unavailable(device) -> Optional[str]:
    """Why QLoRA cannot run here, or None (it runs on CPU too, with bitsandbytes' torch kernels)."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed (pip install -e '.[train]')"
    return None


# ------------------------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--model", default="builtin:tiny-llama", help="builtin:tiny-llama or a config.json (random weights)")
    p.add_argument("--layers", type=int, default=None, help="keep the layer shape, use N layers (random weights)")
    p.add_argument("--peft", default="lora", choices=["lora", "qlora", "full"])
    p.add_argument("--dtype", default=None, choices=["bf16", "fp32"], help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    p.add_argument("--seq-length", type=int, default=None, help="default: 4096 on cuda, 256 on cpu")
    p.add_argument("--batch-size", type=int, default=None, help="rows per micro-batch, both modes (default 1 cuda, 4 cpu)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode and round (default 8 cuda, 4 cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per mode first (default 2 cuda, 1 cpu)")
    p.add_argument("--repeats", type=int, default=None, help="rounds alternating the modes, best counts (default 1 cuda, 2 cpu)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--lora-rank", type=int, default=96)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--median-tokens", type=float, default=None, help="log-normal median (default 384 x min(1, seq/4096))")
    p.add_argument("--sigma", type=float, default=0.9, help="log-normal sigma of the sample lengths")
    p.add_argument("--min-tokens", type=int, default=None, help="shortest sample (default max(4, 32 x min(1, seq/4096)))")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device (default by GPU name)")
    p.add_argument("--builder", default="project", choices=["project", "peft"])
    p.add_argument("--scratch", default="/tmp/mftlaunch-bench", help="QLoRA random checkpoints go here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from jobs.mft.batching import EpochLoader
    from jobs.training.engine import build_engine
    from launcher.recipe import ModelSpec, TrainStage

    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[bench] {msg}", flush=True))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = args.dtype or ("bf16" if gpu else "fp32")
    seq = args.seq_length or (4096 if gpu else 256)
    rows = args.batch_size or (1 if gpu else 4)
    steps = args.steps or (8 if gpu else 4)
    warmup = args.warmup if args.warmup is not None else (2 if gpu else 1)
    repeats = args.repeats or (1 if gpu else 2)
    scale = min(1.0, seq / 4096)  # below seq 4096 the distribution shrinks with seq: the same fill as at 4096
    median = args.median_tokens or MEDIAN_TOKENS * scale
    min_tokens = args.min_tokens or max(4, round(MIN_TOKENS * scale))

    env = environment(device)
    report: dict[str, Any] = {"device": str(device), "environment": env}
    if args.peft == "qlora":
        why = qlora_unavailable(device)
        if why:
            print(f"QLoRA SKIPPED: {why}; nothing was measured.")
            report["skipped"] = f"qlora: {why}"
            write_report(args, report, device)
            return 0

    folder, has_weights, label = model_source(args.model)
    config = load_config(folder, args.layers)
    full_config = load_config(folder, None)
    full_layers = full_config.num_hidden_layers
    layers, hidden = config.num_hidden_layers, config.hidden_size
    params = count_parameters(config)
    flops = flops_per_token(params, layers, hidden, seq, args.peft)
    peak = args.peak_tflops or (gpu_peak_tflops(env.get("gpu", "")) if gpu else None)

    # samples: enough for the packed plan of warmup + steps batches
    mean_tokens = median * math.exp(args.sigma**2 / 2)
    count = int((warmup + steps) * rows * seq / max(1.0, mean_tokens - 1) * 1.5) + 4 * rows + 16
    lengths = sample_lengths(count, seq, median, args.sigma, min_tokens, args.seed)
    pad_id = config.pad_token_id if isinstance(config.pad_token_id, int) else 0
    dataset = synthetic_dataset(lengths, config.vocab_size, 8 if config.vocab_size > 64 else 0, args.seed)
    plans = {mode: EpochLoader(dataset, mode=mode, seq_length=seq, batch_size=rows, pad_id=pad_id, seed=args.seed).plan(0)
             for mode in ("padding", "pack")}
    for mode, plan in plans.items():
        if len(plan) < warmup + steps:
            raise SystemExit(f"only {len(plan)} {mode} batches for {warmup + steps} steps: raise the sample count")

    model_type = config.model_type if config.model_type in ("llama", "mistral", "qwen2", "mixtral") else "llama"
    model_spec = ModelSpec(path=str(folder), model_name="bench", model_type=model_type, dtype=dtype,
                           attn_implementation=args.attn)
    train = TrainStage(
        datasets=[{"path": "synthetic"}], seq_length=seq, padding_mode="pack", peft_type=args.peft,
        lora={"rank": args.lora_rank, "alpha": args.lora_alpha, "dropout": 0.05}, weighted_loss_mode="case3",
        per_device_train_batch_size=rows, gradient_checkpointing=args.gradient_checkpointing,
        learning_rate=1e-4, min_lr=0.0, lr_scheduler_type="constant", max_steps=10**6, seed=args.seed,
        distributed={"backend": "none", "zero_stage": 0, "mixed_precision": "bf16" if dtype == "bf16" else "no"},
    )
    layer_note = f", {layers} of {full_layers} layers" if layers != full_layers else ""
    log(f"building {label}{layer_note} ({human(params)} parameters), {args.peft}, {dtype}, attn {args.attn}")
    t0 = time.time()
    net, how = build_net(args, folder, has_weights, config, model_spec, train, device, log)
    engine = build_engine(net, model_spec, train, device, total_steps=10**6, warmup=0)
    build_s = time.time() - t0
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    bench = Bench(net, engine, model_spec, train, device, dataset, pad_id)

    # per-sample losses: the first packed batch vs. the same samples, one per padded row
    first = plans["pack"][0]
    packed_losses = bench.sample_losses(first, "pack", rows)
    padded_losses = bench.sample_losses([[i] for unit in first for i in unit], "padding", rows)
    diff = np.abs(packed_losses - padded_losses)
    agreement = {"samples": int(len(diff)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                 "mean_loss": float(padded_losses.mean()), "dtype": dtype}
    log(f"per-sample loss, first packed batch ({len(diff)} samples): max |packed - padded| = {diff.max():.2e}")

    # warm-up, then the timed steps interleaved (padding k, pack k, ...) so that both modes see the
    # same machine load; with --repeats R every step runs R times and its fastest run counts
    for mode in ("padding", "pack"):
        for units in plans[mode][:warmup]:
            bench.step(units, mode)
    runs: dict[str, list[list[dict[str, Any]]]] = {mode: [[] for _ in range(steps)] for mode in ("padding", "pack")}
    for r in range(repeats):
        t0 = time.perf_counter()
        for k in range(steps):
            for mode in ("padding", "pack"):
                runs[mode][k].append(bench.step(plans[mode][warmup + k], mode))
        log(f"round {r + 1}/{repeats}: {time.perf_counter() - t0:.1f} s for {steps} steps of each mode")
    results = {}
    for mode in ("padding", "pack"):
        results[mode] = summarise([min(tries, key=lambda rec: rec["seconds"]) for tries in runs[mode]], flops, peak)
        results[mode]["round_seconds"] = [sum(runs[mode][k][r]["seconds"] for k in range(steps)) for r in range(repeats)]
    speedup = results["pack"]["effective_tokens_per_s"] / results["padding"]["effective_tokens_per_s"]

    report.update({
        "model": {"arg": args.model, "label": label, "built_by": how, "layers": layers, "layers_of_config": full_layers,
                  "hidden_size": hidden, "base_parameters": params, "trainable_parameters": trainable,
                  "peft": args.peft, "dtype": dtype, "attn": args.attn,
                  "gradient_checkpointing": args.gradient_checkpointing, "lora_rank": args.lora_rank,
                  "random_weights": not has_weights or bool(args.layers), "build_s": build_s},
        "settings": {"seq_length": seq, "rows_per_micro_batch": rows, "steps": steps, "warmup": warmup,
                     "repeats": repeats, "seed": args.seed, "optimizer": "AdamW via jobs.training.engine.TorchEngine",
                     "loss": "case3 (jobs.mft.losses.mft_loss)"},
        "lengths": {"distribution": "log-normal, clipped", "median_tokens": median, "sigma": args.sigma,
                    "min_tokens": min_tokens, "max_tokens": seq + 1, "pool_samples": int(len(lengths)),
                    "mean_tokens": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
                    "p90": float(np.percentile(lengths, 90)), "p99": float(np.percentile(lengths, 99))},
        "mfu_formula": f"{'6' if args.peft == 'full' else '4'}N + 12*L*h*s, s = seq_length",
        "flops_per_token": flops, "peak_tflops": peak,
        "loss_agreement_first_packed_batch": agreement,
        "padding": results["padding"], "pack": results["pack"],
        "pack_vs_padding_effective_tokens_per_s": speedup,
    })
    params_full = params if layers == full_layers else count_parameters(load_config(folder, None))
    report["process_max_rss_gb"] = process_max_rss_gb()
    report["anchors"] = anchor_comparison(shape_name(full_config), args, results["pack"], flops, params_full, layers, full_layers, hidden, seq)
    print_table(report)
    write_report(args, report, device)
    return 0


def shape_name(config) -> Optional[str]:
    """'codellama-7b' / 'codellama-34b' when the (full) config has that shape, else None."""
    shape = (config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    return {(4096, 11008, 32): "codellama-7b", (8192, 22016, 48): "codellama-34b"}.get(shape)


def anchor_comparison(shape, args, packed, flops, params_full, layers, full_layers, hidden, seq) -> Optional[dict[str, Any]]:
    """The measured packed tokens/s beside DESIGN.md's anchors, where the shape matches."""
    tok_s = packed["effective_tokens_per_s"]
    if shape == "codellama-7b" and args.peft == "lora" and layers == full_layers:
        a = ANCHORS["codellama-7b/lora"]
        base = a["tok_s_gradient_checkpointing"] if args.gradient_checkpointing else a["tok_s_no_checkpointing"]
        return {"anchor": "plain HF+peft LoRA bf16 7B on an H100 (DESIGN.md)", "anchor_tok_s": base,
                "ratio_to_anchor": tok_s / base, "target": ">= 40% MFU (>= 11,800 tok/s on an H100 SXM)",
                "meets_target": packed["mfu"] is not None and packed["mfu"] >= a["target_mfu"]}
    if shape == "codellama-34b" and args.peft == "qlora":
        a = ANCHORS["codellama-34b/qlora"]
        # the anchor is for 48 layers; scale it by model FLOPs/token (approximate for fewer layers)
        flops48 = flops_per_token(params_full, full_layers, hidden, seq, "qlora")
        scaled = a["tok_s_48_layers"] * flops48 / flops
        return {"anchor": "plain HF+peft+bnb QLoRA nf4, 48 layers of CodeLlama-34B on an H100 (DESIGN.md): 1,590 tok/s",
                "anchor_tok_s_for_these_layers": scaled, "scaled_by": "model FLOPs/token (approximate when layers < 48)",
                "ratio_to_anchor": tok_s / scaled, "target_ratio": a["target_ratio"],
                "meets_target": tok_s / scaled >= a["target_ratio"]}
    return None


def human(count: float) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.2f}M"


def print_table(report: dict[str, Any]) -> None:
    env, m, s, ln = report["environment"], report["model"], report["settings"], report["lengths"]
    where = env.get("gpu") or f"{env['cpu']}, {env['cpus']} cores, {env['torch_threads']} torch threads"
    print(f"model: {m['label']} ({m['layers']} of {m['layers_of_config']} layers, {human(m['base_parameters'])} base "
          f"parameters, {human(m['trainable_parameters'])} trainable), {m['peft']}, {m['dtype']}, attn {m['attn']}, "
          f"gradient checkpointing {'on' if m['gradient_checkpointing'] else 'off'}")
    print(f"built by: {m['built_by']}")
    print(f"device: {report['device']} ({where}); torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}")
    print(f"samples: log-normal lengths, median {ln['median_tokens']:.0f} tokens, sigma {ln['sigma']}, clipped to "
          f"[{ln['min_tokens']}, {ln['max_tokens']}] (mean {ln['mean_tokens']:.0f}, p90 {ln['p90']:.0f}); seq_length "
          f"{s['seq_length']}, {s['rows_per_micro_batch']} row(s) per micro-batch, {s['steps']} timed steps per mode "
          f"interleaved, each the best of {s['repeats']} run(s)")
    peak = report["peak_tflops"]
    print(f"MFU: {report['mfu_formula']} = {report['flops_per_token']:.3e} FLOPs/token over "
          + (f"{peak:.0f} TFLOP/s dense bf16 peak" if peak else "no peak (CPU; --peak-tflops to set one)"))
    head = f"{'mode':10}{'step s':>9}{'samples':>9}{'fill':>7}{'eff tok/s':>12}{'loss tok/s':>12}{'padded tok/s':>14}{'peak GB':>9}{'TFLOP/s':>9}{'MFU':>7}"
    print(head)
    for mode, name in (("padding", "padding"), ("pack", "pack")):
        r = report[mode]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_memory_gb']:.2f}" if r["peak_memory_gb"] is not None else "n/a"
        print(f"{name:10}{r['step_s_mean']:>9.3f}{r['samples_per_step']:>9.1f}{r['fill']:>7.2f}{r['effective_tokens_per_s']:>12,.0f}"
              f"{r['loss_tokens_per_s']:>12,.0f}{r['padded_tokens_per_s']:>14,.0f}{mem:>9}"
              f"{r['model_tflops_per_s']:>9.3f}{mfu:>7}")
    a = report["loss_agreement_first_packed_batch"]
    print(f"packing vs padding, effective tokens/s: {report['pack_vs_padding_effective_tokens_per_s']:.2f}x; "
          f"per-sample loss of the first packed batch ({a['samples']} samples, {a['dtype']}): max |diff| {a['max_abs_diff']:.2e}")
    if report.get("process_max_rss_gb") is not None and report["device"] == "cpu":
        print(f"peak memory: CUDA only; this CPU process's max RSS was {report['process_max_rss_gb']:.2f} GB (both modes)")
    anchors = report.get("anchors")
    if anchors:
        print("anchor: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in anchors.items()}))


def write_report(args, report: dict[str, Any], device) -> None:
    out = Path(args.out) if args.out else Path("runs/benchmarks") / f"training-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"raw figures: {out}")


if __name__ == "__main__":
    sys.exit(main())
