"""Loading chat_rounds task directories: errors, split, overlong accounting, the shared cache."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mft_helpers import byte_tokenizer, chat, write_jsonl

from jobs.mft import cache, data
from jobs.mft.data import DataError, load_mft_data, read_task, validation_mask
from launcher.recipe import DatasetSpec, TrainStage

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def stage(*paths: Path, **fields) -> TrainStage:
    return TrainStage(datasets=[{"path": str(p)} for p in paths], **fields)


def test_reads_nested_files_in_order_with_role_aliases(tmp_path):
    write_jsonl(tmp_path / "t" / "b.jsonl", [chat("q2", "a2")])
    write_jsonl(tmp_path / "t" / "a" / "z.jsonl", [chat("q1", "a1", system="s"), ""])
    write_jsonl(tmp_path / "t" / "c.jsonl", [{"chat_rounds": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}]}])
    (tmp_path / "t" / "notes.txt").write_text("not data")
    convs = read_task(tmp_path / "t")
    assert [[(t.role, t.content) for t in c] for c in convs] == [
        [("system", "s"), ("human", "q1"), ("bot", "a1")],
        [("human", "q2"), ("bot", "a2")],
        [("human", "q3"), ("bot", "a3")],
    ]


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ({"prompt": "x", "answer": "y"}, "chat_rounds"),
        ({"chat_rounds": [{"role": "human", "content": "q"}, {"role": "robot", "content": "a"}]}, "unknown role 'robot'"),
        ({"chat_rounds": [{"role": "human", "content": "q"}, {"role": "human", "content": "q"}]}, "expected a bot turn"),
        ({"chat_rounds": [{"role": "human", "content": "q"}, {"role": "bot", "content": 3}]}, "content must be a string"),
        ({"chat_rounds": [{"role": "human", "content": "q"}]}, "must end with a bot turn"),
        ({"chat_rounds": [{"role": "human", "content": "q"}, {"role": "system", "content": "s"}]}, "system turn may only come first"),
        ({"chat_rounds": [{"role": "bot", "content": "a"}]}, "expected a human turn"),
        ({"chat_rounds": [{"content": "a"}]}, r"chat_rounds\[0\] must be an object with `role` and `content`"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    file = write_jsonl(tmp_path / "t" / "x.jsonl", [chat("q", "a"), "", row])
    with pytest.raises(DataError, match=message) as info:
        read_task(tmp_path / "t")
    assert f"{file}:3:" in str(info.value)


def test_all_bad_rows_are_listed_not_just_the_first(tmp_path):
    file = write_jsonl(tmp_path / "t" / "x.jsonl", ["{", chat("q", "a"), "[1]"])
    with pytest.raises(DataError) as info:
        read_task(tmp_path / "t")
    assert "2 bad row(s)" in str(info.value) and f"{file}:1:" in str(info.value) and f"{file}:3:" in str(info.value)


def test_missing_and_empty_datasets(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_task(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.jsonl"):
        read_task(tmp_path / "empty")


def test_duplicate_task_names_are_rejected(tmp_path, tok):
    write_jsonl(tmp_path / "a" / "t" / "x.jsonl", [chat("q", "a")])
    write_jsonl(tmp_path / "b" / "t" / "x.jsonl", [chat("q", "a")])
    with pytest.raises(ValueError, match="unique"):
        stage(tmp_path / "a" / "t", tmp_path / "b" / "t")
    # the recipe refuses it; a stage built without validation is refused by the loader too
    unchecked = TrainStage.model_construct(
        datasets=[DatasetSpec(path=str(tmp_path / "a" / "t")), DatasetSpec(path=str(tmp_path / "b" / "t"))]
    )
    with pytest.raises(DataError, match="unique, repeated: t"):
        load_mft_data(unchecked, tok, tmp_path / "cache")


def test_validation_split_is_deterministic_disjoint_and_per_task():
    first = validation_mask(100, 0.1, seed=3, task="a")
    assert first.sum() == 10 and np.array_equal(first, validation_mask(100, 0.1, seed=3, task="a"))
    assert not np.array_equal(first, validation_mask(100, 0.1, seed=4, task="a"))
    assert not np.array_equal(first, validation_mask(100, 0.1, seed=3, task="b"))
    assert validation_mask(5, 0.01, seed=0, task="a").sum() == 1  # small tasks keep one for validation
    assert validation_mask(2, 0.9, seed=0, task="a").sum() == 1  # ... and one for training
    assert validation_mask(1, 0.5, seed=0, task="a").sum() == 0
    assert validation_mask(50, 0.0, seed=0, task="a").sum() == 0


def test_tiny_sample_data_loads_and_splits(tmp_path, tok):
    root = REPO / "recipes" / "data" / "tiny_mft"
    st = stage(root / "codegen", root / "explain", root / "unittest", seq_length=4096, validation_split=0.1)
    loaded = load_mft_data(st, tok, tmp_path / "cache")
    assert loaded.task_names == ["codegen", "explain", "unittest"]
    assert loaded.summary()["overlong"] == 0 and loaded.summary()["dropped_no_target"] == 0
    for s in loaded.stats:
        assert 20 <= s.conversations <= 40 and s.samples == s.conversations
        assert s.valid_samples == round(s.conversations * 0.1) and s.train_samples + s.valid_samples == s.samples
    assert len(loaded.train) + len(loaded.valid) == sum(s.samples for s in loaded.stats)
    assert sorted(set(loaded.valid.task_ids.tolist())) == [0, 1, 2]
    # the split is over conversations, so it survives a different seq_length
    again = load_mft_data(st.model_copy(update={"seq_length": 2048}), tok, tmp_path / "cache")
    assert np.array_equal(again.valid.tokens, loaded.valid.tokens)


def long_short_rows():
    """Tokens with the byte tokenizer and chatml: context = 19 + len(q), target = len(a) + 1;
    seq_length 64 allows 65 tokens."""
    return [
        chat("q", "a" * 10),  # 20 + 11 = 31 tokens
        chat("q" * 60, "a"),  # 79 context: over the limit before the answer starts
        chat("q", "a" * 50),  # 20 + 51 = 71: over, truncation keeps 45 targets
        chat("q", "b" * 5),  # 20 + 6 = 26
    ]


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("truncate", dict(samples=3, overlong=2, truncated=1, dropped_overlong=0, dropped_no_target=1)),
        ("drop", dict(samples=2, overlong=2, truncated=0, dropped_overlong=2, dropped_no_target=0)),
    ],
)
def test_overlong_samples_are_counted(tmp_path, tok, policy, expected, caplog):
    write_jsonl(tmp_path / "t" / "x.jsonl", long_short_rows())
    loaded = load_mft_data(stage(tmp_path / "t", seq_length=64, overlong=policy, validation_split=0), tok, tmp_path / "c")
    [s] = loaded.stats
    assert {k: getattr(s, k) for k in expected} == expected
    assert loaded.train.lengths.max() <= 64
    if policy == "truncate":
        assert sorted(loaded.train.lengths.tolist()) == [25, 30, 64]
        assert s.target_tokens == 11 + 45 + 6
    assert "over seq_length" in caplog.text


def test_a_dataset_with_no_usable_sample_is_an_error(tmp_path, tok):
    write_jsonl(tmp_path / "t" / "x.jsonl", [chat("q" * 60, "a")])
    with pytest.raises(DataError, match="no usable sample"):
        load_mft_data(stage(tmp_path / "t", seq_length=64), tok, tmp_path / "c")


def test_target_counts_and_no_bos_added(tmp_path, tok):
    write_jsonl(tmp_path / "t" / "x.jsonl", [chat("hi", "abc")])
    loaded = load_mft_data(stage(tmp_path / "t", template="codefuse", validation_split=0), tok, tmp_path / "c")
    ids, targets = loaded.train.sample(0)
    assert tok.decode(ids.tolist()) == "<|role_start|>human<|role_end|>hi<|role_start|>bot<|role_end|>abc</s>"
    assert targets.tolist()[-4:] == [1, 1, 1, 1] and targets.sum() == 4
    assert loaded.stats[0].target_tokens == 4 and loaded.pad_id == tok.pad_token_id


def test_a_target_only_on_the_first_token_is_no_target(tmp_path, tok):
    """The first token is never predicted, so a sample whose only target is token 0 is dropped."""
    write_jsonl(tmp_path / "t" / "x.jsonl", [chat("", "x"), chat("q", "yz")])
    custom = {"human_prefix": "", "bot_prefix": "", "bot_end": ""}
    loaded = load_mft_data(
        stage(tmp_path / "t", template="custom", custom_template=custom, validation_split=0), tok, tmp_path / "c"
    )
    assert loaded.stats[0].dropped_no_target == 1 and loaded.stats[0].samples == 1
    assert tok.decode(loaded.train.sample(0)[0].tolist()) == "qyz"


# --------------------------------------------------------------------------------------------
# the cache


def counting_tokenizer(monkeypatch):
    calls = []
    original = data.tokenize_task

    def counted(task, *args, **kwargs):
        calls.append(task)
        return original(task, *args, **kwargs)

    monkeypatch.setattr(data, "tokenize_task", counted)
    return calls


def test_cache_hit_and_miss(tmp_path, tok, monkeypatch):
    calls = counting_tokenizer(monkeypatch)
    write_jsonl(tmp_path / "a" / "x.jsonl", [chat("q", "a")] * 3)
    write_jsonl(tmp_path / "b" / "x.jsonl", [chat("q", "b")] * 3)
    st = stage(tmp_path / "a", tmp_path / "b", seq_length=128)
    first = load_mft_data(st, tok, tmp_path / "cache")
    assert calls == ["a", "b"] and first.built == ["a", "b"]

    second = load_mft_data(st, tok, tmp_path / "cache")
    assert calls == ["a", "b"] and second.built == []
    assert np.array_equal(second.train.tokens, first.train.tokens)

    write_jsonl(tmp_path / "b" / "x.jsonl", [chat("q", "B")] * 3)  # content changed
    assert load_mft_data(st, tok, tmp_path / "cache").built == ["b"]
    assert load_mft_data(st.model_copy(update={"seq_length": 256}), tok, tmp_path / "cache").built == ["a", "b"]
    assert load_mft_data(st.model_copy(update={"template": "codefuse"}), tok, tmp_path / "cache").built == ["a", "b"]
    other_tok = byte_tokenizer()
    other_tok.add_tokens(["<extra>"])
    assert load_mft_data(st, other_tok, tmp_path / "cache").built == ["a", "b"]
    # validation split and seed are applied after the cache: no re-tokenization
    assert load_mft_data(st.model_copy(update={"validation_split": 0.5, "seed": 9}), tok, tmp_path / "cache").built == []
    assert calls == ["a", "b", "b", "a", "b", "a", "b", "a", "b"]


def test_other_ranks_wait_for_rank_zero(tmp_path, tok, monkeypatch):
    calls = counting_tokenizer(monkeypatch)
    write_jsonl(tmp_path / "t" / "x.jsonl", [chat("q", "a")] * 4)
    st = stage(tmp_path / "t", seq_length=128)
    results = {}

    def rank1():
        results[1] = load_mft_data(st, tok, tmp_path / "cache", rank=1, timeout_s=30)

    waiter = threading.Thread(target=rank1)
    waiter.start()
    time.sleep(1.5)
    assert waiter.is_alive() and calls == []  # rank 1 waits and does not tokenize
    results[0] = load_mft_data(st, tok, tmp_path / "cache", rank=0)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert calls == ["t"] and results[0].built == ["t"] and results[1].built == []
    assert np.array_equal(results[1].train.tokens, results[0].train.tokens)


def test_waiting_rank_times_out_with_a_clear_message(tmp_path, tok):
    write_jsonl(tmp_path / "t" / "x.jsonl", [chat("q", "a")])
    with pytest.raises(cache.CacheWaitTimeout, match="storage that all nodes share"):
        load_mft_data(stage(tmp_path / "t"), tok, tmp_path / "cache", rank=3, timeout_s=0.5)


def test_builder_failure_stops_the_waiters(tmp_path):
    entry = tmp_path / "entry"

    def failing(_tmp: Path) -> None:
        time.sleep(0.5)
        raise RuntimeError("disk full")

    errors = []

    def waiter():
        try:
            cache.build_once(entry, failing, is_builder=False, timeout_s=30, poll_s=0.05)
        except cache.CacheBuildFailed as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=waiter)
    thread.start()
    with pytest.raises(RuntimeError, match="disk full"):
        cache.build_once(entry, failing, is_builder=True)
    thread.join(timeout=10)
    assert errors and "disk full" in errors[0]
    assert not entry.exists() and not list(tmp_path.glob("entry.tmp*"))
    # a later successful build replaces the failure
    assert cache.build_once(entry, lambda d: (d / "f").write_text("x"), is_builder=True) is True
    assert (entry / "f").read_text() == "x" and not (tmp_path / "entry.failed").exists()
    assert cache.build_once(entry, failing, is_builder=True) is False  # ready: nothing is rebuilt


def test_incomplete_entry_is_rebuilt(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "partial").write_text("killed mid-write")
    assert cache.build_once(entry, lambda d: (d / "f").write_text("x"), is_builder=True) is True
    assert sorted(p.name for p in entry.iterdir()) == ["READY", "f"]
