"""Turn a model's completion into the program the reference harness would have saved.

The reference harness decodes prompt + completion, removes the prefix, slices off the task prompt
(`generation[len(prompt):]`) and post-processes what is left. We receive only the completion, so
`reference_tail` rebuilds exactly what that slice held, and the task rules run on it:

1. stop sequences: the completion is cut at the first stop word or eos string, as generation
   would have stopped there (the harness's stopping criteria look at the new text only);
2. fork conventions (every format but `instruct`): a wrapper suffix inside the completion becomes
   "\\n"; the newline the fork appended to the prompt, and the "\\n" its suffix replacement leaves,
   lead the tail (so a stop word such as "\\ndef" can match at the very start, as in the fork);
3. the task's post-processing:
   - HumanEvalPack (synthesize, fixtests): `remove_last_block` on the right-stripped tail: cut at
     stop words; Python keeps lines up to the first non-empty line that is not indented (so a
     markdown fence at column 0 ends the body); brace languages cut after the `}` that closes the
     function, else after the last `}` (Java: also drops a `main` and closes the class). The
     program is the prompt base (docstring prompt / declaration), right-stripped, + that.
   - MBPP: the fork first picks the code block (a ``` fenced block, else the first `def` up to
     the next top-level line), then cuts at stop words; the program is the docstring prompt + it.
   - HumanEval: the stripped prompt + the tail cut at stop words.

An empty completion thus yields the bare prompt base, which fails its tests, as in the reference.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from jobs.code_benchmarks.data import split_benchmark
from jobs.code_benchmarks.prompts import (
    FormatLike,
    PromptFormat,
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


def reference_tail(benchmark: str, problem: dict[str, Any], completion: str, fmt: FormatLike) -> str:
    """What the reference harness's `generation[len(prompt):]` holds for this completion."""
    fmt = PromptFormat.of(fmt)
    if not fmt.fork_conventions:
        return completion
    _prefix, suffix = wrapper(benchmark, fmt)
    appended = prompt_contents(benchmark, problem, fmt)[len(task_prompt(benchmark, problem)):]
    if suffix:
        return appended + "\n" + completion.replace(suffix, "\n")
    return appended + completion


def postprocess(
    benchmark: str,
    problem: dict[str, Any],
    completion: str,
    fmt: FormatLike,
    eos: Sequence[str] = (),
) -> str:
    """The program the generation job saves for one completion (prompt base + cleaned code).

    `completion` is the decoded new text only (special tokens kept). `eos` adds end-of-sequence
    strings to the format's defaults, e.g. the tokenizer's eos token.
    """
    fmt = PromptFormat.of(fmt)
    words = stop_words(benchmark, fmt)
    family, lang = split_benchmark(benchmark)
    completion = cut_at_first(completion, [*words, *eos_strings(fmt, eos)])
    tail = reference_tail(benchmark, problem, completion, fmt)
    if family in ("humanevalsynthesize", "humanevalfixtests"):
        body = remove_last_block(lang or "python", tail.rstrip(), words)
        return prompt_base(benchmark, problem).rstrip() + body
    if family == "mbpp" and fmt.fork_conventions:
        tail = pick_code_block(tail)
    return task_prompt(benchmark, problem) + cut_at_first(tail, words)


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
