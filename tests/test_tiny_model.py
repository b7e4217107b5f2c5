"""The built-in tiny model: deterministic, loadable, cached once under a lock."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import tiny_model

REPO = Path(__file__).resolve().parents[1]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _build_in_subprocess(out: Path) -> None:
    # a fresh process each time: Rust's hash maps in `tokenizers` are seeded per process, so this
    # catches iteration-order nondeterminism that two builds in one process could hide
    subprocess.run([sys.executable, "-m", "jobs.tiny_model", "build", str(out)], cwd=REPO, check=True,
                   capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    _build_in_subprocess(out)
    return out


def test_two_builds_are_byte_identical(built, tmp_path):
    second = tmp_path / "again"
    _build_in_subprocess(second)
    first_files, second_files = _digests(built), _digests(second)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(first_files)
    assert first_files == second_files


def test_loads_with_auto_classes_and_matches_config(built):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    repo_config = json.loads((REPO / "recipes/models/tiny-llama/config.json").read_text())
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == repo_config["vocab_size"] == len(tok)
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == model.config.eos_token_id
    assert tok.pad_token == "<pad>" and tok.pad_token_id == model.config.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params * 4 < 8 * 2**20, "the tiny model must stay a few MB"
    for special in tiny_model.SPECIAL_TOKENS:
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{special} must be a single token"


def test_round_trip_code_with_special_tokens(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    text = ("<|im_start|>user\nWrite add<|im_end|>\n<|im_start|>assistant\n"
            "def add(a, b):\n\treturn a + b  # ünï 中文\n<|im_end|><|role_start|>bot<|role_end|></s><|endoftext|>")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids
    assert "<|im_end|>" not in tok.decode(ids, skip_special_tokens=True)


def test_plain_paths_pass_through(tmp_path):
    assert tiny_model.resolve_model_path(str(tmp_path)) == tmp_path
    assert tiny_model.resolve_model_path("org/some-model") == Path("org/some-model")


def test_unknown_builtin_is_named():
    with pytest.raises(ValueError, match="builtin:tiny-llama"):
        tiny_model.resolve_model_path("builtin:huge-llama")


def test_resolve_builds_once_into_cache_even_when_raced(tmp_path, built, monkeypatch):
    cache = tmp_path / "cache"
    env = {**os.environ, "MFTLAUNCH_CACHE": str(cache)}
    code = "from jobs.tiny_model import resolve_model_path as r; print(r('builtin:tiny-llama'))"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    paths = {p.communicate()[0].strip().splitlines()[-1] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    target = Path(paths.pop())
    assert target.parent == cache / "models" and target.name.startswith("tiny-llama-")
    assert (target / tiny_model.COMPLETE_MARKER).is_file()
    # no temporary build directories left behind; weights equal a direct build
    assert [p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")] == [target.name]
    assert _digests(target)["model.safetensors"] == _digests(built)["model.safetensors"]
    # a second resolve reuses it (no rebuild: the directory's inode is unchanged)
    inode = target.stat().st_ino
    monkeypatch.setenv("MFTLAUNCH_CACHE", str(cache))
    assert tiny_model.resolve_model_path("builtin:tiny-llama") == target
    assert target.stat().st_ino == inode


def test_cache_key_follows_config(tmp_path):
    config, corpus = tiny_model._assets("tiny-llama")
    changed = tmp_path / "config.json"
    changed.write_text(config.read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3'))
    assert tiny_model.model_key(config, corpus) != tiny_model.model_key(changed, corpus)
    assert tiny_model.model_key(config, corpus) == tiny_model.model_key(config, corpus)
