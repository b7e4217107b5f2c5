"""Whole graphs on the real local Slurm cluster: arrays, the collector, failure, resume, and two
submissions at once. The model is the built-in tiny one, so every stage is real but quick."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
from launcher.rundir import RunDir, read_json

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SUITE = [
    *(f"humanevalsynthesize-{lang}" for lang in ("python", "java", "js", "cpp", "go", "rust")),
    *(f"humanevalfixtests-{lang}" for lang in ("python", "java", "js", "cpp", "go", "rust")),
    "mbpp",
]


def eval_recipe(tmp: Path, data_dir: Path, benchmarks: list[str], name: str) -> Path:
    recipe = {
        "name": name,
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp / "runs"),
        "data_dir": str(data_dir),
        "limit": 1,
        "stages": {
            "generate": {"benchmarks": benchmarks, "max_new_tokens": 8, "batch_size": 1, "shards": "benchmark",
                         "resources": {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:10:00"}},
            "evaluate": {"workers": 1, "resources": {"cpus_per_task": 1, "time": "00:10:00"}},
            "collect": {},
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def submit(recipe: Path, capsys, profile: str = "test-cluster") -> RunDir:
    code = main(["submit", str(recipe), "--profile", profile])
    out = capsys.readouterr().out
    assert code == 0, out
    return RunDir(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: ")))


def run_log(run_dir: RunDir) -> str:
    """Every job log of the run, one after the other (each holds all attempts of its element)."""
    return "".join(p.read_text(errors="replace") for p in run_dir.logs_dir.glob("*.out"))


def wait_final(run_dir: RunDir, timeout: float = 600) -> list[dict]:
    """Poll `status --json` until every element is in a final state."""
    final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc = subprocess.run([sys.executable, "-m", "launcher.cli", "status", str(run_dir.root), "--json"],
                              capture_output=True, text=True, check=True)
        rows = json.loads(proc.stdout)["elements"]
        if all(r["state"] in final for r in rows):
            return rows
        time.sleep(3)
    pytest.fail(f"run {run_dir.root} did not finish in {timeout}s: {rows}")


def test_thirteen_element_array_failure_collect_and_resume(slurm, tmp_path, data_dir, capsys):
    # a data directory without Go: the two Go elements fail for real (missing data file)
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    go = data / "humanevalpack" / "go.jsonl"
    go_saved = tmp_path / "go.jsonl"
    shutil.move(go, go_saved)

    run_dir = submit(eval_recipe(tmp_path, data, ["competition"], "suite13"), capsys)
    plan = read_json(run_dir.plan_file)
    generate = next(j for j in plan["jobs"] if j["stage"] == "generate")
    assert [i["key"] for i in generate["items"]] == SUITE
    rows = wait_final(run_dir)

    by = {(r["stage"], r["key"]): r for r in rows}
    go_keys = {"humanevalsynthesize-go", "humanevalfixtests-go"}
    for bench in SUITE:
        gen = by[("generate", bench)]
        if bench in go_keys:
            assert gen["state"] == "FAILED" and not gen["done"], gen
            assert by[("evaluate", bench)]["state"] == "CANCELLED", by[("evaluate", bench)]
        else:
            assert gen["state"] == "COMPLETED" and gen["done"], gen
            # each element saw its own benchmark: its generations file is named after it
            assert run_dir.piece_generations_file("tiny", bench, 0, 1).is_file(), bench
            assert by[("evaluate", bench)]["done"], by[("evaluate", bench)]
    collect = by[("collect", "collect")]
    assert collect["state"] == "FAILED", collect
    log = "".join(p.read_text() for p in run_dir.logs_dir.glob("mft.suite13.collect_*.out"))
    for bench in go_keys:
        assert bench in log

    # resume reruns only the failed elements and what depends on them
    shutil.move(go_saved, go)
    before = {k: (run_dir.sentinel("generate", i).stat().st_mtime if run_dir.is_done("generate", i) else None)
              for i, k in enumerate(SUITE)}
    code = main(["resume", str(run_dir.root)])
    out = capsys.readouterr().out
    assert code == 0, out
    go_idx = sorted(SUITE.index(b) for b in go_keys)
    assert f"resubmitted generate: {go_idx}" in out
    assert f"resubmitted evaluate: {go_idx}" in out
    rows = wait_final(run_dir)
    assert all(r["done"] for r in rows), [r for r in rows if not r["done"]]
    for i, bench in enumerate(SUITE):
        if bench not in go_keys:  # untouched: same sentinel as before the resume
            assert run_dir.sentinel("generate", i).stat().st_mtime == before[bench]


def test_two_submissions_at_once_get_distinct_run_dirs_and_ports(slurm, tmp_path, data_dir, capsys):
    recipe = eval_recipe(tmp_path, data_dir, ["humanevalsynthesize-python"], "twice")
    results: list[tuple[int, str]] = []

    def one() -> None:
        proc = subprocess.run([sys.executable, "-m", "launcher.cli", "submit", str(recipe), "--profile", "test-cluster"],
                              capture_output=True, text=True)
        results.append((proc.returncode, proc.stdout + proc.stderr))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [code for code, _ in results] == [0, 0], results
    dirs = {line.split(": ", 1)[1] for _, out in results for line in out.splitlines() if line.startswith("run directory: ")}
    assert len(dirs) == 2
    ports = set()
    for d in dirs:
        run_dir = RunDir(d)
        rows = wait_final(run_dir)
        assert all(r["done"] for r in rows), rows
        ports.add(read_json(run_dir.element_state("generate", 0))["master_port"])
        assert_cost_matches_sacct(run_dir)
    assert len(ports) == 2


def assert_cost_matches_sacct(run_dir: RunDir, stages: tuple[str, ...] = ("generate", "evaluate")) -> dict:
    """results.json (written by the collector) and report.html carry the run's cost, and for the
    stages finished before the collector ran it is sacct's: every attempt of every job the run
    submitted (resumes included), elapsed x allocated CPUs. Returns results.json's resources."""
    resources = read_json(run_dir.results_table("json"))["resources"]
    assert resources["source"] == "sacct", resources
    manifest = read_json(run_dir.manifest_file)
    for stage in stages:
        ids = [entry["id"] for attempt in manifest["attempts"] for entry in attempt.get("jobs", {}).get(stage, [])]
        out = subprocess.run(["sacct", "-n", "-P", "-X", "--duplicates", "-j", ",".join(ids), "-S",
                              manifest["submit_time"], "-o", "JobID,ElapsedRaw,AllocCPUS,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split("|") for line in out.split() if "[" not in line.split("|")[0]]
        assert rows and all("gres/gpu" not in tres for _j, _e, _c, tres in rows), rows
        cpu_hours = sum(int(e) * int(c) for _j, e, c, _t in rows) / 3600
        assert resources["by_stage"][stage]["cpu_hours"] == pytest.approx(cpu_hours, abs=1e-6), (stage, rows, resources)
        assert resources["by_stage"][stage]["attempts"] == len(rows)
        assert resources["by_stage"][stage]["gpu_hours"] == 0
    report = run_dir.report_file.read_text()
    assert "<h2>Resources</h2>" in report and "From sacct" in report
    return resources
