"""Generation mechanics on CPU with the built-in tiny model (random weights: the text is noise,
but greedy decoding is deterministic, which is all these tests need)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from jobs import generate as gen  # noqa: E402
from jobs.code_benchmarks import prompts as pr  # noqa: E402
from jobs.code_benchmarks.data import pinned_sha256_of, sha256_file  # noqa: E402
from jobs.context import RequeueRequested, StageContext  # noqa: E402
from jobs.distributed import DistEnv  # noqa: E402
from jobs.generation.benchmark import generate_benchmark  # noqa: E402
from jobs.generation.engine import StopRule  # noqa: E402
from jobs.generation.hf_engine import HFEngine, cpu_threads  # noqa: E402
from jobs.generation.model_loading import pick_model  # noqa: E402
from jobs.generation.progress import partial_filename  # noqa: E402
from jobs.generation.rows import Row, sort_rows  # noqa: E402
from jobs.generation.settings import DecodeSettings, token_budget  # noqa: E402
from jobs.generation.text import IncrementalText, decode_new_text  # noqa: E402
from jobs.generation.vllm_engine import VLLMEngine  # noqa: E402
from launcher.recipe import Recipe  # noqa: E402
from launcher.rundir import RunDir, generations_name, read_json  # noqa: E402

PROMPTS = [
    "x",
    "def add(a, b):\n",
    "import math\nfrom typing import List\n\ndef max_subarray(nums: List[int]) -> int:\n    best =",
    "class Solution {\n    public boolean hasCloseElements(List<Double> numbers, double threshold) {\n",
    "<|im_start|>user\nWrite a function<|im_end|>\n<|im_start|>assistant\n",
    "fn main() {\n    let v: Vec<i32> = vec![3, 1, 2];\n    let mut sorted = v.clone();\n    sorted.sort();\n"
    "    println!(\"{:?}\", sorted);\n}\n\nfn count_chars(s: &str) -> HashMap<char, usize> {\n",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is bound by Python overhead; extra threads only contend on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> HFEngine:
    return HFEngine.load(tiny_model_dir, dtype="bf16", device="cpu", eos_strings=["<|im_end|>"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Synthetic benchmark files with the real layout and sizes (the pinned data is not needed)."""
    root = tmp_path_factory.mktemp("data")
    (root / "humanevalpack").mkdir()
    (root / "mbpp").mkdir()
    with open(root / "humanevalpack" / "python.jsonl", "w") as handle:
        for i in range(164):
            doc = " ".join(["return the sum of the numbers"] * (1 + i % 5))
            handle.write(json.dumps({
                "task_id": f"Python/{i}", "entry_point": f"f{i}",
                "prompt": f"def f{i}(numbers):\n    \"\"\"{doc}\"\"\"\n",
                "declaration": f"def f{i}(numbers):\n", "buggy_solution": "    return 0\n",
                "canonical_solution": "    return sum(numbers)\n", "test": f"assert f{i}([1]) == 1\n",
                "instruction": f"Write a Python function f{i}(numbers) to {doc}.",
            }) + "\n")
    with open(root / "mbpp" / "mbpp.jsonl", "w") as handle:
        for task_id in range(11, 511):
            handle.write(json.dumps({
                "task_id": task_id, "text": "Write a function to add numbers." + " Carefully." * (3 * (task_id % 4)),
                "test_list": [f"assert add_{task_id}(1, 2) == 3"], "code": "", "test_setup_code": "",
                "challenge_test_list": [],
            }) + "\n")
    return root


def rows_for(engine, prompts, budget):
    return [Row(i, 0, engine.encode(p), budget) for i, p in enumerate(prompts)]


# ---------------------------------------------------------------------------------------------
# mechanics


def test_cpu_runs_fp32_whatever_the_recipe_says(engine):
    assert next(engine.model.parameters()).dtype == torch.float32
    assert engine.tokenizer.padding_side == "left"
    assert engine.eos_ids == [0, 2]  # <|endoftext|> and the recipe eos <|im_end|> (one token each)


