"""The launcher runs on login nodes without torch: importing it, and validating / planning /
submitting a recipe, must never import torch (or the other heavy training packages)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fakes live beside the tests
from launcher_fakes import FakeSlurm, write_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "deepspeed", "peft", "accelerate")


def run_python(code: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_importing_the_launcher_does_not_import_torch():
    proc = run_python(
        "import launcher.cli, launcher.submit, launcher.plan, launcher.render, launcher.status, "
        "launcher.logs, launcher.resume, launcher.cancel, launcher.recent_runs, launcher.local_scheduler; import sys; assert 'torch' not in sys.modules"
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("model_path", ["builtin:tiny-llama", "models/tiny"])
def test_commands_do_not_import_heavy_packages(tmp_path, model_path):
    """validate, plan --out and submit (to a fake sbatch) of a training recipe; `models/tiny` is
    a model directory with a config.json, which the planner reads for its memory estimate."""
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "models" / "tiny-llama" / "config.json", model / "config.json")
    dataset = tmp_path / "mft" / "code_completion"
    dataset.mkdir(parents=True)
    (dataset / "part.jsonl").write_text("{}\n")
    (tmp_path / "bench").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", f"""\
name: noheavy
output_root: {tmp_path / 'runs'}
data_dir: {tmp_path / 'bench'}
model: {{path: "{model_path}", model_name: tiny, dtype: fp32}}
stages:
  train:
    datasets: [{{path: {dataset}}}]
    seq_length: 64
    per_device_train_batch_size: 1
    distributed: {{backend: none, zero_stage: 0, mixed_precision: "no"}}
    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
  merge: {{resources: {{cpus_per_task: 1, time: 10}}}}
  generate: {{benchmarks: [humaneval], resources: {{gpus_per_node: 0, time: 10}}}}
  evaluate: {{resources: {{time: 10}}}}
  collect: {{}}
""")
    fake = FakeSlurm(tmp_path / "slurm")
    code = f"""
import sys
from launcher.cli import main
r = {str(recipe)!r}
codes = [
    main(["validate", r, "--profile", "test-cluster", "--check-paths"]),
    main(["plan", r, "--profile", "test-cluster", "--out", {str(tmp_path / 'planned')!r}]),
    main(["submit", r, "--profile", "test-cluster"]),
]
assert codes == [0, 0, 0], codes
heavy = [m for m in {HEAVY!r} if m in sys.modules]
assert not heavy, heavy
"""
    proc = run_python(code, env=fake.env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(fake.argv("sbatch")) == 5
