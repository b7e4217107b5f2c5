"""Sweeps and cost-balanced arrays on the submit side: the balancer, the cost model, recipe
validation of `merge.checkpoints` / `models:`, the plan's merge array and pieces, and which
elements depend on which (resume)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from launcher import balance, cost_model
from launcher.contract import required_upstream
from launcher.plan import build_plan
from launcher.profile import load_profile
from launcher.recipe import load_recipe
from launcher.resume import rerun_selection
from launcher.rundir import RunDir
from launcher.yamlsource import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def units() -> list[balance.Unit]:
    return [balance.Unit("a", "mbpp", [1.0] * 10), balance.Unit("a", "humaneval", [3.0, 1.0, 1.0]),
            balance.Unit("b", "mbpp", [2.0] * 4)]


def covered(elements) -> list[tuple]:
    return sorted((p.model, p.benchmark, i) for e in elements for p in e.pieces for i in range(p.start, p.stop))


def test_balanced_elements_cover_everything_once_at_near_equal_cost():
    all_problems = sorted((u.model, u.benchmark, i) for u in units() for i in range(len(u.costs)))
    for count in (1, 2, 3, 5, 17):
        elements = balance.balanced(units(), count, startup_s=0.0)
        assert covered(elements) == all_problems
        assert len(elements) == min(count, 17)
        mean = 23.0 / len(elements)
        assert max(e.cost for e in elements) <= mean + 3.0  # within the largest single problem
    # 23 s in 2: the cut after 10 s and after 13 s are equally far from 11.5; the first wins
    two = balance.balanced(units(), 2, startup_s=0.0)
    assert [e.cost for e in two] == [10.0, 13.0]
    # a piece never spans two units; the second element holds one model's end and the other model
    assert [(p.model, p.benchmark, p.start, p.stop) for p in two[1].pieces] == [
        ("a", "humaneval", 0, 3), ("b", "mbpp", 0, 4)]
    assert two[1].models == ["a", "b"]
    three = balance.balanced(units(), 3, startup_s=0.0)
    assert [(p.benchmark, p.start, p.stop) for p in three[0].pieces] == [("mbpp", 0, 8)]  # cut inside a unit


def test_startup_is_paid_per_model_of_an_element():
    two = balance.balanced(units(), 2, startup_s=10.0)
    assert [e.cost for e in two] == [20.0, 33.0]


def test_per_unit_and_sharded_layouts_keep_readable_keys():
    assert [e.key for e in balance.per_unit(units())] == ["a:mbpp", "a:humaneval", "b:mbpp"]
    one_model = [balance.Unit("a", "mbpp", [1.0] * 10), balance.Unit("a", "humaneval", [1.0] * 3)]
    parts = balance.sharded(one_model, {"mbpp": 3})
    assert [e.key for e in parts] == ["mbpp-s0of3", "mbpp-s1of3", "mbpp-s2of3", "humaneval"]
    assert [(e.pieces[0].start, e.pieces[0].stop) for e in parts] == [(0, 4), (4, 7), (7, 10), (0, 3)]
    whole = balance.balanced(one_model, 2)
    assert [e.key for e in whole] == ["mbpp", "humaneval"] or all(e.key.startswith("part") for e in whole)


def test_elements_for_a_wall_time_and_the_makespan():
    assert balance.elements_for_minutes(units(), minutes=0.2, startup_s=0.0) == 2  # 23 s of work, 12 s each
    assert balance.makespan([5, 4, 3, 3, 3], parallel=2) == 10  # LPT: 5+3+... vs 4+3+3
    assert balance.makespan([5, 4, 3], parallel=None) == 5


def test_cost_model_reads_the_data_with_the_standard_library(data_dir):
    settings = cost_model.GenerationSettings("competition", max_length=2048, max_new_tokens=100, n_samples=2,
                                             decode_s=0.002, prefill_s=0.0001)
    costs, how = cost_model.generation_costs("humanevalfixtests-java", settings, str(data_dir), limit=None)
    assert len(costs) == 164 and how == "characters / 4"
    assert len(set(costs)) > 50  # prompts differ in length, so costs do
    short, _ = cost_model.generation_costs("mbpp", settings, str(data_dir), limit=3)
    assert len(short) == 3 and max(short) < min(costs)  # MBPP prompts are shorter than fixtests'
    fallback, how = cost_model.generation_costs("mbpp", settings, "/nonexistent", limit=None)
    assert len(fallback) == 500 and "no data here" in how
    java = cost_model.evaluation_costs("humanevalsynthesize-java", 1, 4, None)
    python = cost_model.evaluation_costs("humanevalsynthesize-python", 1, 4, None)
    assert java[0] > 4 * python[0]  # compiling costs more than the prompt ever does


def test_tokenizer_counts_when_there_is_one(data_dir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    ratio = cost_model.tokens_per_char(str(tmp_path), "mbpp", str(data_dir))
    assert ratio is not None and 0.05 < ratio < 0.5  # one token per word or symbol


# ----- recipes


def tiny(*overrides: str, sweep: bool = False):
    """The tiny demo recipe; `sweep`: a copy without its `merge.checkpoint: last`."""
    path = ROOT / "recipes" / "tiny_demo.yaml"
    if not sweep:
        return load_recipe(path, list(overrides))
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "tiny_demo.yaml"
        copy.write_text(path.read_text().replace("    checkpoint: last\n", ""))
        return load_recipe(copy, list(overrides))


def test_checkpoint_selection_resolves_from_the_schedule():
    plan = build_plan(tiny("merge.checkpoints=all", sweep=True), load_profile("local"))
    assert [(m["name"], m["step"], m["merge_index"]) for m in plan.models] == [
        ("tiny-llama-step10", 10, 0), ("tiny-llama-step20", 20, 1)]
    merge = plan.job("merge")
    assert merge.is_array and [i["model"] for i in merge.items] == ["tiny-llama-step10", "tiny-llama-step20"]
    assert plan.job("generate").dependency_type == "afterany"  # one failed merge does not cancel the rest
    pieces_models = {p["model"] for item in plan.job("generate").items for p in item["pieces"]}
    assert pieces_models == {"tiny-llama-step10", "tiny-llama-step20"}
    listed = build_plan(tiny("merge.checkpoints=[last, 10, best]", sweep=True), load_profile("local"))
    assert [m["name"] for m in listed.models] == ["tiny-llama-step10", "tiny-llama-best", "tiny-llama-last"]
    every = build_plan(tiny("train.max_steps=40", "merge.checkpoints={every: 2}", sweep=True),
                       load_profile("local"))
    assert [m["step"] for m in every.models] == [20, 40]


@pytest.mark.parametrize("overrides, sweep, message", [
    (["merge.checkpoints=all", "train.max_steps=null"], True, "checkpoints: all needs train.max_steps"),
    (["merge.checkpoints=[15]"], True, "step 15 is never saved"),
    (["merge.checkpoints=[30]"], True, "after train.max_steps (20)"),
    (["merge.checkpoints=all"], False, "either checkpoint (one model) or checkpoints (a sweep)"),
    (["merge.checkpoints=[10, 10]"], True, "listed twice"),
])
def test_bad_checkpoint_selections_name_the_field_and_the_fix(overrides, sweep, message):
    with pytest.raises(ConfigError) as err:
        tiny(*overrides, sweep=sweep)
    text = "\n".join(err.value.problems)
    assert "tiny_demo.yaml" in text and message in text, text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_eval_only_models_with_their_own_prompt_format(tmp_path):
    recipe = load_recipe(write(tmp_path, """
