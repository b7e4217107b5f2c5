"""Turn a model's completion into the program the reference harness would have saved.

The reference harness decodes prompt + completion as one string and post-processes that string;
`postprocess` does the same, step by step, on the string the reference would have decoded
(docs/EVALUATION.md, "Saved programs", lists every rule with its source):

1. the decoded text: the reference slices its prefix (the format's wrapper) off, so it holds the
   prompt contents + the wrapper suffix + the completion (`decoded_generation`). Every format but
   `instruct` follows the MFTCoder competition fork here: the prompt contents end with a "\\n"
   the fork appends, every occurrence of the wrapper suffix becomes "\\n", then every occurrence of
   the eos token is removed (`str.replace`, not a cut: text after it stays);
2. the task's post-processing, on that text, with the task's stop words plus the eos token (the
   harness appends the tokenizer's eos to every task's stop words):
   - HumanEvalPack (synthesize, fixtests): `generation[len(prompt):]` right-stripped FIRST, then
     `remove_last_block`: cut at each stop word, then Python keeps the lines before the first
     non-empty line that is not indented; brace languages cut after the `}` that closes the
     function, else after the last `}` (Java: also drops a `main` and closes the class). The
     program is the prompt base (docstring prompt / declaration), right-stripped, + that;
   - MBPP: the fork first picks the code block (a ``` fenced block, else the first `def` up to
     the next top-level line), then cuts at stop words; the program is the docstring prompt + it;
   - HumanEval: the stripped prompt + the tail cut at stop words.

The eos token is the one string the reference removes or stops at: for `competition` the
recipe's first `eos:` else `<|im_end|>` (MFTCoder's competition script passes `--eos <|im_end|>`,
which replaces the tokenizer's); for `instruct` the tokenizer's eos (upstream ignores `--eos`),
else `<|endoftext|>` (`reference_eos`). Other eos strings only stop generation; where they
appear in a completion they are treated as the reference treats any text.

An empty completion thus yields the bare prompt base, which fails its tests, as in the reference.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from jobs.code_benchmarks.data import split_benchmark
from jobs.code_benchmarks.prompts import (
    FormatLike,
    PromptFormat,
    default_eos,
    eos_strings,
    prompt_base,
    prompt_contents,
    stop_words,
    task_prompt,
    wrapper,
)

FENCE = "```"


def cut_at_first(text: str, markers: Iterable[str]) -> str:
    """`text` up to the earliest occurrence of any marker (all of it when none occurs)."""
    end = len(text)
    for marker in markers:
        if not marker:
            continue
        pos = text.find(marker)
        if pos != -1 and pos < end:
            end = pos
    return text[:end]


def remove_last_block(language: str, code: str, words: Sequence[str]) -> str:
    """The HumanEvalPack rule: stop words, then the end of the first function."""
    for word in words:  # one after the other, as the reference does (same as the earliest cut)
        pos = code.find(word)
        if pos != -1:
            code = code[:pos]
    if language == "python":
        lines = code.split("\n")
        for number, line in enumerate(lines):
            if line.strip() and line[0] not in (" ", "\t"):
                return "\n".join(lines[:number])
        return code
    depth = 2 if language == "java" else 1  # java: class and method are already open
    for pos, char in enumerate(code):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0:
            return code[: pos + 1]
    if language == "java":
        main_at = code.find("public static void main")
        if main_at != -1:
            code = code[:main_at] + "}"
        if "}" in code:
            code = code[: code.rfind("}")] + "}"
        if code.count("{") - 1 == code.count("}"):
            code += "\n}"
    elif "}" in code:
        code = code[: code.rfind("}")] + "}"
    return code


def pick_code_block(text: str) -> str:
    """The fork's MBPP rule: the first fenced block if there is a fence anywhere, else the lines
    from the first `def ` to the next non-indented line that is not another `def`."""
    out: list[str] = []
    lines = text.split("\n")
    if FENCE in text:
        inside = False
        for line in lines:
            if not inside:
                inside = line.startswith(FENCE)
                continue
            if line.rstrip().endswith(FENCE):
                out.append(line.rstrip()[: -len(FENCE)])
                break
            out.append(line)
    else:
        inside = False
        for line in lines:
            if not inside:
                if line.startswith("def "):
                    inside = True
                    out.append(line)
                continue
            if line and not line[0].isspace() and not line.startswith("def"):
                break
            out.append(line)
    return "".join(line + "\n" for line in out)


def reference_eos(fmt: FormatLike, tokenizer_eos: Sequence[str] = ()) -> str:
    """The eos token the reference harness removes (fork) or stops at (upstream)."""
    fmt = PromptFormat.of(fmt)
    if fmt.name == "instruct":
        return next((e for e in tokenizer_eos if e), default_eos(fmt)[0])
    if fmt.eos:
        return fmt.eos[0]
    defaults = default_eos(fmt)
    return defaults[0] if defaults else next((e for e in tokenizer_eos if e), "")


def decoded_generation(benchmark: str, problem: dict[str, Any], completion: str, fmt: FormatLike,
                       eos_token: str) -> str:
    """What the reference hands to the task's post-processing: the decoded prompt + completion
    without the wrapper prefix; in fork formats the suffix becomes "\\n" and the eos token goes."""
    fmt = PromptFormat.of(fmt)
    _prefix, suffix = wrapper(benchmark, fmt)
    text = prompt_contents(benchmark, problem, fmt) + suffix + completion
    if fmt.fork_conventions:
        if suffix:
            text = text.replace(suffix, "\n")
        if eos_token:
            text = text.replace(eos_token, "")
    return text


def postprocess(
    benchmark: str,
    problem: dict[str, Any],
    completion: str,
    fmt: FormatLike,
    eos: Sequence[str] = (),
) -> str:
    """The program the generation job saves for one completion (prompt base + cleaned code).

    `completion` is the decoded new text only (special tokens kept). `eos` holds the tokenizer's
    eos token (see `reference_eos` for which string counts as the eos token)."""
    fmt = PromptFormat.of(fmt)
    eos_token = reference_eos(fmt, eos)
    words = stop_words(benchmark, fmt) + ([eos_token] if eos_token else [])
    family, lang = split_benchmark(benchmark)
    prompt = task_prompt(benchmark, problem)
    tail = decoded_generation(benchmark, problem, completion, fmt, eos_token)[len(prompt):]
    if family in ("humanevalsynthesize", "humanevalfixtests"):
        body = remove_last_block(lang or "python", tail.rstrip(), words)
        return prompt_base(benchmark, problem).rstrip() + body
    if family == "mbpp" and fmt.fork_conventions:
        tail = pick_code_block(tail)
    return prompt + cut_at_first(tail, words)


def is_finished(benchmark: str, fmt: FormatLike, completion: str, eos: Sequence[str] = ()) -> bool:
    """The reference's stopping check on the new text, for a generator that wants to stop early:
    a stop word or eos string appeared; for HumanEvalPack also a non-indented line (Python) or
    the function's braces balanced (others). Stopping here never changes the post-processed
    program; it only saves tokens."""
    fmt = PromptFormat.of(fmt)
    if any(marker and marker in completion for marker in [*stop_words(benchmark, fmt), *eos_strings(fmt, eos)]):
        return True
    family, lang = split_benchmark(benchmark)
    if family not in ("humanevalsynthesize", "humanevalfixtests"):
        return False
    if lang == "python":
        return any(line.strip() and line[0] not in (" ", "\t") for line in completion.split("\n"))
    already_open = 2 if lang == "java" else 1
    return completion.count("{") + already_open == completion.count("}")
