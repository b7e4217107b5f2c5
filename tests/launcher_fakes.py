"""Fake Slurm commands for the launcher's unit tests: real executables written into a temporary
bin directory that goes first on PATH, so the launcher runs them exactly as it runs the real
ones (subprocess, PATH lookup, clean environment, exit codes, stdout/stderr).

Each fake appends one JSON line per call to `<state>/<command>.calls`:
`{"argv": [...], "env": {...}}` (env only for sbatch when FAKE_SBATCH_RECORD_ENV=1).

Behaviour is steered with files in the state directory (found through $FAKE_SLURM_DIR, which
survives `launcher.slurm.clean_env`):
- sbatch: prints `<next id>;cluster` (ids from 1000 up, counter in `sbatch.next`);
  `sbatch.fail_at` = N makes the N-th call fail (exit 1, Slurm's error text on stderr);
  `sbatch.stdout` replaces the printed text.
- squeue / sacct: print `<cmd>.out.<call number>` if it exists, else `<cmd>.out`;
  `<cmd>.rc` / `<cmd>.err` give the exit code / stderr.
- scancel: records only.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

_FAKE = r'''#!{python}
import json, os, sys
from pathlib import Path

name = Path(sys.argv[0]).name
state = Path(os.environ["FAKE_SLURM_DIR"])
calls = state / (name + ".calls")
count = (len(calls.read_text().splitlines()) if calls.exists() else 0) + 1
record = {{"argv": sys.argv[1:]}}
if name == "sbatch" and os.environ.get("FAKE_SBATCH_RECORD_ENV") == "1":
    record["env"] = dict(os.environ)
with open(calls, "a") as handle:
    handle.write(json.dumps(record) + "\n")

def text(path):
    return path.read_text() if path.exists() else None

if name == "sbatch":
    fail_at = text(state / "sbatch.fail_at")
    if fail_at and int(fail_at) == count:
        sys.stderr.write("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n")
        sys.exit(1)
    custom = text(state / "sbatch.stdout")
    if custom is not None:
        sys.stdout.write(custom)
        sys.exit(0)
    counter = state / "sbatch.next"
    job_id = int(text(counter) or "1000")
    counter.write_text(str(job_id + 1))
    print(f"{{job_id}};cluster")
elif name in ("squeue", "sacct"):
    out = text(state / f"{{name}}.out.{{count}}")
    if out is None:
        out = text(state / f"{{name}}.out") or ""
    sys.stdout.write(out)
    err = text(state / f"{{name}}.err")
    if err:
        sys.stderr.write(err)
    sys.exit(int(text(state / f"{{name}}.rc") or "0"))
'''

COMMANDS = ("sbatch", "squeue", "sacct", "scancel")


class FakeSlurm:
    """Fake Slurm commands in `root/bin`, state in `root/state`; `install(monkeypatch)` puts them
    first on PATH for this test only."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.state = root / "state"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        source = _FAKE.format(python=sys.executable)
        for name in COMMANDS:
            path = self.bin / name
            path.write_text(source)
            path.chmod(0o755)

    def install(self, monkeypatch: Any) -> "FakeSlurm":
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("FAKE_SLURM_DIR", str(self.state))
        return self

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should see the fakes."""
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["FAKE_SLURM_DIR"] = str(self.state)
        return env

    def calls(self, name: str) -> list[dict[str, Any]]:
        path = self.state / f"{name}.calls"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def argv(self, name: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls(name)]

    def set(self, filename: str, text: str) -> None:
        (self.state / filename).write_text(text)


def option(argv: list[str], flag: str) -> str | None:
    """Value of `--flag=value` in an argv list, or None."""
    for arg in argv:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def write_recipe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def eval_recipe(tmp: Path, benchmarks: str = "[humaneval, mbpp]", extra_generate: str = "") -> Path:
    """A small eval-only recipe (generate → evaluate → collect) with existing paths, for submit."""
    data = tmp / "bench-data"
    data.mkdir(parents=True, exist_ok=True)
    return write_recipe(tmp / "eval.yaml", f"""\
name: evalrun
output_root: {tmp / 'runs'}
data_dir: {data}
model: {{path: "builtin:tiny-llama", model_name: tiny}}
stages:
  generate:
    benchmarks: {benchmarks}
    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
{extra_generate}  evaluate: {{resources: {{cpus_per_task: 1, time: 10}}}}
  collect: {{}}
""")


def full_recipe(tmp: Path, benchmarks: str = "[humaneval, mbpp]") -> Path:
    """train → merge → generate → evaluate → collect, every path existing."""
    ds = tmp / "mft" / "code_completion"
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "train.jsonl").write_text('{"chat_rounds": []}\n')
    data = tmp / "bench-data"
    data.mkdir(parents=True, exist_ok=True)
    return write_recipe(tmp / "full.yaml", f"""\
name: fullrun
output_root: {tmp / 'runs'}
data_dir: {data}
model: {{path: "builtin:tiny-llama", model_name: tiny}}
stages:
  train:
    datasets: [{{path: {ds}}}]
    distributed: {{backend: none, zero_stage: 0}}
    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
  merge: {{resources: {{cpus_per_task: 1, time: 10}}}}
  generate:
    benchmarks: {benchmarks}
    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
  evaluate: {{resources: {{cpus_per_task: 1, time: 10}}}}
  collect: {{}}
""")