name: two
models:
  - {name: a, path: builtin:tiny-llama}
  - {name: b, path: builtin:tiny-llama, prompt_format: chatml, eos: ["<|im_end|>"]}
stages:
  generate: {benchmarks: [mbpp], resources: {gpus_per_node: 0}}
  evaluate: {}
  collect: {}
"""))
    plan = build_plan(recipe, load_profile("local"))
    assert [m["name"] for m in plan.models] == ["a", "b"]
    assert plan.models[0]["prompt"]["prompt_format"] == "competition"
    assert plan.models[1]["prompt"]["prompt_format"] == "chatml" and plan.models[1]["prompt"]["eos"] == ["<|im_end|>"]
    assert {p["model"] for i in plan.job("generate").items for p in i["pieces"]} == {"a", "b"}


@pytest.mark.parametrize("body, message", [
    ("models: []\n", "the list is empty"),
    ("models: [{name: a, path: x}, {name: a, path: y}]\n", "names must be unique, repeated: a"),
    ("models: [{name: 'a b', path: x}]\n", "models[0].name"),
    ("", "needs `model:` (one model) or `models:`"),
])
def test_bad_model_lists_name_the_field(tmp_path, body, message):
    path = write(tmp_path, "name: bad\n" + body + "stages:\n  generate: {benchmarks: [mbpp]}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    text = "\n".join(err.value.problems)
    assert str(path) in text and message in text, text


def test_models_and_training_do_not_mix(tmp_path):
    with pytest.raises(ConfigError, match="with a train stage sweep checkpoints with stages.merge.checkpoints"):
        tiny("models=[{name: a, path: builtin:tiny-llama}]")


# ----- dependencies between pieces (what an element waits for, what resume reruns)


def test_evaluate_elements_need_only_the_generate_elements_they_overlap(tmp_path):
    plan = build_plan(tiny("generate.balance.elements=5", "evaluate.balance.elements=3"), load_profile("local")).to_dict()
    jobs = {j["stage"]: j for j in plan["jobs"]}
    for index, item in enumerate(jobs["evaluate"]["items"]):
        needed = {i for _s, i, _k in required_upstream(plan, "evaluate", index)}
        mine = {(p["benchmark"], n) for p in item["pieces"] for n in range(p["start"], p["stop"])}
        for g, gen in enumerate(jobs["generate"]["items"]):
            theirs = {(p["benchmark"], n) for p in gen["pieces"] for n in range(p["start"], p["stop"])}
            assert (g in needed) == bool(mine & theirs)
    run_dir = RunDir(tmp_path)
    for job in plan["jobs"]:
        for index in range(len(job["items"])):
            run_dir.mark_done(job["stage"], index, {})
    run_dir.sentinel("generate", 4).unlink()
    selection = rerun_selection(run_dir, plan)
    expected = sorted(i for i in range(3) if ("generate", 4) in {(s, k) for s, k, _ in required_upstream(plan, "evaluate", i)})
    assert selection == {"generate": [4], "evaluate": expected, "collect": [0]}


def test_resolved_sweep_recipes_load_again(tmp_path):
    """The run directory's recipe.yaml (every field written out) is what every job reads."""
    from launcher.recipe import recipe_to_yaml

    for recipe in (tiny("merge.checkpoints=[10, best]", sweep=True), tiny()):
        path = tmp_path / "recipe.yaml"
        path.write_text(recipe_to_yaml(recipe))
        assert load_recipe(path) == recipe


def test_the_shipped_sweep_recipe_plans():
    plan = build_plan(load_recipe(ROOT / "recipes" / "tiny_sweep.yaml"), load_profile("local"))
    assert [m["step"] for m in plan.models] == [5, 10, 15, 20]
    assert [len(plan.job(s).items) for s in ("merge", "generate", "evaluate")] == [4, 4, 4]
    assert any(note.startswith("generate: 4 elements") and "one element per benchmark: 56 elements" in note
               for note in plan.notes)
