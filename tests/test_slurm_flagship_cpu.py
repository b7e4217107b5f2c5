"""recipes/codellama34b_qlora_cpu.yaml, the flagship scaled down, end to end on the real 2-node test
cluster through `mftlaunch submit`: QLoRA nf4 + ZeRO-2 across both nodes, merge, generate with 2 data-parallel ranks,
evaluate in the sandbox, collect; every element completes with its sentinel."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.rundir import RunDir
from test_slurm_pipeline import run_log, wait_final

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "codellama34b_qlora_cpu.yaml"


def test_flagship_cpu_recipe_end_to_end(slurm, tmp_path, data_dir, capsys):
    code = main(["submit", str(RECIPE), "--profile", "test-cluster",
                 "--set", f"output_root={tmp_path / 'runs'}", "--set", f"data_dir={data_dir}"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = RunDir(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: ")))
    rows = wait_final(run_dir, timeout=1200)
    log = run_log(run_dir)
    assert all(r["state"] == "COMPLETED" and r["done"] for r in rows), (rows, log[-4000:])
    assert [r["stage"] for r in rows].count("generate") == 3  # humaneval + mbpp in 2 shards

    train_row = next(r for r in rows if r["stage"] == "train")
    assert train_row["node"] == "mft-n[1-2]", train_row
    for rank in (0, 1):
        assert re.search(rf"\[train\] rank {rank}/2: QLoRA base: 14 Linear4bit layers \(nf4, double quant on", log)

    merged = json.loads((run_dir.merged_dir / "config.json").read_text())
    assert "quantization_config" not in merged and merged["dtype" if "dtype" in merged else "torch_dtype"] == "bfloat16"
    tables = list(run_dir.collect_dir.glob("*"))
    assert tables, f"collect wrote nothing in {run_dir.collect_dir}"
    generate_rows = [r for r in rows if r["stage"] == "generate"]
    assert all(r["node"] == "mft-n[1-2]" for r in generate_rows), generate_rows  # 2 ranks per element
    for bench in ("humaneval", "mbpp"):
        assert run_dir.metrics_file(bench, "tiny-codellama-qlora").is_file(), bench
