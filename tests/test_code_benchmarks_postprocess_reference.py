"""Saved programs are byte-identical to the reference harnesses' (docs/EVALUATION.md, "Saved programs").

tests/data/postprocess_reference.json holds 714 cases: problem 0 of each of the 13 competition
tasks and HumanEval, in format `competition` (MFTCoder's competition fork, codefuse-ai/MFTCoder
@ 2b978dce, `--eos <|im_end|>` as its competition script passes) and `instruct` (upstream
bigcode-evaluation-harness @ 8fc5bae, with a tokenizer whose eos is `<|im_end|>` or
`<|endoftext|>`), times the completions below. Each row's `program_sha256` is the sha256 of the
program the reference harness itself saved for that completion: its own decoding steps
(`complete_code`: prefix sliced off, suffix -> "\\n", eos removed) and its task's
`postprocess_generation`, run outside this repository. `program_tail` is the part after the
prompt base, to read a failure.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jobs.code_benchmarks.data import load_benchmark
from jobs.code_benchmarks.postprocess import postprocess
from launcher.contract import ALL_BENCHMARKS

TABLE = json.loads((Path(__file__).parent / "data" / "postprocess_reference.json").read_text(encoding="utf-8"))

#: the rule each completion exercises (Python-like tasks, then brace languages)
RULES = {
    "empty": "an empty completion: the bare prompt base",
    "eos-only": "a completion that is only the eos token",
    "eos-then-text": "fork: every eos occurrence is removed (str.replace), text after it stays; upstream: the eos is a stop word",
    "stop-exactly-at-end": "the completion ends exactly at a stop word",
    "stop-prefix-only": "the completion ends before a stop word is complete",
    "stop-then-more": "the completion goes on after a stop word",
    "trailing-space-before-stop": "trailing spaces and newlines of the lines a stop word cut are kept (the tail is right-stripped before the cut)",
    "stop-at-position-0": "a stop word at position 0 (matched through the newline before the completion)",
    "several-stops": "several stop words: the earliest wins",
    "fenced": "a fenced code block",
    "text-then-fence": "prose before a fenced block",
    "stray-special-token": "stray special tokens",
    "suffix-in-completion": "the wrapper suffix inside the completion becomes a newline (fork)",
    "trailing-newlines": "trailing newlines",
    "non-indented-line": "python: the first non-empty line that is not indented ends the body",
    "file-sep": "bigcode humaneval's <file_sep> stop word",
    "crlf": "carriage returns are ordinary characters",
    "closing-brace": "the } that closes the function ends the body",
    "brace-then-more": "text after the closing brace is dropped",
    "unbalanced": "no closing brace: cut after the last }",
    "no-brace": "no brace at all: kept as is (right-stripped)",
    "trailing-space": "trailing spaces and newlines",
    "nested": "nested braces are counted",
    "brace-in-string": "braces inside strings count too (the reference counts characters)",
    "endoftext-stop": "<|endoftext|> is a HumanEvalPack stop word",
    "java-main": "java: an unclosed main is dropped and the class closed",
    "go-stop-words": "go: the stop words \\n//, struct, \\nfunc",
    "go-comment-at-0": "go: a stop word at position 0",
}
PROBLEMS = {b: load_benchmark(b, None, limit=1).problems[0] for b in ALL_BENCHMARKS}


def test_the_table_covers_both_formats_every_task_and_every_rule():
    assert {(r["format"], r["benchmark"]) for r in TABLE} == {(f, b) for f in ("competition", "instruct") for b in ALL_BENCHMARKS}
    assert {r["case"] for r in TABLE} == set(RULES)


@pytest.mark.parametrize("row", TABLE, ids=[f"{r['format']}-{r['benchmark']}-{r['case']}-{r['tokenizer_eos'][0]}" for r in TABLE])
def test_saved_program_is_byte_identical_to_the_reference(row):
    program = postprocess(row["benchmark"], PROBLEMS[row["benchmark"]], row["completion"], row["format"], row["tokenizer_eos"])
    assert program.endswith(row["program_tail"]), RULES[row["case"]]
    assert hashlib.sha256(program.encode("utf-8")).hexdigest() == row["program_sha256"], RULES[row["case"]]
