"""`mftlaunch submit` / `plan --out` against a fake sbatch on PATH: the graph goes out in stage
order with the right dependencies, chunks pair up, a failure half-way cancels what was
submitted, and secret values never reach a file."""
from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path


from launcher.cli import main
from launcher.rundir import RunDir, read_json
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fakes live beside the tests
from launcher_fakes import eval_recipe, full_recipe, option  # noqa: E402


def only_run(tmp_path: Path) -> RunDir:
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return RunDir(runs[0])


def small_array_profile(tmp_path: Path) -> str:
    path = tmp_path / "small-arrays.yaml"
    path.write_text("name: small-arrays\ngpus_per_node: 0\nmax_array_size: 5\narray_throttle: 2\n")
    return str(path)


def test_submit_sends_the_graph_with_dependencies(fake, tmp_path, capsys):
    recipe = full_recipe(tmp_path)
    assert main(["submit", str(recipe), "--profile", "test-cluster"]) == 0, capsys.readouterr().err
    run_dir = only_run(tmp_path)
    calls = fake.argv("sbatch")
    assert [Path(c[-1]).name for c in calls] == [
        "mft.fullrun.train.sbatch", "mft.fullrun.merge.sbatch", "mft.fullrun.generate.sbatch",
        "mft.fullrun.evaluate.sbatch", "mft.fullrun.collect.sbatch",
    ]
    assert all(c[0] == "--parsable" for c in calls)
    assert [option(c, "--dependency") for c in calls] == [
        None, "afterok:1000", "afterok:1001", "aftercorr:1002", "afterany:1003",
    ]
    assert all(option(c, "--kill-on-invalid-dep") == "yes" for c in calls[1:])
    assert all(option(c, "--array") is None for c in calls)  # full submissions use the script's own --array
    for c in calls:
        assert Path(c[-1]).parent == run_dir.scripts_dir and Path(c[-1]).is_file()
    manifest = read_json(run_dir.manifest_file)
    assert manifest["status"] == "submitted"
    assert {stage: [e["id"] for e in entries] for stage, entries in manifest["jobs"].items()} == {
        "train": ["1000"], "merge": ["1001"], "generate": ["1002"], "evaluate": ["1003"], "collect": ["1004"],
    }
    for path in (run_dir.recipe_file, run_dir.profile_file, run_dir.plan_file):
        assert path.is_file()
    assert fake.argv("scancel") == []
    out = capsys.readouterr().out
    assert f"run directory: {run_dir.root}" in out


def test_chunked_arrays_are_submitted_per_chunk(fake, tmp_path, capsys):
    recipe = eval_recipe(tmp_path, benchmarks="[competition, humaneval]")
    assert main(["submit", str(recipe), "--profile", small_array_profile(tmp_path)]) == 0, capsys.readouterr().err
    calls = fake.argv("sbatch")
    names = [Path(c[-1]).name for c in calls]
    assert names == [
        "mft.evalrun.generate.sbatch", "mft.evalrun.generate.1.sbatch", "mft.evalrun.generate.2.sbatch",
        "mft.evalrun.evaluate.sbatch", "mft.evalrun.evaluate.1.sbatch", "mft.evalrun.evaluate.2.sbatch",
        "mft.evalrun.collect.sbatch",
    ]
    run_dir = only_run(tmp_path)
    manifest = read_json(run_dir.manifest_file)
    assert [(e["id"], e["offset"]) for e in manifest["jobs"]["generate"]] == [("1000", 0), ("1001", 5), ("1002", 10)]
    assert [(e["id"], e["offset"]) for e in manifest["jobs"]["evaluate"]] == [("1003", 0), ("1004", 5), ("1005", 10)]
    # the collector waits for every evaluation chunk
    assert option(calls[6], "--dependency") == "afterany:1003:1004:1005"


def test_chunked_aftercorr_pairs_each_chunk_with_its_own_generation_chunk(fake, tmp_path, capsys):
    """Evaluation chunk k holds elements offset_k.. and its task i is global element offset_k + i;
    `aftercorr` pairs task i with task i of the job it names, so chunk k may only name generation
    chunk k. Naming every generation chunk makes evaluation element 5 wait for generation
    elements 0, 5 and 10, and one failed generation cancels evaluations in every chunk."""
    recipe = eval_recipe(tmp_path, benchmarks="[competition, humaneval]")
    assert main(["submit", str(recipe), "--profile", small_array_profile(tmp_path)]) == 0, capsys.readouterr().err
    evaluate = [c for c in fake.argv("sbatch") if ".evaluate." in Path(c[-1]).name]
    assert [option(c, "--dependency") for c in evaluate] == ["aftercorr:1000", "aftercorr:1001", "aftercorr:1002"]


def test_failure_half_way_cancels_what_was_submitted(fake, tmp_path, capsys):
    fake.set("sbatch.fail_at", "3")  # train and merge go out, generate is refused
    recipe = full_recipe(tmp_path)
    assert main(["submit", str(recipe), "--profile", "test-cluster"]) == 1
    err = capsys.readouterr().err
    assert "Invalid account or account/partition combination" in err
    assert "Traceback" not in err
    assert len(fake.argv("sbatch")) == 3
    assert fake.argv("scancel") == [["1000", "1001"]]
    run_dir = only_run(tmp_path)
    manifest = read_json(run_dir.manifest_file)
    assert manifest["status"] == "submit failed; cancelled 1000 1001"


