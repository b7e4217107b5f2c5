"""The planner: items per benchmark and shard, dependency types, array chunks, resources."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import contract
from launcher.plan import Plan, build_plan, stage_items
from launcher.profile import Profile, load_profile
from launcher.recipe import load_recipe
from launcher.yamlsource import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path))


def recipe(*overrides: str, name: str = "codellama34b_qlora.yaml"):
    return load_recipe(ROOT / "recipes" / name, list(overrides))


def generic() -> Profile:
    return load_profile("slurm-generic")


def small_arrays(**fields) -> Profile:
    data = {"name": "small", "gpus_per_node": 8, "max_array_size": 5, **fields}
    return Profile.model_validate(data)


def test_one_generate_and_one_evaluate_item_per_benchmark():
    r = recipe("generate.shards={}")
    plan = build_plan(r, generic())
    assert [j.stage for j in plan.jobs] == ["train", "merge", "generate", "evaluate", "collect"]
    gen, ev = plan.job("generate"), plan.job("evaluate")
    expected = list(contract.COMPETITION_SUITE) + ["humaneval"]
    assert [i["key"] for i in gen.items] == expected
    assert gen.items[0]["pieces"] == [{"model": "codefuse-codellama-34b", "benchmark": expected[0], "start": 0, "stop": 164,
                                       "num_problems": 164}]
    assert [i["key"] for i in ev.items] == expected
    assert [i["pieces"] for i in ev.items] == [i["pieces"] for i in gen.items]
    for stage in ("train", "collect"):
        assert plan.job(stage).items == [{"key": stage}]
    assert plan.job("merge").items == [{"key": "merge", "model": "codefuse-codellama-34b", "selector": "best", "step": None}]
    assert not any(plan.job(s).is_array for s in ("train", "merge", "collect"))
    assert gen.is_array and ev.is_array


def test_dependency_types():
    plan = build_plan(recipe("generate.shards={}"), generic())
    deps = {j.stage: (j.depends_on, j.dependency_type) for j in plan.jobs}
    assert deps == {
        "train": (None, None),
        "merge": ("train", "afterok"),
        "generate": ("merge", "afterok"),
        "evaluate": ("generate", "aftercorr"),  # element by element: same keys, same chunks
        "collect": ("evaluate", "afterany"),    # runs whatever happened
    }


def test_shards_make_evaluate_wait_for_the_whole_array():
    plan = build_plan(recipe("generate.benchmarks=[humaneval, mbpp]", "generate.shards={mbpp: 3}"), generic())
    gen, ev = plan.job("generate"), plan.job("evaluate")
    assert [i["key"] for i in gen.items] == ["humaneval", "mbpp-s0of3", "mbpp-s1of3", "mbpp-s2of3"]
    assert [(p["start"], p["stop"]) for i in gen.items for p in i["pieces"]] == [(0, 164), (0, 167), (167, 334), (334, 500)]
    assert [i["key"] for i in ev.items] == ["humaneval", "mbpp"]  # each benchmark is scored whole
    assert [(p["start"], p["stop"]) for p in ev.items[1]["pieces"]] == [(0, 500)]
    assert ev.dependency_type == "afterany"


def test_shipped_codellama_shards_mbpp():
    plan = build_plan(recipe(), generic())
    assert len(plan.job("generate").items) == 15 and len(plan.job("evaluate").items) == 14
    assert plan.job("evaluate").dependency_type == "afterany"


def test_eval_only_plan_starts_without_dependency():
    plan = build_plan(recipe(name="qwen_competition_eval.yaml"), generic())
    assert plan.jobs[0].stage == "generate" and plan.jobs[0].depends_on is None
    assert plan.job("evaluate").dependency_type == "afterany"  # cost-balanced cuts differ per stage


def test_arrays_within_max_array_size_are_one_chunk():
    plan = build_plan(recipe(), generic())
    assert plan.job("generate").chunks == [(0, 15)]
    assert plan.job("train").chunks == [(0, 1)]


def test_large_arrays_are_chunked_with_offsets():
    plan = build_plan(recipe("generate.shards={}"), small_arrays())
    gen, ev = plan.job("generate"), plan.job("evaluate")
    assert gen.chunks == [(0, 5), (5, 5), (10, 4)]
    assert ev.chunks == gen.chunks
    assert ev.dependency_type == "aftercorr"  # same keys, same chunks: still element by element
    covered = [off + i for off, count in gen.chunks for i in range(count)]
    assert covered == list(range(len(gen.items)))


def test_chunks_of_different_shape_fall_back_to_afterany():
    # 6 mbpp shards: 19 generate elements in 4 chunks, 14 evaluate elements in 3
    plan = build_plan(recipe("generate.shards={mbpp: 6}"), small_arrays())
    gen, ev = plan.job("generate"), plan.job("evaluate")
    assert len(gen.items) == 19 and gen.chunks == [(0, 5), (5, 5), (10, 5), (15, 4)]
    assert ev.chunks == [(0, 5), (5, 5), (10, 4)]
    assert ev.dependency_type == "afterany"


def test_exactly_max_array_size_is_one_chunk():
    plan = build_plan(recipe("generate.benchmarks=[humaneval, mbpp]", "generate.shards={mbpp: 4}"), small_arrays())
    assert plan.job("generate").chunks == [(0, 5)]


def test_no_chunking_refuses_large_arrays():
    with pytest.raises(ConfigError, match=r"14 elements, more than MaxArraySize \(5\)"):
        build_plan(recipe("generate.shards={}"), small_arrays(chunk_arrays=False))


def test_every_problem_is_reported_at_once():
    r = recipe("train.resources.gpus_per_node=16", "train.resources.time=3-00:00:00",
               "generate.resources.mem_gb=5000")
    with pytest.raises(ConfigError) as err:
        build_plan(r, generic())
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 4, text
    assert "stages.train.resources.gpus_per_node" in text
    assert "16 task(s) x 8 CPUs exceed the 96 CPUs" in text  # 16 GPUs → 16 tasks per node
    assert "stages.train.resources.time" in text
    assert "stages.generate.resources.mem_gb" in text


def test_resources_resolve_partitions_and_tasks():
    plan = build_plan(recipe("merge.resources.partition=bigmem"), generic())
    train = plan.job("train").resources
    assert (train.partition, train.nodes, train.tasks_per_node, train.gpus_per_node) == ("gpu", 2, 8, 8)
    assert train.time_minutes == 1440 and train.max_restarts == 6
    assert plan.job("merge").resources.partition == "bigmem"  # the recipe's own partition wins
    assert plan.job("merge").resources.tasks_per_node == 1     # CPU job: one task per node
    assert plan.job("evaluate").resources.partition == "cpu"
    assert plan.job("generate").resources.partition == "gpu"


def test_data_dir_comes_from_recipe_then_environment(monkeypatch, tmp_path):
    plan = build_plan(recipe(), generic())
    assert plan.data_dir == "/shared/mftlaunch/data"
    r = recipe("data_dir=null")
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path / "bench"))
    assert build_plan(r, generic()).data_dir == str(tmp_path / "bench")


def test_plan_json_round_trip():
    plan = build_plan(recipe("generate.shards={}"), small_arrays())
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["jobs"][2]["chunks"] == [[0, 5], [5, 5], [10, 4]]
    assert data["jobs"][2]["is_array"] is True
    again = Plan.from_dict(data)
    assert again.to_dict() == plan.to_dict()


def test_stage_items_for_single_stages():
    plan = build_plan(recipe(), generic())
    assert stage_items("train", plan.models, None) == [{"key": "train"}]
    assert stage_items("collect", plan.models, None) == [{"key": "collect"}]


def test_plan_does_not_check_paths_unless_asked(tmp_path):
    r = recipe("model.path=/nonexistent/model")
    build_plan(r, generic())  # plan and validate never look at cluster paths
    with pytest.raises(ConfigError, match="model.path: /nonexistent/model does not exist"):
        build_plan(r, generic(), paths=True)


def test_model_config_json_is_read_without_crashing(tmp_path):
    """Where the model directory exists (a login node that sees /models), the planner reads its
    config.json for a memory estimate: a recipe that fits must plan, with nothing raised."""
    import shutil

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(ROOT / "recipes" / "models" / "tiny-llama" / "config.json", model / "config.json")
    r = recipe(f"model.path={model}", "train.seq_length=64", "train.per_device_train_batch_size=1")
    plan = build_plan(r, generic())
    assert [j.stage for j in plan.jobs][0] == "train"


def test_admin_profile_directory_wins_over_the_builtin_one(tmp_path, monkeypatch):
    site = tmp_path / "site-profiles"
    site.mkdir()
    (site / "slurm-generic.yaml").write_text("name: slurm-generic\ngpus_per_node: 4\nmax_time: '12:00:00'\n")
    monkeypatch.setenv("MFTLAUNCH_PROFILES", str(site))
    profile = load_profile("slurm-generic")
    assert profile.gpus_per_node == 4
    with pytest.raises(ConfigError) as err:
        build_plan(recipe(), profile)
    text = "\n".join(err.value.problems)
    assert "have 4" in text and "longer than the profile's max_time (12:00:00)" in text


def test_plan_refuses_full_finetune_of_34b_without_zero3(tmp_path, capsys):
    """The planner reads the model's config.json as plain JSON, prints a per-GPU memory estimate
    and refuses a recipe that cannot fit the profile's GPUs."""
    import shutil

    from launcher.cli import main

    repo = Path(__file__).resolve().parent.parent
    model = tmp_path / "CodeLlama-34b"
    model.mkdir()
    shutil.copy(repo / "recipes" / "models" / "codellama-34b" / "config.json", model / "config.json")
    recipe = str(repo / "recipes" / "codellama34b_qlora.yaml")
    base = ["plan", recipe, "--profile", "slurm-generic", "--set", f"model.path={model}"]
    assert main(base) == 0
    assert "train memory estimate: ~2" in capsys.readouterr().out  # QLoRA 34B: tens of GiB per GPU
    assert main(base + ["--set", "train.peft_type=full", "--set", "train.quantization=null"]) == 1
    err = capsys.readouterr().err
    assert "stages.train: estimated" in err and "zero_stage: 3" in err
