"""Recipe loading: --set overrides and their types, paths anchored at the recipe file, the
shipped recipes (valid, and plannable on slurm-generic), round trips through the run directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.plan import build_plan
from launcher.profile import load_profile
from launcher.recipe import apply_overrides, load_recipe, parse_time_minutes, recipe_to_yaml
from launcher.yamlsource import ConfigError, parse_yaml_text

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
NEW_RECIPES = [
    "codellama34b_qlora.yaml", "qwen1_8b_lora.yaml", "starcoder15b_lora.yaml",
    "deepseek_coder33b_qlora.yaml", "mixtral8x7b_qlora.yaml", "qwen_competition_eval.yaml",
]

BASE = """\
name: base
model: {path: models/base, model_name: base-model, tokenizer_path: tok}
data_dir: bench
stages:
  train:
    datasets:
      - path: data/code_completion
      - path: /abs/text2code
    resources: {gpus_per_node: 1}
  merge: {}
  generate:
    benchmarks: [humaneval]
    model_path: ../elsewhere/model
  evaluate: {}
"""


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "recipes" / "base.yaml"
    path.parent.mkdir()
    path.write_text(BASE)
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path))


# ------------------------------------------------------------------------------------------
# --set


def test_set_overrides_parse_values_as_yaml(recipe_file):
    recipe = load_recipe(recipe_file, [
        "train.learning_rate=1e-4",          # YAML 1.1 reads this as a string: pydantic makes it a float
        "train.min_lr=1.0e-6",
        "train.epochs=3",
        "train.gradient_checkpointing=false",
        "train.lora.rank=8",                 # a nested default block
        "train.resources.time=90",           # int minutes
        "generate.benchmarks=[mbpp, humaneval]",
        "generate.eos=['<|im_end|>']",
        "generate.greedy=false",
        "generate.n_samples=5",
        "generate.temperature=0.8",
        "model.trust_remote_code=true",
        "limit=3",
        "name=renamed",
        "env={HF_HUB_OFFLINE: '1'}",
    ])
    train, gen = recipe.stages.train, recipe.stages.generate
    assert train.learning_rate == 1e-4 and isinstance(train.learning_rate, float)
    assert train.min_lr == 1e-6
    assert train.epochs == 3 and isinstance(train.epochs, int)
    assert train.gradient_checkpointing is False
    assert train.lora.rank == 8 and train.lora.alpha == 32  # the other defaults stay
    assert train.resources.time == 90 and train.resources.time_minutes == 90
    assert gen.benchmarks == ["mbpp", "humaneval"]
    assert gen.eos == ["<|im_end|>"]
    assert gen.greedy is False and gen.n_samples == 5 and gen.temperature == 0.8
    assert recipe.model.trust_remote_code is True
    assert recipe.limit == 3 and recipe.name == "renamed"
    assert recipe.env == {"HF_HUB_OFFLINE": "1"}


def test_set_can_add_and_remove_stages(recipe_file):
    recipe = load_recipe(recipe_file, ["collect={}"])
    assert recipe.stages.present() == ["train", "merge", "generate", "evaluate", "collect"]
    recipe = load_recipe(recipe_file, ["stages.evaluate=null"])
    assert recipe.stages.evaluate is None


def test_set_time_string_stays_a_string(recipe_file):
    recipe = load_recipe(recipe_file, ["train.resources.time=1-02:30:00"])
    assert recipe.stages.train.resources.time_minutes == 1 * 1440 + 2 * 60 + 30


def test_set_aliases_expand(recipe_file):
    recipe = load_recipe(recipe_file, ["generate.benchmarks=[competition, humaneval]"])
    assert len(recipe.benchmarks) == 14 and recipe.benchmarks[-1] == "humaneval"
    assert recipe.benchmarks[-2] == "mbpp"


def test_set_errors_name_the_field(recipe_file):
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe_file, ["train.epochs=many"])
    assert "stages.train.epochs" in str(err.value) and "'many'" in str(err.value)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_recipe(recipe_file, ["train.epochs"])
    with pytest.raises(ConfigError, match="unknown key 'epoch'.*did you mean 'epochs'"):
        load_recipe(recipe_file, ["train.epoch=2"])


def test_apply_overrides_keeps_value_with_equals_sign():
    data = apply_overrides({}, ["env.EXTRA_ARGS=--a=1 --b=2"])
    assert data == {"env": {"EXTRA_ARGS": "--a=1 --b=2"}}


def test_set_does_not_touch_the_file(recipe_file):
    load_recipe(recipe_file, ["train.epochs=7"])
    assert recipe_file.read_text() == BASE


# ------------------------------------------------------------------------------------------
# paths


def test_relative_paths_are_anchored_at_the_recipe_file(recipe_file, tmp_path, monkeypatch):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(Path("../../recipes/base.yaml"))  # a relative recipe path, from another cwd
    here = recipe_file.parent.resolve()
    assert recipe.model.path == str(here / "models" / "base")
    assert recipe.model.tokenizer_path == str(here / "tok")
    assert recipe.data_dir == str(here / "bench")
    assert recipe.stages.train.datasets[0].path == str(here / "data" / "code_completion")
    assert recipe.stages.train.datasets[1].path == "/abs/text2code"  # absolute: untouched
    assert recipe.stages.generate.model_path == str((here / ".." / "elsewhere" / "model").resolve())
    # the task name comes from the directory, not from the anchored path
    assert [d.task_name for d in recipe.stages.train.datasets] == ["code_completion", "text2code"]


def test_builtin_model_paths_are_not_anchored(recipe_file):
    recipe = load_recipe(recipe_file, ["model.path=builtin:tiny-llama"])
    assert recipe.model.path == "builtin:tiny-llama"


def test_set_relative_path_is_anchored_too(recipe_file):
    recipe = load_recipe(recipe_file, ["train.datasets=[{path: more/unit_test}]"])
    assert recipe.stages.train.datasets[0].path == str(recipe_file.parent.resolve() / "more" / "unit_test")


def test_resolved_recipe_round_trips(recipe_file, tmp_path):
    """submit writes recipe_to_yaml(recipe) into the run directory; jobs load that copy."""
    recipe = load_recipe(recipe_file, ["train.epochs=2"])
    copy = tmp_path / "run" / "recipe.yaml"
    copy.parent.mkdir()
    copy.write_text(recipe_to_yaml(recipe))
    again = load_recipe(copy)
    assert again.model_dump() == recipe.model_dump()


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "nameless.yaml"
    path.write_text("model: {path: 'builtin:tiny-llama', model_name: t}\nstages: {generate: {}}\n")
    assert load_recipe(path).name == "nameless"


def test_qlora_gets_default_quantization(recipe_file):
    recipe = load_recipe(recipe_file, ["train.peft_type=qlora"])
    quant = recipe.stages.train.quantization
    assert quant is not None and quant.bits == 4 and quant.quant_type == "nf4"


@pytest.mark.parametrize("text,minutes", [
    (90, 90), ("90", 90), ("01:30:00", 90), ("1-00:00:00", 1440), ("2-12", 3600), ("00:00:30", 1),
    ("10:30", 11),
])
def test_time_formats(text, minutes):
    assert parse_time_minutes(text) == minutes


def test_line_numbers_of_nested_keys():
    source = parse_yaml_text("a:\n  b:\n    - x: 1\n    - y: 2\n", Path("f.yaml"))
    assert source.where(("a", "b", 1, "y")) == "f.yaml:4"
    assert source.where(("a", "b", 1, "missing")) == "f.yaml:4"
    assert source.where(("a", "zzz")) == "f.yaml:1"


# ------------------------------------------------------------------------------------------
# the shipped recipes


def test_new_recipes_are_shipped():
    assert set(NEW_RECIPES) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_validates_and_plans_on_slurm_generic(name, capsys):
    path = str(ROOT / "recipes" / name)
    assert main(["validate", path, "--profile", "slurm-generic"]) == 0, capsys.readouterr().err
    assert main(["plan", path, "--profile", "slurm-generic"]) == 0, capsys.readouterr().err


def test_recipe_through_the_installed_cli():
    """The console script, as a user types it (the other recipes run in-process above)."""
    exe = Path(sys.executable).with_name("mftlaunch")
    for command in ("validate", "plan"):
        proc = subprocess.run([str(exe), command, str(ROOT / "recipes" / "codellama34b_qlora.yaml"),
                               "--profile", "slurm-generic"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (command, proc.stderr)
    assert "mft.codellama34b_qlora.evaluate" in proc.stdout and "array[14]" in proc.stdout


def test_codellama_recipe_shape():
    recipe = load_recipe(ROOT / "recipes" / "codellama34b_qlora.yaml")
    train = recipe.stages.train
    assert recipe.model.model_type == "codellama" and recipe.model.path.startswith("/")
    assert train.peft_type == "qlora" and train.quantization.bits == 4 and train.quantization.quant_type == "nf4"
    assert train.seq_length == 4096 and train.template == "codefuse"
    assert train.distributed.zero_stage == 2
    assert (train.resources.nodes, train.resources.gpus_per_node) == (2, 8)
    assert len(train.datasets) >= 3 and all(d.path.startswith("/") for d in train.datasets)
    assert recipe.stages.present() == ["train", "merge", "generate", "evaluate", "collect"]
    gen = recipe.stages.generate
    assert gen.prompt_format == "codefuse"
    assert len(gen.benchmarks) == 14 and "humaneval" in gen.benchmarks and "mbpp" in gen.benchmarks


def test_deepseek_recipe_stores_4bit_weights_in_the_compute_dtype():
    train = load_recipe(ROOT / "recipes" / "deepseek_coder33b_qlora.yaml").stages.train
    assert train.peft_type == "qlora" and train.distributed.zero_stage == 3
    assert train.quantization.quant_storage == train.distributed.mixed_precision == "bf16"


def test_qwen_recipe_is_the_chatml_competition_config():
    recipe = load_recipe(ROOT / "recipes" / "qwen1_8b_lora.yaml")
    assert recipe.stages.train.template == "chatml" and recipe.stages.train.peft_type == "lora"
    assert recipe.stages.generate.prompt_format == "competition"
    assert "<|im_end|>" in recipe.stages.generate.eos


def test_eval_only_recipe_runs_cost_balanced_gpu_elements():
    recipe = load_recipe(ROOT / "recipes" / "qwen_competition_eval.yaml")
    assert recipe.stages.present() == ["generate", "evaluate", "collect"]
    plan = build_plan(recipe, load_profile("slurm-generic"))
    gen, ev, col = plan.jobs
    assert len(gen.items) == len(recipe.benchmarks)  # as many elements as benchmarks, cut by cost
    covered = {p["benchmark"] for item in gen.items for p in item["pieces"]}
    assert covered == set(recipe.benchmarks)
    assert gen.resources.gpus_per_node == 1 and gen.resources.partition == "gpu"
    assert ev.resources.gpus_per_node == 0 and ev.resources.partition == "cpu"
    assert (ev.dependency_type, col.dependency_type) == ("afterany", "afterany")
    per_benchmark = build_plan(load_recipe(ROOT / "recipes" / "qwen_competition_eval.yaml", ["generate.shards=benchmark"]),
                               load_profile("slurm-generic"))
    assert [i["key"] for i in per_benchmark.jobs[0].items] == recipe.benchmarks
    assert per_benchmark.jobs[1].dependency_type == "aftercorr"  # element i scores what element i generated
    # any HF model: a --set away
    other = load_recipe(ROOT / "recipes" / "qwen_competition_eval.yaml",
                        ["model.path=/models/other", "model.model_name=other"])
    assert other.model.path == "/models/other"
