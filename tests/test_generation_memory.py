"""Generation on several devices, the submit side and the placement: the planner's memory estimate
(weights + KV cache from config.json) refuses a layout that cannot fit and names the fix;
`placement: split` runs one rank per node; the split load path works on CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import generation_memory as gm
from launcher.plan import build_plan
from launcher.profile import load_profile
from launcher.recipe import load_recipe
from launcher.render import sbatch_parameters
from launcher.rundir import RunDir
from launcher.yamlsource import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CODELLAMA_34B = ROOT / "recipes" / "models" / "codellama-34b"
GIB = 1024**3


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path))


def flagship(*overrides: str):
    return load_recipe(ROOT / "recipes" / "codellama34b_qlora.yaml", [f"model.path={CODELLAMA_34B}", *overrides])


def test_estimate_terms_follow_the_config_by_hand():
    config = json.loads((CODELLAMA_34B / "config.json").read_text())
    stage = flagship().stages.generate  # bf16, batch 8, max_length 2048
    est = gm.estimate(config, stage, "bf16")
    # 48 layers x 8 KV heads x 128 dims, keys and values, 2 bytes, 8 rows of 2048 tokens
    assert est.kv_cache_gib * GIB == 2 * 48 * 8 * 128 * 2 * 8 * 2048
    assert 33.0e9 < est.weights_gib * GIB / 2 < 34.5e9  # CodeLlama-34B: 33.7B parameters
    split = gm.estimate(config, stage, "bf16", devices=2)
    assert split.weights_gib == pytest.approx(est.weights_gib / 2) and split.kv_cache_gib == pytest.approx(est.kv_cache_gib / 2)
    longer = gm.estimate(config, stage.model_copy(update={"max_new_tokens": 1024}), "bf16")
    assert longer.tokens_per_row == 3072 and longer.kv_cache_gib == pytest.approx(est.kv_cache_gib * 1.5)


def test_plan_refuses_a_layout_that_cannot_fit_and_names_the_fix():
    with pytest.raises(ConfigError) as err:
        build_plan(flagship("generate.batch_size=64"), load_profile("slurm-generic"))
    text = str(err.value)
    assert "stages.generate" in text and "GiB per GPU > 79 GiB" in text
    assert "placement: split with resources.gpus_per_node: 2" in text and "batch_size: " in text


def test_a_split_layout_fits_and_runs_one_rank_per_node(tmp_path):
    recipe = flagship("generate.batch_size=64", "generate.placement=split", "generate.resources.gpus_per_node=2")
    profile = load_profile("slurm-generic")
    plan = build_plan(recipe, profile)
    generate = plan.job("generate")
    assert generate.resources.tasks_per_node == 1 and generate.resources.gpus_per_node == 2
    assert any(n.startswith("generate memory estimate:") and "split over 2 GPUs" in n for n in plan.notes)
    per_task = profile.model_copy(update={"gpu_request": "gpus-per-task"})
    assert sbatch_parameters(generate, per_task, RunDir(tmp_path), 1)["gpus_per_task"] == 2


def test_split_without_several_gpus_is_refused_by_the_recipe():
    with pytest.raises(Exception, match="placement: split .* gpus_per_node >= 2"):
        flagship("generate.placement=split")


def test_device_plan_per_rank():
    from jobs.generation.devices import device_plan

    assert device_plan("data_parallel", 3, 4).device == "cuda:3"
    assert device_plan("data_parallel", 1, 1).device == "cuda:0"  # Slurm bound one GPU to the task
    assert device_plan("split", 0, 4).split_over == 4 and device_plan("split", 0, 4).device is None
    assert device_plan("split", 0, 0).device == "cpu" and not device_plan("split", 0, 0).is_split


def test_the_split_load_path_places_within_its_caps_and_refuses_offload(tmp_path):
    """torch has one CPU device and accelerate drops GPU indices that do not exist, so a real split
    over two devices needs GPUs (docs/EVALUATION.md gives the command); on CPU the same load path
    (device_map="auto" within per-device caps) runs with one CPU cap."""
    torch = pytest.importorskip("torch")
    from jobs.generation.hf_engine import HFEngine
    from jobs.generation.rows import Row
    from jobs.generation.settings import DecodeSettings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFTLAUNCH_CACHE", str(tmp_path / "cache"))
        from jobs.tiny_model import resolve_model_path

        model_dir = resolve_model_path("builtin:tiny-llama")
    whole = HFEngine.load(model_dir, device="cpu")
    size = sum(p.numel() * 4 for p in whole.model.parameters())
    split = HFEngine.load(model_dir, dtype="fp32", split_memory={"cpu": 10 * size})
    rows = [Row(0, 0, whole.encode("def add(a, b):\n"), 8)]
    settings = DecodeSettings(max_new_tokens=8)
    assert split.generate(rows, None, settings) == whole.generate(rows, None, settings)
    # caps too small for the model: the load fails instead of offloading the rest to disk
    with pytest.raises(RuntimeError, match="does not fit the devices it is split over.*disk"):
        HFEngine.load(model_dir, dtype="fp32", split_memory={"cpu": size // 3})
