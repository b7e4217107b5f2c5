"""status, cancel and resume of a run submitted to fake Slurm commands on PATH: one row per
array element from squeue + sacct, sentinels when accounting is off, PREEMPTED never final,
and resume picks missing elements plus everything that depends on them."""
from __future__ import annotations

import json
import sys
from pathlib import Path


from launcher import cli, status
from launcher.resume import rerun_selection
from launcher.cli import main
from launcher.rundir import RunDir, atomic_write_json, read_json
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fakes live beside the tests
from launcher_fakes import eval_recipe, full_recipe, option  # noqa: E402


def submit(tmp_path: Path, recipe: Path, profile: str = "test-cluster") -> RunDir:
    assert main(["submit", str(recipe), "--profile", profile]) == 0
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return RunDir(run_dir)


def rows_by_element(run_dir: RunDir) -> tuple[dict, list[str]]:
    rows, warnings = status.read_status(run_dir)
    return {(r.stage, r.index): r for r in rows}, warnings


def mark_all_done(run_dir: RunDir, *, except_: tuple = ()) -> None:
    plan = read_json(run_dir.plan_file)
    for job in plan["jobs"]:
        for index in range(len(job["items"])):
            if (job["stage"], index) not in except_:
                run_dir.mark_done(job["stage"], index, {"n": 1})


# ------------------------------------------------------------------------------------------
# status


def test_status_rows_from_squeue_and_sacct(fake, tmp_path):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))  # generate 1000 [humaneval, mbpp], evaluate 1001, collect 1002
    run_dir.mark_done("generate", 0, {"problems": 164})
    fake.set("squeue.out", "1000_1|RUNNING|n2|0:42|None\n1001_0|PENDING||0:00|Dependency\n"
                           "1001_1|PENDING||0:00|Dependency\n1002|PENDING||0:00|Dependency\n")
    fake.set("sacct.out", "1000_0|COMPLETED|n1|00:01:00\n")
    rows, warnings = rows_by_element(run_dir)
    assert warnings == []
    assert len(rows) == 5
    g0, g1 = rows[("generate", 0)], rows[("generate", 1)]
    assert (g0.job_id, g0.state, g0.node, g0.elapsed, g0.done, g0.key) == ("1000_0", "COMPLETED", "n1", "00:01:00", True, "humaneval")
    assert (g1.job_id, g1.state, g1.node, g1.done) == ("1000_1", "RUNNING", "n2", False)
    assert g1.note == ""  # squeue's reason "None" is no note
    assert (rows[("evaluate", 0)].state, rows[("evaluate", 0)].note) == ("PENDING", "Dependency")
    assert rows[("collect", 0)].job_id == "1002"
    (squeue_argv,) = fake.argv("squeue")
    assert squeue_argv[squeue_argv.index("-j") + 1] == "1000,1001,1002" and "-r" in squeue_argv
    (sacct_argv,) = fake.argv("sacct")  # one sacct call, only for what squeue no longer knows
    assert sacct_argv[sacct_argv.index("-j") + 1] == "1000"
    assert sacct_argv[sacct_argv.index("-S") + 1] == read_json(run_dir.manifest_file)["submit_time"]


def test_completed_without_sentinel_is_flagged(fake, tmp_path):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("sacct.out", "1000_0|COMPLETED|n1|00:01:00\n1000_1|COMPLETED|n1|00:01:00\n")
    rows, _ = rows_by_element(run_dir)
    assert rows[("generate", 0)].state == "COMPLETED" and not rows[("generate", 0)].done
    assert "no completion sentinel" in rows[("generate", 0)].note


