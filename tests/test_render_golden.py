"""Golden files of the rendered sbatch scripts, plus the properties every script must have.

`mftlaunch plan --out DIR` renders every script of a recipe; the text is compared byte for byte
with tests/golden/<case>__<script> after normalising the two things that depend on where the
test runs: the run directory (→ /runs/golden) and the submitting interpreter (→ {PYTHON}, used
when the profile has no `python:`).

Regenerate after an intended change, then review the diff:
    MFTLAUNCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_golden.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.profile import load_profile
from launcher.recipe import parse_time_minutes
from launcher.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("MFTLAUNCH_UPDATE_GOLDEN") == "1"
RUN_DIR = "/runs/golden"
PYTHON = "{PYTHON}"

# case id → (recipe, profile, --set overrides)
CASES = {
    "codellama34b_qlora@slurm-generic": ("recipes/codellama34b_qlora.yaml", "slurm-generic", []),
    # 4-GPU nodes: the same 16 GPUs as 4 nodes x 4
    "codellama34b_qlora@example-gres-apptainer": (
        "recipes/codellama34b_qlora.yaml", "example-gres-apptainer",
        ["train.resources.nodes=4", "train.resources.gpus_per_node=4"],
    ),
    "tiny_demo@test-cluster": ("recipes/tiny_demo.yaml", "test-cluster", []),
    "qwen_competition_eval@example-pyxis-reservation": (
        "recipes/qwen_competition_eval.yaml", "example-pyxis-reservation", [],
    ),
}


def render(tmp_path: Path, recipe: str, profile: str, overrides: list[str]) -> dict[str, str]:
    """`mftlaunch plan --out` into a scratch directory; script name → normalised text."""
    out = tmp_path / "out"
    args = ["plan", str(ROOT / recipe), "--profile", profile, "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    root = str(RunDir(out).root)
    scripts = {}
    for path in sorted((out / "scripts").glob("*.sbatch")):
        text = path.read_text(encoding="utf-8")
        assert root in text  # the run directory really is in the script, before normalising
        scripts[path.name] = text.replace(root, RUN_DIR).replace(sys.executable, PYTHON)
    assert scripts
    return scripts


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, tmp_path):
    recipe, profile, overrides = CASES[case]
    scripts = render(tmp_path, recipe, profile, overrides)
    prefix = f"{case}__"
    existing = {p.name[len(prefix):]: p for p in GOLDEN.glob(f"{prefix}*.sbatch")}
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        for stale in set(existing) - set(scripts):
            existing[stale].unlink()
        for name, text in scripts.items():
            (GOLDEN / f"{prefix}{name}").write_text(text, encoding="utf-8")
        return
    assert sorted(existing) == sorted(scripts), (
        f"scripts rendered for {case} differ from the golden set; rerun with MFTLAUNCH_UPDATE_GOLDEN=1 if intended"
    )
    for name, text in scripts.items():
        golden = existing[name].read_text(encoding="utf-8")
        assert text == golden, f"{name} changed (MFTLAUNCH_UPDATE_GOLDEN=1 regenerates the golden files)"


def test_rendering_is_deterministic(tmp_path):
    recipe, profile, overrides = CASES["codellama34b_qlora@example-gres-apptainer"]
    first = render(tmp_path / "a", recipe, profile, overrides)
    second = render(tmp_path / "b", recipe, profile, overrides)
    assert first == second


# ------------------------------------------------------------------------------------------
# properties of every rendered script


def directives(text: str) -> dict[str, list[str]]:
    """#SBATCH --key[=value] lines → key → values ('' for a bare flag)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^#SBATCH --([\w-]+)(?:=(.*))?$", line)
        if match:
            out.setdefault(match.group(1), []).append(match.group(2) or "")
    return out