def test_batched_greedy_equals_one_at_a_time(engine):
    settings = DecodeSettings(max_new_tokens=24)
    rows = rows_for(engine, PROMPTS, 24)
    assert len({len(r.prompt_ids) for r in rows}) == len(rows), "prompts must differ in length"
    alone = [engine.generate([row], None, settings)[0] for row in rows]
    batched = engine.generate(sort_rows(rows), None, settings)
    by_problem = {row.problem: res for row, res in zip(sort_rows(rows), batched)}
    for row, single in zip(rows, alone):
        assert by_problem[row.problem] == single, f"prompt {row.problem} differs when batched"
    assert all(r.new_tokens == 24 for r in alone)


def test_static_cache_gives_the_same_greedy_rows(engine):
    rows = rows_for(engine, PROMPTS[:4], 12)
    dynamic = engine.generate(sort_rows(rows), None, DecodeSettings(max_new_tokens=12))
    static = engine.generate(sort_rows(rows), None, DecodeSettings(max_new_tokens=12, static_cache=True))
    assert static == dynamic


def test_the_equality_test_can_fail(engine):
    """Without the attention mask the padded rows change: the model is context-sensitive enough
    for the batched == single test above to catch a padding bug."""
    rows = rows_for(engine, PROMPTS, 16)
    width = max(len(r.prompt_ids) for r in rows)
    ids = torch.tensor([[engine.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows])
    out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                                do_sample=False, pad_token_id=engine.pad_id, eos_token_id=engine.eos_ids)
    broken = [engine.tokenizer.decode(o[width:]) for o in out]
    right = [engine.generate([r], None, DecodeSettings(max_new_tokens=16))[0].completion for r in rows]
    assert any(b != r for b, r in zip(broken, right))


def test_stop_sequence_cuts_its_row_only(engine):
    settings = DecodeSettings(max_new_tokens=40)
    rows = rows_for(engine, PROMPTS[:4], 40)
    free = engine.generate(rows, None, settings)
    text = free[1].completion
    stop = next(text[i:i + 3] for i in range(8, len(text) - 3) if text[i:i + 3].strip() and text[i:i + 3] not in text[:i + 2])
    stopped = engine.generate(rows, StopRule(finished=lambda t: stop in t), settings)
    assert stopped[1].finish == "stop"
    assert stop in stopped[1].completion and stopped[1].new_tokens < 40
    assert text.startswith(stopped[1].completion)
    # it stopped at the first token that completed the stop string, not later
    shorter = engine.generate([Row(1, 0, rows[1].prompt_ids, stopped[1].new_tokens - 1)], None, settings)[0]
    assert stop not in shorter.completion
    for other, before in zip(stopped, free):
        if stop not in before.completion:
            assert other == before


def test_incremental_text_equals_full_decode(engine):
    import random

    rng = random.Random(1)
    contexts = [engine.encode(p)[-4:] for p in PROMPTS[:3]]
    tokens = [[rng.randrange(8, len(engine.tokenizer)) for _ in range(80)] for _ in contexts]
    tokens[0] = engine.encode("    x = 'ünï 中文 🙂'\n    return x  # done")  # multi-byte chars split over tokens
    inc = IncrementalText(engine.tokenizer, contexts)
    for step in range(max(len(t) for t in tokens)):
        rows = [r for r, t in enumerate(tokens) if step < len(t)]
        inc.push(rows, [tokens[r][step] for r in rows])
        full = decode_new_text(engine.tokenizer, [contexts[r] for r in rows], [tokens[r][:step + 1] for r in rows])
        for r, text in zip(rows, full):
            # the incremental text lags only while a character is incomplete
            assert text.startswith(inc.text[r]) and (text == inc.text[r] or text.endswith("\ufffd"))
    assert inc.text[0] == "    x = 'ünï 中文 🙂'\n    return x  # done"


def test_rows_end_at_their_own_budget(engine):
    rows = [Row(0, 0, engine.encode(PROMPTS[1]), 5), Row(1, 0, engine.encode(PROMPTS[2]), 11)]
    out = engine.generate(rows, None, DecodeSettings())
    assert [r.new_tokens for r in out] == [5, 11]
    assert [r.finish for r in out] == ["length", "length"]


def test_token_budget_rule():
    s = DecodeSettings(max_length=100)
    assert token_budget(30, s, None) == 70  # max_length counts prompt + generation
    assert token_budget(30, s, 64) == 34  # capped by the model's positions
    assert token_budget(120, s, None) <= 0  # no room: reported, not sent
    assert token_budget(30, DecodeSettings(max_length=100, max_new_tokens=200), None) == 200
    with pytest.raises(ValueError):
        DecodeSettings(greedy=True, n_samples=2)


