"""Prompt strings per task and format, checked against hand-written expectations."""
from __future__ import annotations

import pytest

from jobs.code_benchmarks import prompts
from launcher import contract
from jobs.code_benchmarks.data import load_benchmark
from jobs.code_benchmarks.prompts import PromptFormat, build_prompt, task_prompt

# A small synthetic HumanEvalPack row: every field the prompts use, short enough to write out.
PACK_ROW = {
    "task_id": "Python/0",
    "prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
    "declaration": "def add(a, b):\n",
    "buggy_solution": "    return a - b\n",
    "canonical_solution": "    return a + b\n",
    "test": "def check(add):\n    assert add(1, 2) == 3\ncheck(add)\n",
    "entry_point": "add",
    "instruction": "Write a Python function `add(a, b)` to solve the following problem:\nAdd two numbers.\n",
}
MBPP_ROW = {"task_id": 11, "text": "Add two numbers.", "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}

SYNTH_INSTRUCT = (
    "Write a Python function `add(a, b)` to solve the following problem:\nAdd two numbers.\n\n"
    "def add(a, b):\n    \"\"\"Add two numbers.\"\"\""
)
FIX_INSTRUCT = (
    "def add(a, b):\n    return a - b\n\ndef check(add):\n    assert add(1, 2) == 3\ncheck(add)\n\n"
    "Fix bugs in add.\n\ndef add(a, b):"
)
MBPP_TASK = '"""\nAdd two numbers.\nassert add(1, 2) == 3\n"""\n'
CHATML_OPEN = "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n"


@pytest.mark.parametrize(
    "benchmark,row,fmt,expected",
    [
        ("humanevalsynthesize-python", PACK_ROW, "instruct", SYNTH_INSTRUCT),
        ("humanevalsynthesize-python", PACK_ROW, "competition", SYNTH_INSTRUCT + "\n"),
        ("humanevalsynthesize-python", PACK_ROW, "chatml",
         CHATML_OPEN + SYNTH_INSTRUCT + "\n<|im_end|>\n<|im_start|>assistant\n"),
        ("humanevalsynthesize-python", PACK_ROW, "codefuse",
         "<|role_start|>human<|role_end|>" + SYNTH_INSTRUCT + "\n<|role_start|>bot<|role_end|>"),
        ("humanevalfixtests-python", PACK_ROW, "instruct", FIX_INSTRUCT),
        ("humanevalfixtests-python", PACK_ROW, "competition", FIX_INSTRUCT + "\n"),
        ("mbpp", MBPP_ROW, "instruct", MBPP_TASK),
        ("mbpp", MBPP_ROW, "competition", CHATML_OPEN + MBPP_TASK + "<|im_end|>\n<|im_start|>assistant"),
        ("mbpp", MBPP_ROW, "chatml", CHATML_OPEN + MBPP_TASK + "<|im_end|>\n<|im_start|>assistant\n"),
        ("mbpp", MBPP_ROW, "codefuse", "<|role_start|>human<|role_end|>" + MBPP_TASK + "<|role_start|>bot<|role_end|>"),
        ("humaneval", PACK_ROW, "instruct", "def add(a, b):\n    \"\"\"Add two numbers.\"\"\""),
        ("humaneval", PACK_ROW, "competition", "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n"),
    ],
)
def test_prompt_strings_synthetic(benchmark, row, fmt, expected):
    assert build_prompt(benchmark, row, fmt) == expected


def test_custom_format_wraps_system_prefix_suffix():
    fmt = PromptFormat(name="custom", prefix="<U>", suffix="<A>", system="<S>sys</S>")
    assert build_prompt("mbpp", MBPP_ROW, fmt) == "<S>sys</S><U>" + MBPP_TASK + "<A>"
    assert build_prompt("humaneval", PACK_ROW, fmt) == "<S>sys</S><U>def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n<A>"


def test_prefix_only_for_custom():
    with pytest.raises(ValueError, match="custom"):
        PromptFormat(name="chatml", prefix="x")
    with pytest.raises(ValueError, match="unknown prompt format"):
        PromptFormat(name="alpaca")


def test_rust_fix_prompt_base_has_main():
    row = dict(PACK_ROW, declaration="fn add(a: i32, b: i32) -> i32{\n", buggy_solution="    a - b\n}\n", test="#[test]\nfn t(){}\n")
    assert prompts.prompt_base("humanevalfixtests-rust", row) == "fn main(){}\nfn add(a: i32, b: i32) -> i32{\n"
    assert task_prompt("humanevalfixtests-rust", row) == (
        "fn main(){}\nfn add(a: i32, b: i32) -> i32{\n    a - b\n}\n\n#[test]\nfn t(){}\n\n"
        "Fix bugs in add.\n\nfn main(){}\nfn add(a: i32, b: i32) -> i32{"
    )


# ----- real problems, written out by hand


def test_real_synthesize_python_0(data_dir):
    row = load_benchmark("humanevalsynthesize-python", data_dir, limit=1).problems[0]
    expected = (
        "Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool` to solve the following problem:\n"
        "Check if in given list of numbers, are any two numbers closer to each other than\n"
        "given threshold.\n"
        ">>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n"
        "False\n"
        ">>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n"
        "True\n"
        "\n"
        "from typing import List\n"
        "\n"
        "\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
        "    given threshold.\n"
        "    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n"
        "    False\n"
        "    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n"
        "    True\n"
        '    """'
    )
    assert build_prompt("humanevalsynthesize-python", row, "instruct") == expected
    assert build_prompt("humanevalsynthesize-python", row, "competition") == expected + "\n"


def test_real_fixtests_go_0_ending(data_dir):
    row = load_benchmark("humanevalfixtests-go", data_dir, limit=1).problems[0]
    text = build_prompt("humanevalfixtests-go", row, "competition")
    assert text.startswith("func HasCloseElements(numbers []float64, threshold float64) bool {\n"
                           "    for i := 0; i < len(numbers); i++ {\n")
    assert text.endswith("\n}\n\nFix bugs in HasCloseElements.\n\n\nfunc HasCloseElements(numbers []float64, threshold float64) bool {\n")
    assert "func TestHasCloseElements(t *testing.T) {" in text  # the tests are shown to the model


def test_real_fixtests_java_0_ending(data_dir):
    row = load_benchmark("humanevalfixtests-java", data_dir, limit=1).problems[0]
    text = build_prompt("humanevalfixtests-java", row, "instruct")
    assert text.startswith("import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n")
    assert text.endswith(
        "            throw new AssertionError();\n        }\n    }\n}\nFix bugs in hasCloseElements.\n\n"
        "import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n"
        "    public boolean hasCloseElements(List<Double> numbers, double threshold) {"
    )


def test_real_synthesize_js_2(data_dir):
    row = load_benchmark("humanevalsynthesize-js", data_dir, limit=3).problems[2]
    assert build_prompt("humanevalsynthesize-js", row, "codefuse") == (
        "<|role_start|>human<|role_end|>"
        "Write a JavaScript function `const truncateNumber = (number)` to solve the following problem:\n"
        "Given a positive floating point number, it can be decomposed into\n"
        "and integer part (largest integer smaller than given number) and decimals\n"
        "(leftover part always smaller than 1).\n"
        "Return the decimal part of the number.\n"
        ">>> truncateNumber(3.5)\n"
        "0.5\n"
        "\n"
        "/* Given a positive floating point number, it can be decomposed into\n"
        "  and integer part (largest integer smaller than given number) and decimals\n"
        "  (leftover part always smaller than 1).\n"
        "\n"
        "  Return the decimal part of the number.\n"
        "  >>> truncateNumber(3.5)\n"
        "  0.5\n"
        "  */\n"
        "const truncateNumber = (number) => {\n"
        "<|role_start|>bot<|role_end|>"
    )


def test_real_mbpp_first_is_task_11(data_dir):
    data = load_benchmark("mbpp", data_dir, limit=2)
    assert [p["task_id"] for p in data.problems] == [11, 12]
    assert build_prompt("mbpp", data.problems[0], "competition") == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n"
        '"""\nWrite a python function to remove first and last occurrence of a given character from the string.\n'
        'assert remove_Occ("hello","l") == "heo"\n"""\n'
        "<|im_end|>\n<|im_start|>assistant"
    )


