"""Fake Slurm commands for the launcher's unit tests: real executables written into a temporary
bin directory that goes first on PATH, so the launcher runs them exactly as it runs the real
ones (subprocess, PATH lookup, clean environment, exit codes, stdout/stderr).

They are small bash scripts (a Python fake costs ~10x more per call). Each appends its argv as one
JSON line to `<state>/<command>.calls`; sbatch also dumps its environment to
`<state>/sbatch.env.<N>` when FAKE_SBATCH_RECORD_ENV=1 (`FakeSlurm.calls` reads both).

Behaviour is steered with files in the state directory (found through $FAKE_SLURM_DIR, which
survives `launcher.slurm.clean_env`):
- sbatch: prints `<next id>;cluster` (ids from 1000 up, counter in `sbatch.next`);
  `sbatch.fail_at` = N makes the N-th call fail (exit 1, Slurm's error text on stderr);
  `sbatch.stdout` (every call) or `sbatch.stdout.<N>` (the N-th call) replaces the printed text.
- squeue / sacct: print `<cmd>.out.<call number>` if it exists, else `<cmd>.out`;
  `<cmd>.rc` / `<cmd>.err` give the exit code / stderr.
- scancel: records only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_FAKE = r'''#!/bin/bash
# fake Slurm command for mftlaunch's unit tests (tests/launcher_fakes.py)
name=$(basename "$0")
state="$FAKE_SLURM_DIR"
calls="$state/$name.calls"
count=1
[ -f "$calls" ] && count=$(( $(wc -l < "$calls") + 1 ))
json="["
sep=""
for arg in "$@"; do
  arg=${arg//\\/\\\\}
  arg=${arg//\"/\\\"}
  json+="$sep\"$arg\""
  sep=", "
done
echo "$json]" >> "$calls"
if [ "$name" = sbatch ] && [ "$FAKE_SBATCH_RECORD_ENV" = 1 ]; then
  env -0 > "$state/sbatch.env.$count"
fi
case "$name" in
  sbatch)
    if [ -f "$state/sbatch.fail_at" ] && [ "$(cat "$state/sbatch.fail_at")" = "$count" ]; then
      echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2
      exit 1
    fi
    for out in "$state/sbatch.stdout.$count" "$state/sbatch.stdout"; do
      if [ -f "$out" ]; then cat "$out"; exit 0; fi
    done
    id=1000
    [ -f "$state/sbatch.next" ] && id=$(cat "$state/sbatch.next")
    echo $(( id + 1 )) > "$state/sbatch.next"
    echo "$id;cluster"
    ;;
  squeue|sacct)
    if [ -f "$state/$name.out.$count" ]; then cat "$state/$name.out.$count"
    elif [ -f "$state/$name.out" ]; then cat "$state/$name.out"
    fi
    [ -f "$state/$name.err" ] && cat "$state/$name.err" >&2
    rc=0
    [ -f "$state/$name.rc" ] && rc=$(cat "$state/$name.rc")
    exit "$rc"
    ;;
esac
exit 0
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
        for name in COMMANDS:
            path = self.bin / name
            path.write_text(_FAKE)
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
        """One dict per call: argv, and env for sbatch when FAKE_SBATCH_RECORD_ENV=1."""
        path = self.state / f"{name}.calls"
        if not path.exists():
            return []
        out = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            call: dict[str, Any] = {"argv": json.loads(line, strict=False)}
            env_file = self.state / f"{name}.env.{number}"
            if env_file.exists():
                pairs = [item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item]
                call["env"] = dict(pairs)
            out.append(call)
        return out

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
    shards = "" if "shards:" in extra_generate else "    shards: benchmark\n"
    return write_recipe(tmp / "eval.yaml", f"""\
name: evalrun
output_root: {tmp / 'runs'}
data_dir: {data}
model: {{path: "builtin:tiny-llama", model_name: tiny}}
stages:
  generate:
    benchmarks: {benchmarks}
{shards}    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
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
    shards: benchmark
    resources: {{gpus_per_node: 0, cpus_per_task: 1, time: 10}}
  evaluate: {{resources: {{cpus_per_task: 1, time: 10}}}}
  collect: {{}}
""")