# ---------------------------------------------------------------------------------------------
# the stage


def _standalone(tiny_model_dir, data_dir, out, **kw):
    kw.setdefault("max_new_tokens", 16)
    kw.setdefault("batch_size", 3)
    return gen.generate_standalone(str(tiny_model_dir), kw.pop("benchmarks", "humaneval"), out, data_dir=str(data_dir),
                                   model_name="tiny", dtype="fp32", device="cpu", **kw)


def test_output_files_names_and_shape(tiny_model_dir, data_dir, tmp_path):
    counts = _standalone(tiny_model_dir, data_dir, tmp_path, benchmarks=["mbpp"], limit=5, n_samples=2, greedy=False,
                         temperature=0.8)
    assert counts["mbpp"]["problems"] == 5 and counts["mbpp"]["samples"] == 10
    assert counts["mbpp"]["data_pinned_sha256"] == pinned_sha256_of("mbpp") and counts["mbpp"]["data_matches_pin"] is False
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["generations_mbpp_tiny.json", "generations_mbpp_tiny.raw.json"]
    programs = read_json(tmp_path / "generations_mbpp_tiny.json")
    assert isinstance(programs, list) and len(programs) == 5
    assert all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in programs)
    # the program is the task prompt + the cleaned completion (jobs.code_benchmarks.postprocess)
    assert all(p.startswith('"""\nWrite a function to add numbers.') for sample in programs for p in sample)
    raw = read_json(tmp_path / "generations_mbpp_tiny.raw.json")
    assert [p["index"] for p in raw["problems"]] == [0, 1, 2, 3, 4]
    assert raw["model_generation_config"]["eos_token_id"] == 0
    first = raw["problems"][0]
    assert first["prompt"].startswith("<|im_start|>system") and first["prompt_tokens"] > 10
    assert len(first["completions"]) == len(first["new_tokens"]) == len(first["finish"]) == 2


def test_eos_strings_stop_generation_and_are_cut_again(tiny_model_dir, data_dir, tmp_path):
    _standalone(tiny_model_dir, data_dir, tmp_path / "free", limit=3, max_new_tokens=40)
    free = read_json(tmp_path / "free" / "generations_humaneval_tiny.raw.json")["problems"][0]["completions"][0]
    marker = next(free[i:i + 4] for i in range(10, len(free) - 4) if "\n" not in free[i:i + 4] and free[i:i + 4].strip())
    _standalone(tiny_model_dir, data_dir, tmp_path / "cut", limit=3, max_new_tokens=40, prompt_format="custom",
                suffix="", eos=[marker])
    raw = read_json(tmp_path / "cut" / "generations_humaneval_tiny.raw.json")["problems"][0]
    programs = read_json(tmp_path / "cut" / "generations_humaneval_tiny.json")
    assert raw["finish"][0] in ("stop", "eos") and raw["new_tokens"][0] < 40
    assert marker in raw["completions"][0]
    assert marker not in programs[0][0][len(raw["prompt"]) - 1:]


def test_prompt_too_long_is_reported_not_crashed(tiny_model_dir, data_dir, tmp_path):
    _standalone(tiny_model_dir, data_dir, tmp_path / "probe", benchmarks=["mbpp"], limit=4, max_new_tokens=1)
    sizes = sorted(p["prompt_tokens"] for p in read_json(tmp_path / "probe" / "generations_mbpp_tiny.raw.json")["problems"])
    limit = sizes[1] + 2  # two prompts fit (with room for 1-2 tokens), two do not
    assert sizes[2] >= limit
    counts = _standalone(tiny_model_dir, data_dir, tmp_path, benchmarks=["mbpp"], limit=4, max_new_tokens=None,
                         max_length=limit)
    raw = read_json(tmp_path / "generations_mbpp_tiny.raw.json")["problems"]
    long_rows = [p for p in raw if p["prompt_tokens"] >= limit]
    assert len(long_rows) == 2 and counts["mbpp"]["prompt_too_long"] == 2
    assert all(p["finish"] == ["prompt_too_long"] and p["completions"] == [""] for p in long_rows)
    for p in raw:
        if p["prompt_tokens"] < limit:
            assert 0 < p["new_tokens"][0] <= limit - p["prompt_tokens"]
    assert len(read_json(tmp_path / "generations_mbpp_tiny.json")) == 4


