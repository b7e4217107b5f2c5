"""Measured peak memory of one training step beside the estimate `mftlaunch plan` prints.

Why: the planner refuses recipes by launcher/memory_estimate.py's estimate, which had never been
compared with a measurement. This script builds CodeLlama-34B's layer shape (hidden 8192,
intermediate 22016, 64 heads, 8 KV heads, from recipes/models/codellama-34b/config.json) with a
few layers, random bf16 weights, and runs training steps in LoRA, QLoRA (nf4, double quant) and
full fine-tuning through the project's own code (jobs.training.model.build_model,
jobs.training.engine.build_engine: the torch engine, AdamW), each mode in a fresh subprocess.

    python benchmarks/memory.py                       # CPU: 1 layer, vocab 4096, seq 256 (~3 min, ~9 GB)
    python benchmarks/memory.py --device cuda --layers 8 --vocab 32000 --seq-length 4096

Measured: CPU, the peak resident set size (RSS) of the subprocess while it runs two optimizer
steps (the first creates AdamW's state), sampled every 2 ms by a thread (psutil), after loading
and a malloc_trim so that the load's transient copies do not count; CUDA,
torch.cuda.max_memory_allocated over the same two steps (reset after loading). Estimated:
launcher.memory_estimate.estimate() for the same TrainStage and config, on the same device kind.
The vocabulary is reduced on CPU (--vocab) so that full fine-tuning fits a 24 GB machine; it is
printed, and the estimate uses the same config.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "recipes" / "models" / "codellama-34b" / "config.json"
MODES = ("lora", "qlora", "full")
GIB = 1024**3


def model_config(layers: int, vocab: int) -> dict[str, Any]:
    config = json.loads(CONFIG.read_text())
    config.update(num_hidden_layers=layers, vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return config


def train_stage(mode: str, seq_length: int, batch: int, device: str):
    from launcher.recipe import TrainStage

    return TrainStage.model_validate({
        "datasets": [{"path": "unused"}], "peft_type": mode, "seq_length": seq_length,
        "per_device_train_batch_size": batch, "gradient_checkpointing": True,
        "lora": {"rank": 96, "alpha": 32, "dropout": 0.0},
        "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
        "resources": {"gpus_per_node": 1 if device == "cuda" else 0},
    })


def estimate(mode: str, args: argparse.Namespace):
    from launcher import memory_estimate

    return memory_estimate.estimate(model_config(args.layers, args.vocab), train_stage(mode, args.seq_length, args.batch, args.device),
                                    "bf16", num_gpus=1, device=args.device)


def random_checkpoint(config: dict[str, Any], scratch: Path) -> Path:
    """Random bf16 weights of `config`, written once (QLoRA loads through from_pretrained)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder = scratch / f"codellama34b-shape-{config['num_hidden_layers']}l-v{config['vocab_size']}"
    if (folder / ".complete").is_file():
        return folder
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**config), dtype=torch.bfloat16)
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / ".complete").write_text("ok\n")
    return folder


class PeakSampler:
    """Highest RSS of this process seen by a thread polling every 2 ms."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> "PeakSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One mode, in this (fresh) process: build, two optimizer steps, the peak."""
    import gc

    import torch

    from jobs.training.engine import build_engine
    from jobs.training.model import build_model
    from launcher.recipe import ModelSpec

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    folder = random_checkpoint(model_config(args.layers, args.vocab), Path(args.scratch))
    spec = ModelSpec(path=str(folder), model_name="shape", model_type="codellama", dtype="bf16")
    train = train_stage(mode, args.seq_length, args.batch, args.device)
    net = build_model(spec, train, folder, device)
    engine = build_engine(net, spec, train, device, total_steps=2, warmup=0)
    gc.collect()
    if device.type == "cpu":
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    else:
        torch.cuda.reset_peak_memory_stats(device)
    ids = torch.randint(3, args.vocab, (args.batch, args.seq_length), generator=torch.Generator().manual_seed(0)).to(device)
    import psutil

    before = psutil.Process().memory_info().rss
    losses = []
    with PeakSampler() as sampler:
        for _ in range(2):
            logits = engine.module(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten())
            engine.set_boundary(True)
            engine.backward(loss)
            engine.step()
            losses.append(float(loss))
            del logits, loss
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else sampler.peak
    return {"mode": mode, "peak_bytes": peak, "rss_after_load_bytes": before, "losses": losses,
            "params": sum(p.numel() for p in net.parameters()),
            "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad)}


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--device", args.device,
           "--layers", str(args.layers), "--vocab", str(args.vocab), "--seq-length", str(args.seq_length),
           "--batch", str(args.batch), "--threads", str(args.threads), "--scratch", args.scratch]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    for name in ("torch", "transformers", "peft", "bitsandbytes"):
        out[name] = md.version(name)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--scratch", default=str(Path("runs/benchmarks/memory-scratch").resolve()))
    parser.add_argument("--out", help="raw figures as JSON")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    rows = []
    for mode in args.modes:
        measured = run_mode(mode, args)
        est = estimate(mode, args)
        error = est.per_gpu_gib * GIB / measured["peak_bytes"] - 1
        rows.append({**measured, "estimate_gib": est.per_gpu_gib, "estimate_parts": est.gpu_gib, "error": error})
    env = versions()
    print(f"CodeLlama-34B layer shape, {args.layers} layer(s), vocab {args.vocab}, seq {args.seq_length} x batch "
          f"{args.batch}, bf16 weights, gradient checkpointing, LoRA r96 (family targets), torch engine + AdamW; "
          f"device {args.device}; {env}")
    print(f"{'mode':8}{'params':>10}{'trainable':>11}{'measured GiB':>14}{'estimate GiB':>14}{'error':>8}")
    for r in rows:
        print(f"{r['mode']:8}{r['params'] / 1e6:>9.0f}M{r['trainable'] / 1e6:>10.1f}M{r['peak_bytes'] / GIB:>14.2f}"
              f"{r['estimate_gib']:>14.2f}{100 * r['error']:>7.1f}%")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "environment": env, "rows": rows}, indent=1) + "\n")
    worst = max(abs(r["error"]) for r in rows)
    print(f"largest |error|: {100 * worst:.1f}% (target: within 20%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