def test_real_humaneval_2(data_dir):
    row = load_benchmark("humaneval", data_dir, limit=3).problems[2]
    assert build_prompt("humaneval", row, "instruct") == (
        "def truncate_number(number: float) -> float:\n"
        '    """ Given a positive floating point number, it can be decomposed into\n'
        "    and integer part (largest integer smaller than given number) and decimals\n"
        "    (leftover part always smaller than 1).\n"
        "\n"
        "    Return the decimal part of the number.\n"
        "    >>> truncate_number(3.5)\n"
        "    0.5\n"
        '    """'
    )


@pytest.mark.parametrize("benchmark", contract.ALL_BENCHMARKS)
@pytest.mark.parametrize("fmt", ["instruct", "competition", "chatml", "codefuse"])
def test_every_prompt_holds_the_task_prompt_once(data_dir, benchmark, fmt):
    for row in load_benchmark(benchmark, data_dir, limit=3).problems:
        text = build_prompt(benchmark, row, fmt)
        core = task_prompt(benchmark, row)
        assert text.count(core) >= 1
        if fmt == "instruct":
            assert text == core
        else:
            assert core + "\n" in text or core.endswith("\n")


# ----- stop words and eos


@pytest.mark.parametrize(
    "benchmark,fmt,expected",
    [
        ("humanevalsynthesize-python", "competition",
         ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert", "<|endoftext|>"]),
        ("humanevalfixtests-go", "instruct", ["\n//", "\nfunc main(", "struct", "\nfunc", "<|endoftext|>"]),
        ("humanevalsynthesize-rust", "competition", ["<|endoftext|>"]),
        ("humanevalfixtests-java", "chatml", ["<|endoftext|>"]),
        ("mbpp", "instruct", ["\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```"]),
        ("mbpp", "competition", ["\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/"]),
        ("humaneval", "instruct", ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]),
        ("humaneval", "competition", ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"]),
    ],
)
def test_stop_words(benchmark, fmt, expected):
    assert prompts.stop_words(benchmark, fmt) == expected


def test_stop_words_are_fresh_lists():
    first = prompts.stop_words("humanevalsynthesize-python", "competition")
    first.append("MUTATED")
    assert "MUTATED" not in prompts.stop_words("humanevalsynthesize-python", "competition")


def test_default_eos_and_generation_stops():
    assert prompts.default_eos("competition") == ["<|im_end|>", "<|endoftext|>"]
    assert prompts.default_eos("chatml") == ["<|im_end|>", "<|endoftext|>"]
    assert "<|role_start|>" in prompts.default_eos("codefuse")
    assert prompts.default_eos("custom") == []
    fmt = PromptFormat(name="custom", eos=("<END>",))
    assert prompts.eos_strings(fmt, ["</s>", "<END>"]) == ["<END>", "</s>"]
    stops = prompts.generation_stop_strings("mbpp", "competition", ["</s>"])
    assert stops[:6] == prompts.stop_words("mbpp", "competition")
    assert stops[6:] == ["<|im_end|>", "<|endoftext|>", "</s>"]


def test_from_stage_reads_generate_settings():
    from launcher.recipe import GenerateStage

    stage = GenerateStage(prompt_format="custom", prefix="P", suffix="S", system="Y", eos=["<E>"])
    fmt = PromptFormat.from_stage(stage)
    assert (fmt.name, fmt.prefix, fmt.suffix, fmt.system, fmt.eos) == ("custom", "P", "S", "Y", ("<E>",))
