"""Whole graphs on the `local` profile: the same run directory, status and resume as on Slurm."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from launcher.cli import main
from launcher.rundir import RunDir, read_json

REPO = Path(__file__).resolve().parent.parent


def _run_dir(out: str) -> RunDir:
    return RunDir(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: ")))


def test_generate_evaluate_collect_locally(tmp_path, data_dir, capsys):
    benchmarks = ["humanevalsynthesize-python", "humanevalfixtests-js", "mbpp"]
    recipe = {
        "name": "local_eval",
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp_path / "runs"),
        "data_dir": str(data_dir),
        "limit": 2,
        "stages": {
            "generate": {"benchmarks": benchmarks, "max_new_tokens": 8, "batch_size": 2,
                         "resources": {"gpus_per_node": 0}},
            "evaluate": {"workers": 1},
            "collect": {},
        },
    }
    path = tmp_path / "local_eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["submit", str(path), "--profile", "local", "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    run = _run_dir(out)
    for bench in benchmarks:
        generations = json.loads((run.generate_dir(bench) / f"generations_{bench}_tiny.json").read_text())
        assert len(generations) == 2 and all(len(g) == 1 for g in generations)
        metrics = read_json(run.evaluate_dir(bench) / f"metrics_{bench}_tiny.json")
        assert 0.0 <= metrics[bench]["pass@1"] <= 1.0
    assert run.is_done("collect", 0)
    code = main(["status", str(run.root), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {r["state"] for r in status["elements"]} == {"COMPLETED"}
    assert len(status["elements"]) == 2 * len(benchmarks) + 1
