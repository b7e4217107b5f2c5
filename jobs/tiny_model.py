"""A tiny llama-architecture model, built offline, for demos and CPU tests.

Why: the pipeline (train → merge → generate → evaluate) must run end to end on a laptop or a CI
machine with no network and no model hub. `model.path: builtin:tiny-llama` in a recipe names this
model; `resolve_model_path` turns it into a real Hugging Face directory (config.json, safetensors
weights, tokenizer files) that every stage loads like any other model.

The build is deterministic: the architecture comes from `recipes/models/tiny-llama/config.json`,
the tokenizer is a byte-level BPE trained on `recipes/models/tiny-llama/corpus.txt` (text shipped in
the repository, so the tokenizer does not depend on what else is on the machine), and the weights
are drawn from a fixed seed in a fixed parameter order. The cache directory name carries a hash of
the config, the corpus and `BUILD_VERSION`, so a change to any of them builds a new model instead
of reusing a stale one.

Concurrency: several ranks or array elements may ask for the model at once. The first takes a file
lock, builds into a temporary directory and renames it into place; the others wait on the lock and
then find the finished directory.

    python -m jobs.tiny_model build OUT_DIR        # build into OUT_DIR
    python -m jobs.tiny_model path builtin:tiny-llama   # build into the cache if needed, print path
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from launcher.contract import BUILTIN_MODEL_PREFIX, BUILTIN_MODELS, ENV_CACHE, is_builtin_model

#: Bump when the build code changes what it writes: the cache key changes with it.
BUILD_VERSION = 1
SEED = 20240601
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|role_start|>", "<|role_end|>",
    "<s>", "</s>", "<pad>",
)
EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<s>"
PAD_TOKEN = "<pad>"
COMPLETE_MARKER = ".mftlaunch-complete"



def cache_root() -> Path:
    """`$MFTLAUNCH_CACHE`, else ~/.cache/mftlaunch."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mftlaunch"


def _assets(name: str) -> tuple[Path, Path]:
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model '{BUILTIN_MODEL_PREFIX}{name}'; known: "
                         + ", ".join(BUILTIN_MODEL_PREFIX + n for n in BUILTIN_MODELS))
    folder = BUILTIN_MODELS[name]
    config, corpus = folder / "config.json", folder / "corpus.txt"
    for needed in (config, corpus):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} is missing: the built-in model's assets ship in the repository's "
                "recipes/models/ folder; run from a source checkout (pip install -e .)"
            )
    return config, corpus


def model_key(config_path: Path, corpus_path: Path) -> str:
    """Short hash of everything that decides the built model's bytes."""
    digest = hashlib.sha256()
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(b"\0")
    digest.update(Path(corpus_path).read_bytes())
    digest.update(f"\0build={BUILD_VERSION}\0seed={SEED}".encode())
    return digest.hexdigest()[:12]


def resolve_model_path(path: str) -> Path:
    """A model directory for `path`: plain paths are returned as they are; `builtin:<name>` is
    built into `<cache>/models/<name>-<hash>/` on first use (under a file lock) and reused after."""
    if not is_builtin_model(path):
        return Path(path)
    name = str(path)[len(BUILTIN_MODEL_PREFIX):]
    config, corpus = _assets(name)
    models_dir = cache_root() / "models"
    target = models_dir / f"{name}-{model_key(config, corpus)}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / COMPLETE_MARKER).is_file():
                return target
            if target.exists():  # a partial directory left by a crashed build (before the rename)
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{target.name}.tmp-"))
            try:
                build_tiny_model(tmp, config, corpus)
                (tmp / COMPLETE_MARKER).write_text(f"{BUILTIN_MODEL_PREFIX}{name}\n", encoding="utf-8")
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


# --------------------------------------------------------------------------------------------
# building


def train_tokenizer(corpus_text: str, vocab_size: int):
    """Byte-level BPE (GPT-2 style, no prefix space) with the special tokens first (ids 0..7).

    min_frequency=1 so a small corpus still fills the vocabulary; the size must equal the model's
    vocab_size, or a random model would emit ids that the tokenizer cannot decode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus_text], trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(
            f"tokenizer corpus yields {tok.get_vocab_size()} tokens, config wants {vocab_size}: "
            "extend corpus.txt or lower vocab_size"
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, BOS_TOKEN, PAD_TOKEN)],
        model_max_length=4096,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return fast


def _init_weights(model, seed: int, std: float) -> None:
    """Draw every parameter from one seeded generator in sorted-name order: independent of the
    transformers version's own init code, so the same config gives the same bytes."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if name.endswith("norm.weight"):
                tensor.fill_(1.0)
            elif name.endswith(".bias"):
                tensor.zero_()
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * std)


def build_tiny_model(out_dir, config_path=None, corpus_path=None) -> Path:
    """Build the tiny model into `out_dir` (created; must be empty if it exists). Returns it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    default_config, default_corpus = _assets("tiny-llama") if (config_path is None or corpus_path is None) else (None, None)
    config_path = Path(config_path or default_config)
    corpus_path = Path(corpus_path or default_corpus)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)

    raw = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer = train_tokenizer(corpus_path.read_text(encoding="utf-8"), int(raw["vocab_size"]))
    for key, token in (("eos_token_id", EOS_TOKEN), ("bos_token_id", BOS_TOKEN), ("pad_token_id", PAD_TOKEN)):
        if raw.get(key) != tokenizer.convert_tokens_to_ids(token):
            raise RuntimeError(f"{config_path}: {key} must be {tokenizer.convert_tokens_to_ids(token)} ({token})")

    config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype")})
    config.architectures = list(raw.get("architectures", ["LlamaForCausalLM"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _init_weights(model, SEED, float(raw.get("initializer_range", 0.02)))
    model.generation_config.eos_token_id = raw["eos_token_id"]
    model.generation_config.pad_token_id = raw["pad_token_id"]
    model.generation_config.bos_token_id = raw["bos_token_id"]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_class(out / "tokenizer_config.json")
    return out


def _portable_tokenizer_class(path: Path) -> None:
    """transformers 5 records its internal class name (TokenizersBackend), which 4.x cannot
    load; PreTrainedTokenizerFast names the same tokenizer in both."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.tiny_model", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build the tiny model into OUT_DIR")
    build.add_argument("out_dir")
    build.add_argument("--config", default=None, help="config.json (default: the repository's tiny-llama)")
    build.add_argument("--corpus", default=None, help="tokenizer training text (default: the repository's)")
    path = sub.add_parser("path", help="resolve a model path (building builtin: models into the cache)")
    path.add_argument("model")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build_tiny_model(args.out_dir, args.config, args.corpus))
    else:
        print(resolve_model_path(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