def srun_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("srun ")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_script_properties(case, tmp_path):
    recipe, profile_name, overrides = CASES[case]
    profile = load_profile(profile_name)
    scripts = render(tmp_path, recipe, profile_name, overrides)
    for name, text in scripts.items():
        d = directives(text)
        is_array = name.split(".")[-2] in ("generate", "evaluate")
        assert text.startswith("#!/bin/bash\n")
        assert "=False" not in text and "=True" not in text and "=None" not in text, name
        assert "SUBMITIT" not in text, name
        # one value per directive, except none repeated by accident
        assert all(len(v) == 1 for v in d.values()), (name, d)
        assert d["open-mode"] == ["append"], name
        assert d["requeue"] == [""], name
        assert d["signal"] == [f"B:USR2@{profile.signal_grace_s}"], name
        assert ("wckey" in d) == (profile.wckey is not None), name
        if profile.wckey:
            assert d["wckey"] == [profile.wckey]
        assert ("exclusive" in d) == profile.exclusive, name
        assert d.get("account") == ([profile.account] if profile.account else None), name
        assert d.get("qos") == ([profile.qos] if profile.qos else None), name
        assert d.get("reservation") == ([profile.reservation] if profile.reservation else None), name
        if profile.max_time:
            assert int(d["time"][0]) <= parse_time_minutes(profile.max_time), name
        log = d["output"][0]
        assert log.startswith(f"{RUN_DIR}/logs/"), name
        if is_array:
            assert log.endswith("/%x_%A_%a.out"), name
            count_match = re.fullmatch(r"0-(\d+)%(\d+)", d["array"][0])
            assert count_match, d["array"]
            if profile.array_throttle:
                assert int(count_match.group(2)) <= profile.array_throttle, name
        else:
            assert log.endswith("/%x_%j.out"), name
            assert "array" not in d, name
        assert "error" not in d, name  # stderr goes to the same log
        # GPUs: one style per profile, and only on GPU jobs
        gpu_flags = {k: d[k][0] for k in ("gres", "gpus-per-node", "gpus-per-task", "gpus") if k in d}
        ntasks = int(d["ntasks-per-node"][0])
        if gpu_flags:
            if profile.gpu_request == "gres":
                assert list(gpu_flags) == ["gres"] and gpu_flags["gres"] == f"{profile.gres_type}:{ntasks}", name
            elif profile.gpu_request == "gpus-per-task":
                assert gpu_flags == {"gpus-per-task": "1"}, name
            else:
                assert gpu_flags == {"gpus-per-node": str(ntasks)}, name
        else:
            assert ntasks == 1, name
        # the body: srun runs the entry point, the batch shell forwards USR2 and requeues on 75
        srun = srun_line(text)
        assert srun.startswith("srun --kill-on-bad-exit=1 "), srun
        assert srun.endswith(f' -u -m jobs.run {name.split(".")[-2]} {RUN_DIR} "$index" &'), srun
        assert "trap 'kill -USR2 \"$step\" 2>/dev/null' USR2" in text
        assert 'if [ "$rc" -eq 75 ]; then' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
        assert "index=$(( ${SLURM_ARRAY_TASK_ID:-0} + 0 ))" in text
        assert f"export MFTLAUNCH_RUN_DIR={RUN_DIR}" in text
        python = profile.python or PYTHON
        container = profile.container
        if container.type == "apptainer":
            binds = " ".join(f"--bind {m}" for m in container.mounts)
            assert f" apptainer exec --nv {binds} {container.image} {python} -u -m jobs.run " in srun, srun
        elif container.type == "pyxis":
            before_python = srun.split(f" {python} -u -m jobs.run ")[0]
            assert f"--container-image={container.image}" in before_python, srun
            assert "apptainer" not in srun
            if container.mounts:
                assert f"--container-mounts={','.join(container.mounts)}" in before_python
        else:
            assert f"--unbuffered --cpus-per-task={d['cpus-per-task'][0]} {python} -u" in srun or \
                "--cpus-per-task" not in d, srun
        for extra in profile.srun_extra:
            assert f" {extra} " in srun
        for module in profile.modules:
            assert f"module load {module}" in text
        for key, value in profile.env.items():
            assert f"export {key}=" in text
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0, name


def test_gpu_request_styles(tmp_path):
    """The same recipe asks for its GPUs three ways, as the profile says."""
    seen = {}
    for profile in ("slurm-generic", "example-gres-apptainer", "example-pyxis-reservation"):
        scripts = render(tmp_path / profile, "recipes/qwen_competition_eval.yaml", profile, [])
        d = directives(scripts["mft.qwen_competition_eval.generate.sbatch"])
        seen[profile] = {k: d[k] for k in ("gres", "gpus-per-node", "gpus-per-task") if k in d}
        cpu = directives(scripts["mft.qwen_competition_eval.evaluate.sbatch"])
        assert not {"gres", "gpus-per-node", "gpus-per-task"} & set(cpu)
    assert seen == {
        "slurm-generic": {"gpus-per-node": ["1"]},
        "example-gres-apptainer": {"gres": ["gpu:a100:1"]},
        "example-pyxis-reservation": {"gpus-per-task": ["1"]},
    }