def test_lost_element_and_the_evaluation_slurm_cancelled_for_it(fake, tmp_path):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    run_dir.mark_done("generate", 0, {"problems": 164})
    run_dir.mark_done("evaluate", 0, {"problems": 164})
    fake.set("sacct.out", "1000_0|COMPLETED|n1|00:01:00|0:0\n1000_1|NODE_FAIL|n2|00:00:12|0:0\n"
                          "1001_0|COMPLETED|n1|00:00:10|0:0\n1001_1|CANCELLED by 0|None assigned|00:00:00|0:0\n"
                          "1002|FAILED|n1|00:00:03|1:0\n")
    rows, _ = rows_by_element(run_dir)
    lost, never = rows[("generate", 1)], rows[("evaluate", 1)]
    assert (lost.state, lost.node) == ("NODE_FAIL", "n2") and lost.note.startswith("NODE_FAIL: a node of the job failed")
    # kill-on-invalid-dep cancelled it before it started: it says which element it waited for
    assert (never.state, never.node, never.note) == ("CANCELLED", "", "never ran: generate[1] did not complete")
    assert rows[("collect", 0)].note.startswith("exit 1")


def test_accounting_disabled_falls_back_to_sentinels(fake, tmp_path):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.rc", "1")
    fake.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
    fake.set("sacct.rc", "1")
    fake.set("sacct.err", "sacct: error: Slurm accounting storage is disabled\n")
    mark_all_done(run_dir, except_=(("evaluate", 1), ("collect", 0)))
    atomic_write_json(run_dir.element_state("evaluate", 1),
                      {"state": "FAILED", "error": "AssertionError: boom", "host": "n3", "restarts": 1})
    rows, warnings = rows_by_element(run_dir)
    assert any("sacct unavailable" in w and "sentinels" in w for w in warnings), warnings
    assert any(w.startswith("squeue:") for w in warnings), warnings
    assert [rows[("generate", i)].state for i in (0, 1)] == ["COMPLETED", "COMPLETED"]
    assert rows[("evaluate", 0)].state == "COMPLETED" and rows[("evaluate", 0)].done
    failed = rows[("evaluate", 1)]
    assert (failed.state, failed.note, failed.node, failed.restarts) == ("FAILED", "AssertionError: boom", "n3", 1)
    assert rows[("collect", 0)].state == "UNKNOWN" and not rows[("collect", 0)].done
    assert rows[("evaluate", 1)].job_id == "1001_1"  # ids still come from the manifest


def test_preempted_is_shown_and_never_final(fake, tmp_path, capsys):
    """`submit --wait` polls until every element is final: PREEMPTED (requeued by Slurm) is not."""
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    everything = "1000_0|COMPLETED|n1|1:00\n1000_1|COMPLETED|n1|1:00\n1001_0|COMPLETED|n1|1:00\n" \
                 "1001_1|COMPLETED|n1|1:00\n1002|COMPLETED|n1|1:00\n"
    preempted = everything.replace("1000_1|COMPLETED", "1000_1|PREEMPTED")
    fake.set("sacct.out.1", preempted)  # the check below
    fake.set("sacct.out.2", preempted)  # _wait's first look
    fake.set("sacct.out", everything)
    requeued = "1000_1|PREEMPTED|n1|1:00|None\n"  # a requeued job is still in squeue
    fake.set("squeue.out.1", requeued)
    fake.set("squeue.out.2", requeued)
    mark_all_done(run_dir)
    rows, _ = rows_by_element(run_dir)
    assert rows[("generate", 1)].state == "PREEMPTED"
    assert cli._wait(run_dir, local=False, poll_s=0.01) == 0
    # 1: the check above; 2: _wait sees PREEMPTED and polls again; 3: all final; 4: the table
    # (were PREEMPTED final, _wait would stop after its first look: 3 calls)
    assert len(fake.argv("sacct")) == 4
    assert "run completed" in capsys.readouterr().out