class CountingEngine:
    """Wraps an engine and records which rows it was asked to generate."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, rows, stop, settings):
        self.seen.extend(r.key for r in rows)
        return self.inner.generate(rows, stop, settings)


def test_restart_continues_from_partial_progress(engine, data_dir, tmp_path):
    from jobs.code_benchmarks.data import load_benchmark

    problems = load_benchmark("humaneval", data_dir, 7).problems
    fmt = pr.PromptFormat("competition")
    settings = DecodeSettings(max_new_tokens=12, batch_size=3)
    args = dict(benchmark="humaneval", problems=problems, indices=list(range(7)), fmt=fmt, settings=settings,
                model_name="tiny", model_id="tiny", log=lambda _m: None)

    first = CountingEngine(engine)
    with pytest.raises(RequeueRequested):
        generate_benchmark(first, out_dir=tmp_path / "a", should_stop=lambda: True, **args)
    partial = tmp_path / "a" / partial_filename("humaneval", "tiny")
    assert len(read_json(partial)["rows"]) == 3 and len(first.seen) == 3
    assert not (tmp_path / "a" / generations_name("humaneval", "tiny")).exists()

    second = CountingEngine(engine)
    counts = generate_benchmark(second, out_dir=tmp_path / "a", **args)
    assert counts["problems"] == 7
    assert sorted(second.seen) == sorted(set(f"{i}:0" for i in range(7)) - set(first.seen))
    assert not partial.exists()

    straight = CountingEngine(engine)
    generate_benchmark(straight, out_dir=tmp_path / "b", **args)
    name = generations_name("humaneval", "tiny")
    assert read_json(tmp_path / "a" / name) == read_json(tmp_path / "b" / name)

    # a finished element run again generates nothing
    third = CountingEngine(engine)
    generate_benchmark(third, out_dir=tmp_path / "a", **args)
    assert third.seen == []


def test_changed_settings_discard_partial_progress(engine, data_dir, tmp_path):
    from jobs.code_benchmarks.data import load_benchmark

    problems = load_benchmark("humaneval", data_dir, 4).problems
    base = dict(benchmark="humaneval", problems=problems, indices=list(range(4)), fmt=pr.PromptFormat("competition"),
                model_name="tiny", model_id="tiny", out_dir=tmp_path, log=lambda _m: None)
    with pytest.raises(RequeueRequested):
        generate_benchmark(engine, settings=DecodeSettings(max_new_tokens=8, batch_size=2),
                               should_stop=lambda: True, **base)
    again = CountingEngine(engine)
    generate_benchmark(again, settings=DecodeSettings(max_new_tokens=9, batch_size=2), **base)
    assert len(again.seen) == 4


def _piece(start, stop, benchmark="humaneval", n=7):
    return {"model": "tiny", "benchmark": benchmark, "start": start, "stop": stop, "num_problems": n}


def _ctx(tmp_path, data_dir, tiny_model_dir, item, limit=7) -> StageContext:
    recipe = Recipe.model_validate({
        "name": "t", "limit": limit,
        "model": {"path": str(tiny_model_dir), "model_name": "tiny", "dtype": "fp32"},
        "stages": {"generate": {"benchmarks": ["humaneval", "mbpp"], "max_new_tokens": 10, "batch_size": 4}},
    })
    dist = DistEnv(rank=0, local_rank=0, world_size=1, local_world_size=1, node_rank=0, master_addr="127.0.0.1",
                   master_port=29999, job_id="1")
    plan = {"data_dir": str(data_dir), "model_name": "tiny",
            "models": [{"name": "tiny", "path": str(tiny_model_dir), "selector": None, "step": None, "merge_index": None,
                        "merged_subdir": None, "prompt": {}}]}
    return StageContext(run_dir=RunDir(tmp_path / "run"), recipe=recipe, plan=plan, stage="generate", index=0,
                        item=item, dist=dist)


def test_pieces_cover_every_problem_once_and_match_an_unsharded_run(tiny_model_dir, data_dir, tmp_path):
    cuts = [(0, 3), (3, 5), (5, 7)]
    seen: list[int] = []
    programs: list = []
    # the last element also holds a piece of another benchmark, as cost-balanced elements do
    items = [{"key": "a", "pieces": [_piece(0, 3)]}, {"key": "b", "pieces": [_piece(3, 5)]},
             {"key": "c", "pieces": [_piece(5, 7), _piece(0, 2, "mbpp")]}]
    for item in items:
        ctx = _ctx(tmp_path, data_dir, tiny_model_dir, item)
        counts = gen.run_stage(ctx)
        assert [(p["start"], p["stop"]) for p in counts["pieces"]] == [(p["start"], p["stop"]) for p in item["pieces"]]
        # synthetic data: recorded as such beside the pinned sum, per piece and per benchmark
        assert counts["data_sha256"]["humaneval"] == sha256_file(data_dir / "humanevalpack" / "python.jsonl")
        first = counts["pieces"][0]
        assert first["data_pinned_sha256"] == pinned_sha256_of("humaneval") and first["data_matches_pin"] is False
    for start, stop in cuts:
        out = ctx.run_dir.piece_generate_dir("tiny", "humaneval", start, stop)
        raw = read_json(ctx.run_dir.piece_generations_sidecar("tiny", "humaneval", start, stop))
        seen.extend(p["index"] for p in raw["problems"])
        programs.extend(read_json(out / "generations_humaneval_tiny.json"))
    assert seen == list(range(7))  # contiguous slices, in order, each problem once
    assert len(read_json(ctx.run_dir.piece_generations_file("tiny", "mbpp", 0, 2))) == 2
    whole = _ctx(tmp_path / "whole", data_dir, tiny_model_dir, {"key": "humaneval", "pieces": [_piece(0, 7)]})
    gen.run_stage(whole)
    assert programs == read_json(whole.run_dir.piece_generations_file("tiny", "humaneval", 0, 7))


def test_a_piece_that_does_not_fit_the_data_is_refused(tiny_model_dir, data_dir, tmp_path):
    ctx = _ctx(tmp_path, data_dir, tiny_model_dir, {"key": "x", "pieces": [_piece(0, 9, n=9)]})
    with pytest.raises(ValueError, match="does not fit humaneval's 7 problems"):
        gen.run_stage(ctx)


def test_stage_requeues_on_stop_signal(tiny_model_dir, data_dir, tmp_path):
    item = {"key": "humaneval", "pieces": [_piece(0, 7)]}
    ctx = _ctx(tmp_path, data_dir, tiny_model_dir, item)
    ctx.stop.requested = True
    with pytest.raises(RequeueRequested):
        gen.run_stage(ctx)
    partial = ctx.run_dir.piece_generate_dir("tiny", "humaneval", 0, 7) / partial_filename("humaneval", "tiny")
    assert len(read_json(partial)["rows"]) == 4  # one batch saved
    ctx.stop.requested = False
    assert gen.run_stage(ctx)["problems"] == 7


def test_model_location_prefers_override_then_merged(tiny_model_dir, tmp_path):
    from jobs.run_models import model_location, model_spec

    recipe = Recipe.model_validate({
        "name": "t", "model": {"path": "builtin:tiny-llama", "model_name": "tiny"},
        "stages": {"generate": {"benchmarks": ["humaneval"]}},
    })
    run = RunDir(tmp_path)
    entry = {"name": "tiny", "path": None, "merged_subdir": None}
    model, tok = pick_model(model_location(run, recipe, entry), model_spec(recipe, entry))
    assert model.name.startswith("tiny-llama-") and tok == model
    assert model_location(run, recipe, {**entry, "path": str(tiny_model_dir)}) == str(tiny_model_dir)
    assert model_location(run, recipe, {**entry, "merged_subdir": "tiny-step2"}) == str(run.merged_dir / "tiny-step2")


def test_vllm_backend_explains_when_missing(tiny_model_dir):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="vllm"):
            VLLMEngine(tiny_model_dir, None, "fp32", [])
    else:  # pragma: no cover
        pytest.skip("vllm is installed")


def test_cpu_threads_follow_slurm_grant():
    before = torch.get_num_threads()
    try:
        assert cpu_threads({"SLURM_CPUS_PER_TASK": "1"}) == 1
        torch.set_num_threads(2)
        assert cpu_threads({"SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "2"}) == 2  # user's choice wins
        assert cpu_threads({}) == 2
    finally:
        torch.set_num_threads(before)
