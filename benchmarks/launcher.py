"""Launcher speed on the local Slurm test cluster, side by side with plain submitit.

    eval "$(bash tests/cluster/cluster.sh env)"; .venv/bin/python benchmarks/launcher.py [--repeats 5]

Measures, as a user sees them (a fresh `mftlaunch` process each time):
- `mftlaunch plan` of the full graph (train → merge → generate[14] → evaluate[14] → collect);
- `mftlaunch submit` of that graph (5 sbatch calls: two arrays, dependencies), then cancels it;
- `mftlaunch status` of the submitted run (one squeue + one sacct call);
against the same 31 jobs submitted one by one with plain submitit (one sbatch per element, each
with its dependency) and their state read through submitit's Job objects.
Prints a table and writes raw JSON (--out). Targets: plan < 0.5 s, submit < 2 s, status < 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MFT = [sys.executable, "-m", "launcher.cli"]


def _recipe(tmp: Path) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "tiny_demo.yaml").read_text())
    recipe["name"] = "bench_launcher"
    recipe["output_root"] = str(tmp / "runs")
    for stage in recipe["stages"].values():
        stage.setdefault("resources", {})["time"] = "00:05:00"
    for ds in recipe["stages"]["train"]["datasets"]:
        ds["path"] = str(REPO / "recipes" / ds["path"])
    path = tmp / "bench_launcher.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr}")
    return elapsed, proc.stdout


def _noop() -> int:
    return 0


def plain_submitit(tmp: Path, counts: list[int]) -> tuple[float, float]:
    """Submit len(counts) stages, element by element, each element depending on the previous
    stage's jobs; return (submit seconds, status seconds)."""
    import submitit

    executor = submitit.AutoExecutor(folder=tmp / "submitit")
    jobs_all = []
    start = time.perf_counter()
    previous: list[str] = []
    for count in counts:
        current = []
        for _ in range(count):
            params = {"timeout_min": 5, "slurm_partition": "cpu", "slurm_wckey": ""}
            if previous:
                params["slurm_additional_parameters"] = {"dependency": "afterany:" + ":".join(previous)}
            executor.update_parameters(**params)
            job = executor.submit(_noop)
            current.append(job.job_id)
            jobs_all.append(job)
        previous = current
    submit_s = time.perf_counter() - start
    start = time.perf_counter()
    _ = [job.state for job in jobs_all]
    status_s = time.perf_counter() - start
    subprocess.run(["scancel", *[j.job_id for j in jobs_all]], check=False)
    return submit_s, status_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/benchmarks/launcher.json")
    args = parser.parse_args()
    if not os.environ.get("SLURM_CONF"):
        raise SystemExit('point at the test cluster first: eval "$(bash tests/cluster/cluster.sh env)"')
    results: dict[str, list[float]] = {k: [] for k in ("plan", "submit", "status", "submitit_submit", "submitit_status")}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        recipe = _recipe(tmp)
        for _ in range(args.repeats):
            results["plan"].append(_timed(MFT + ["plan", str(recipe), "--profile", "test-cluster"])[0])
            elapsed, out = _timed(MFT + ["submit", str(recipe), "--profile", "test-cluster"])
            results["submit"].append(elapsed)
            run_dir = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: "))
            results["status"].append(_timed(MFT + ["status", run_dir, "--json"])[0])
            _timed(MFT + ["cancel", run_dir])
            plan = json.loads((Path(run_dir) / "plan.json").read_text())
            counts = [len(j["items"]) for j in plan["jobs"]]
            sub_s, stat_s = plain_submitit(tmp, counts)
            results["submitit_submit"].append(sub_s)
            results["submitit_status"].append(stat_s)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"launcher timings, median of {args.repeats} (graph of {sum(counts)} elements in {len(counts)} stages)")
    print(f"{'operation':34s} {'mftlaunch':>10s} {'plain submitit':>15s} {'target':>8s}")
    print(f"{'plan (render, no submit)':34s} {med['plan']:9.2f}s {'-':>15s} {'< 0.5s':>8s}")
    print(f"{'submit full graph':34s} {med['submit']:9.2f}s {med['submitit_submit']:14.2f}s {'< 2s':>8s}")
    print(f"{'status of every element':34s} {med['status']:9.2f}s {med['submitit_status']:14.2f}s {'< 1s':>8s}")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"median_s": med, "raw_s": results, "elements": sum(counts),
                               "machine": f"{platform.node()} {os.cpu_count()} CPUs", "python": sys.version.split()[0]},
                              indent=2))
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