def test_partitions_follow_gpu_use(tmp_path):
    scripts = render(tmp_path, *CASES["codellama34b_qlora@slurm-generic"])
    parts = {name.split(".")[-2]: directives(text)["partition"][0] for name, text in scripts.items()}
    assert parts == {"train": "gpu", "merge": "cpu", "generate": "gpu", "evaluate": "cpu", "collect": "cpu"}
    train = directives(scripts["mft.codellama34b_qlora.train.sbatch"])
    assert train["nodes"] == ["2"] and train["ntasks-per-node"] == ["8"] and train["gpus-per-node"] == ["8"]
    assert train["time"] == ["1440"] and train["mem"] == ["480GB"]


def _profile_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return str(path)


def test_false_extra_flags_and_wckey_absent(tmp_path):
    profile = _profile_file(tmp_path, """\
name: site
gpus_per_node: 8
constraint: a100&ib
sbatch_extra: {mail-type: FAIL, hold: false, comment: "mft run", nice: 10, test-flag: true}
""")
    scripts = render(tmp_path, "recipes/qwen_competition_eval.yaml", profile, [])
    for name, text in scripts.items():
        d = directives(text)
        assert "hold" not in d and "=False" not in text, name
        assert d["mail-type"] == ["FAIL"] and d["nice"] == ["10"] and d["test-flag"] == [""]
        assert d["comment"] == ["'mft run'"]
        assert "wckey" not in d  # submitit's own default would be --wckey=submitit
        assert d["constraint"] == ["'a100&ib'"]  # quoted: & is special to the shell


def test_requeue_false_renders_no_requeue_and_ends_saved_elements(tmp_path):
    """`requeue: false`: Slurm refuses `scontrol requeue` for such a job, so the script must not try."""
    profile = _profile_file(tmp_path, "name: site\ngpus_per_node: 8\nrequeue: false\n")
    scripts = render(tmp_path, "recipes/qwen_competition_eval.yaml", profile, [])
    for name, text in scripts.items():
        d = directives(text)
        assert d["no-requeue"] == [""] and "requeue" not in d, name
        assert 'scontrol requeue "$SLURM_JOB_ID"' not in text and "'mftlaunch resume' continues it" in text, name
        assert text.rstrip().endswith('exit "$rc"'), name  # a saved element ends with exit 75
    default = render(tmp_path / "default", "recipes/qwen_competition_eval.yaml", "slurm-generic", [])
    assert all("requeue" in directives(t) and 'scontrol requeue "$SLURM_JOB_ID"' in t for t in default.values())


def test_chunked_arrays_render_offsets(tmp_path):
    """More elements than MaxArraySize: one script per chunk, each indexing from its offset."""
    profile = _profile_file(tmp_path, """\
name: small-arrays
gpus_per_node: 8
max_array_size: 5
array_throttle: 3
""")
    scripts = render(tmp_path, "recipes/qwen_competition_eval.yaml", profile, [])
    for stage in ("generate", "evaluate"):
        base = f"mft.qwen_competition_eval.{stage}"
        names = sorted(n for n in scripts if n.startswith(base + "."))
        assert names == [f"{base}.1.sbatch", f"{base}.2.sbatch", f"{base}.sbatch"]
        expected = {f"{base}.sbatch": (0, "0-4%3"), f"{base}.1.sbatch": (5, "0-4%3"), f"{base}.2.sbatch": (10, "0-3%3")}
        for name, (offset, array) in expected.items():
            text = scripts[name]
            assert directives(text)["array"] == [array], name
            assert f"index=$(( ${{SLURM_ARRAY_TASK_ID:-0}} + {offset} ))" in text, name
            assert directives(text)["job-name"] == [base]  # one name: squeue and logs group the chunks


def slurm_mbytes(value: str) -> int | None:
    """Slurm's own reading of --mem (str_to_mbytes): an integer, then K/M/G/T optionally followed
    by B; anything else (e.g. '7.5GB') is rejected by sbatch."""
    match = re.fullmatch(r"(\d+)(?:([KkMmGgTt])[Bb]?)?", value)
    if not match:
        return None
    number, unit = int(match.group(1)), (match.group(2) or "M").upper()
    return {"K": -(-number // 1024), "M": number, "G": number * 1024, "T": number * 1024 * 1024}[unit]


@pytest.mark.parametrize("mem_gb", [480, 7.5, 0.5])
def test_memory_is_a_value_sbatch_accepts(tmp_path, mem_gb):
    """`mem_gb` is a float in the recipe; the directive must still be whole units, at least as much."""
    scripts = render(tmp_path, "recipes/qwen_competition_eval.yaml", "slurm-generic",
                     [f"generate.resources.mem_gb={mem_gb}"])
    (value,) = directives(scripts["mft.qwen_competition_eval.generate.sbatch"])["mem"]
    mbytes = slurm_mbytes(value)
    assert mbytes is not None, f"sbatch rejects --mem={value}"
    assert mbytes >= mem_gb * 1024