def test_wait_reports_failure_when_an_element_did_not_complete(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("sacct.out", "1000_0|COMPLETED|n1|1:00\n1000_1|FAILED|n1|1:00\n1001_0|COMPLETED|n1|1:00\n"
                          "1001_1|CANCELLED by 0|n1|0:00\n1002|COMPLETED|n1|1:00\n")
    mark_all_done(run_dir, except_=(("generate", 1), ("evaluate", 1)))
    assert cli._wait(run_dir, local=False, poll_s=0.01) == 1
    assert "did not complete" in capsys.readouterr().out


def test_status_json_command(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.out", "1000_0|RUNNING|n1|0:10|None\n1000_1|PENDING||0:00|Priority\n"
                           "1001_0|PENDING||0:00|Dependency\n1001_1|PENDING||0:00|Dependency\n1002|PENDING||0:00|Dependency\n")
    capsys.readouterr()
    assert main(["status", str(run_dir.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {"RUNNING": 1, "PENDING": 4}
    assert [e["key"] for e in data["elements"]] == ["humaneval", "mbpp", "humaneval", "mbpp", "collect"]
    # squeue knew every element: the one sacct call is the cost's, every attempt of every job
    (sacct,) = fake.argv("sacct")
    assert "--duplicates" in sacct and "JobID,State,AllocTRES,ElapsedRaw" in sacct
    assert sacct[sacct.index("-j") + 1] == "1000,1001,1002"
    assert data["cost"]["source"] == "sacct" and set(data["cost"]["by_stage"]) == {"generate", "evaluate", "collect"}


def test_status_table_command(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.out", "1000_0|RUNNING|n1|0:10|None\n")
    fake.set("sacct.rc", "1")
    fake.set("sacct.err", "accounting storage is disabled\n")
    capsys.readouterr()
    line = "generate humaneval: 40/164 rows [00:10<00:31,  4.00rows/s, 300.0 new tok/s]"
    run_dir.write_progress("generate", 0, line)
    run_dir.write_progress("generate", 1, "generate mbpp: 3/500 rows [stale: this element is not running]")
    assert main(["status", str(run_dir.root)]) == 0
    out = capsys.readouterr().out
    assert "RUNNING" in out and "UNKNOWN" in out and "sacct unavailable" in out
    assert line in out and "stale" not in out  # the running element's last progress line only
    # no accounting: the cost says where its figures came from instead
    assert "cost: 0.000 GPU-hours, 0.000 CPU-hours (0 attempts, from state files)" in out


def test_cancel_cancels_every_job_of_the_run(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    assert main(["cancel", str(run_dir.root)]) == 0
    assert fake.argv("scancel") == [["1000", "1001", "1002"]]
    assert read_json(run_dir.manifest_file)["status"] == "cancelled"


# ------------------------------------------------------------------------------------------
# resume: which elements


def selection(run_dir: RunDir) -> dict:
    return rerun_selection(run_dir, read_json(run_dir.plan_file))


def planned_run(tmp_path: Path, recipe: Path, profile: str = "test-cluster") -> RunDir:
    out = tmp_path / "planned"
    assert main(["plan", str(recipe), "--profile", profile, "--out", str(out)]) == 0
    return RunDir(out)


def test_nothing_missing_nothing_to_rerun(fake, tmp_path):
    run_dir = planned_run(tmp_path, full_recipe(tmp_path))
    mark_all_done(run_dir)
    assert selection(run_dir) == {}


def test_missing_generation_reruns_its_evaluation_and_the_collector(fake, tmp_path):
    run_dir = planned_run(tmp_path, full_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("generate", 1),))
    assert selection(run_dir) == {"generate": [1], "evaluate": [1], "collect": [0]}


def test_missing_training_reruns_everything(fake, tmp_path):
    run_dir = planned_run(tmp_path, full_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("train", 0),))
    assert selection(run_dir) == {"train": [0], "merge": [0], "generate": [0, 1], "evaluate": [0, 1], "collect": [0]}


def test_missing_evaluation_only(fake, tmp_path):
    run_dir = planned_run(tmp_path, full_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("evaluate", 0),))
    assert selection(run_dir) == {"evaluate": [0], "collect": [0]}


def test_missing_collector_only(fake, tmp_path):
    run_dir = planned_run(tmp_path, full_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("collect", 0),))
    assert selection(run_dir) == {"collect": [0]}


def test_missing_shard_reruns_its_benchmarks_evaluation_only(fake, tmp_path):
    recipe = eval_recipe(tmp_path, benchmarks="[humaneval, mbpp]", extra_generate="    shards: {mbpp: 2}\n")
    run_dir = planned_run(tmp_path, recipe)
    plan = read_json(run_dir.plan_file)
    assert [i["key"] for i in plan["jobs"][0]["items"]] == ["humaneval", "mbpp-s0of2", "mbpp-s1of2"]
    mark_all_done(run_dir, except_=(("generate", 2),))
    assert selection(run_dir) == {"generate": [2], "evaluate": [1], "collect": [0]}


# ------------------------------------------------------------------------------------------
# resume: what is sent


def test_resume_resubmits_only_the_selection(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("generate", 1),))
    assert main(["resume", str(run_dir.root)]) == 0
    calls = fake.argv("sbatch")[3:]
    assert [Path(c[-1]).name for c in calls] == [
        "mft.evalrun.generate.sbatch", "mft.evalrun.evaluate.sbatch", "mft.evalrun.collect.sbatch",
    ]
    assert [option(c, "--array") for c in calls] == ["1%4", "1%4", None]  # test-cluster throttles at 4
    assert [option(c, "--dependency") for c in calls] == [None, "aftercorr:1003", "afterany:1004"]
    # dependents rerun from scratch: their old sentinels are gone, the untouched ones stay
    assert not run_dir.is_done("evaluate", 1) and not run_dir.is_done("collect", 0)
    assert run_dir.is_done("generate", 0) and run_dir.is_done("evaluate", 0)
    ids = status.element_job_ids(read_json(run_dir.manifest_file), read_json(run_dir.plan_file))
    assert ids[("generate", 0)] == "1000_0" and ids[("generate", 1)] == "1003_1"
    assert ids[("evaluate", 1)] == "1004_1" and ids[("collect", 0)] == "1005"
    assert "resubmitted generate: [1]" in capsys.readouterr().out


def test_resume_of_a_chunked_array_targets_the_right_chunk(fake, tmp_path):
    profile = tmp_path / "small-arrays.yaml"
    profile.write_text("name: small-arrays\ngpus_per_node: 0\nmax_array_size: 5\n")
    run_dir = submit(tmp_path, eval_recipe(tmp_path, benchmarks="[competition, humaneval]"), str(profile))
    submitted = len(fake.argv("sbatch"))
    mark_all_done(run_dir, except_=(("generate", 7),))  # chunk 1 (offset 5), local index 2
    assert main(["resume", str(run_dir.root)]) == 0
    calls = fake.argv("sbatch")[submitted:]
    assert [(Path(c[-1]).name, option(c, "--array")) for c in calls] == [
        ("mft.evalrun.generate.1.sbatch", "2"),
        ("mft.evalrun.evaluate.1.sbatch", "2"),
        ("mft.evalrun.collect.sbatch", None),
    ]
    assert option(calls[1], "--dependency") == f"aftercorr:{1000 + submitted}"
    ids = status.element_job_ids(read_json(run_dir.manifest_file), read_json(run_dir.plan_file))
    assert ids[("generate", 7)] == f"{1000 + submitted}_2"
    assert ids[("generate", 6)] == "1001_1"  # untouched element of the same chunk: first submission


def test_resume_with_nothing_missing_submits_nothing(fake, tmp_path, capsys):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    mark_all_done(run_dir)
    assert main(["resume", str(run_dir.root)]) == 0
    assert len(fake.argv("sbatch")) == 3
    assert "nothing to resume" in capsys.readouterr().out