def test_failure_of_the_first_sbatch_cancels_nothing(fake, tmp_path, capsys):
    fake.set("sbatch.fail_at", "1")
    assert main(["submit", str(full_recipe(tmp_path)), "--profile", "test-cluster"]) == 1
    assert fake.argv("scancel") == []
    assert "Invalid account" in capsys.readouterr().err


def test_unreadable_job_id_also_cancels(fake, tmp_path, capsys):
    """An sbatch that exits 0 but prints no job id is a failure too: what went out is cancelled."""
    fake.set("sbatch.stdout.2", "sbatch: error: try again later\n")
    assert main(["submit", str(eval_recipe(tmp_path)), "--profile", "test-cluster"]) == 1
    assert "could not read a job id" in capsys.readouterr().err
    assert fake.argv("scancel") == [["1000"]]


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_secrets_never_reach_a_file(fake, tmp_path, monkeypatch, capsys):
    token = "hf_" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("FAKE_SBATCH_RECORD_ENV", "1")
    recipe = full_recipe(tmp_path)
    out = tmp_path / "planned"
    assert main(["plan", str(recipe), "--profile", "test-cluster", "--out", str(out)]) == 0
    assert main(["submit", str(recipe), "--profile", "test-cluster"]) == 0
    run_dir = only_run(tmp_path)
    assert list(out.rglob("*.sbatch")) and list(run_dir.scripts_dir.glob("*.sbatch"))
    assert _files_containing(out, token.encode()) == []
    assert _files_containing(run_dir.root, token.encode()) == []
    manifest = read_json(run_dir.manifest_file)
    assert manifest["secret_env_passed"] == ["HF_TOKEN"]  # the name only
    # the value travels the one intended way: sbatch's environment, exported to the job by Slurm
    assert all(call["env"].get("HF_TOKEN") == token for call in fake.calls("sbatch"))
    assert token not in capsys.readouterr().out


def test_plan_out_writes_scripts_and_submits_nothing(fake, tmp_path, capsys):
    out = tmp_path / "planned"
    assert main(["plan", str(full_recipe(tmp_path)), "--profile", "test-cluster", "--out", str(out)]) == 0
    run_dir = RunDir(out)
    plan = json.loads(run_dir.plan_file.read_text())
    assert [j["stage"] for j in plan["jobs"]] == ["train", "merge", "generate", "evaluate", "collect"]
    assert sorted(p.name for p in run_dir.scripts_dir.iterdir()) == sorted(
        f"mft.fullrun.{s}.sbatch" for s in ("train", "merge", "generate", "evaluate", "collect"))
    assert fake.argv("sbatch") == []
    assert not run_dir.manifest_file.exists()


def test_plan_test_only_asks_sbatch(fake, tmp_path, capsys):
    fake.set("sbatch.stdout", "")
    out = tmp_path / "planned"
    assert main(["plan", str(eval_recipe(tmp_path)), "--profile", "test-cluster", "--out", str(out), "--test-only"]) == 0
    calls = fake.argv("sbatch")
    assert len(calls) == 3 and all("--test-only" in c for c in calls)


def test_two_submissions_get_two_run_directories(fake, tmp_path, capsys):
    recipe = eval_recipe(tmp_path)
    assert main(["submit", str(recipe), "--profile", "test-cluster"]) == 0
    assert main(["submit", str(recipe), "--profile", "test-cluster"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and runs[0] != runs[1]


def test_default_profile_follows_sbatch_and_the_recipe(fake, tmp_path, monkeypatch, capsys):
    """No --profile: the recipe's profile ($MFTLAUNCH_PROFILE first); `submit` on a machine
    without sbatch uses the local profile, while `validate` keeps checking the recipe's."""
    recipe = str(Path(__file__).resolve().parent.parent / "recipes" / "qwen_competition_eval.yaml")
    assert main(["validate", recipe]) == 0
    assert "for profile 'slurm-generic'" in capsys.readouterr().out
    monkeypatch.setenv("MFTLAUNCH_PROFILE", "example-pyxis-reservation")
    assert main(["validate", recipe]) == 0
    assert "for profile 'example-pyxis-reservation'" in capsys.readouterr().out
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["validate", recipe]) == 0
    assert "for profile 'example-pyxis-reservation'" in capsys.readouterr().out
    # a named Slurm profile and no sbatch: an error that says how to run here, nothing submitted
    assert main(["submit", recipe]) == 1
    err = capsys.readouterr().err
    assert "$MFTLAUNCH_PROFILE names the Slurm profile 'example-pyxis-reservation', but there is no sbatch" in err
    assert "--profile local" in err
    monkeypatch.delenv("MFTLAUNCH_PROFILE")
    assert main(["submit", recipe]) == 1
    assert "the recipe's `profile` field names the Slurm profile 'slurm-generic'" in capsys.readouterr().err
    assert main(["submit", recipe, "--profile", "slurm-generic"]) == 1
    assert "--profile names the Slurm profile 'slurm-generic'" in capsys.readouterr().err
    assert main(["submit", recipe, "--profile", "local"]) == 1  # runs here: no GPUs for generate
    err = capsys.readouterr().err
    assert "asks for 1 GPUs per node, but nodes of profile 'local' have 0" in err
