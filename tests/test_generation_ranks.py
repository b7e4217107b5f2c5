"""Data-parallel generation: two ranks write the same generations file, byte for byte, as one;
a rank killed mid-way resumes from its own progress file; and two CPU ranks on the two nodes of
the real test cluster do it through the launcher."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from jobs.code_benchmarks import prompts as pr  # noqa: E402
from jobs.generation.benchmark import generate_benchmark  # noqa: E402
from jobs.generation.hf_engine import HFEngine  # noqa: E402
from jobs.generation.progress import partial_filename  # noqa: E402
from jobs.generation.ranks import rank_share  # noqa: E402
from jobs.generation.rows import Row  # noqa: E402
from jobs.generation.settings import DecodeSettings  # noqa: E402
from launcher.rundir import generations_name, read_json  # noqa: E402
from test_generate import CountingEngine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = generations_name("humaneval", "tiny")
PROBLEMS = [{"task_id": f"Python/{i}", "prompt": f"def f{i}(x):\n" + "    # step\n" * (i % 4)} for i in range(7)]


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> HFEngine:
    return HFEngine.load(tiny_model_dir, device="cpu")


def _args(settings: DecodeSettings) -> dict:
    return dict(benchmark="humaneval", problems=PROBLEMS, indices=list(range(7)), fmt=pr.PromptFormat("competition"),
                settings=settings, model_name="tiny", model_id="tiny", log=lambda _m: None)


def test_ranks_take_every_world_size_th_batch():
    rows = [Row(i, 0, [1], 4) for i in range(7)]
    assert [r.problem for r in rank_share(rows, 2, 0, 2)] == [0, 1, 4, 5]
    assert [r.problem for r in rank_share(rows, 2, 1, 2)] == [2, 3, 6]
    assert [r.problem for r in rank_share(rows, None, 1, 3)] == [1, 4]
    everyone = sorted(r.problem for k in range(3) for r in rank_share(rows, 3, k, 3))
    assert everyone == list(range(7))


@pytest.mark.parametrize("settings", [DecodeSettings(max_new_tokens=8, batch_size=2),
                                      DecodeSettings(max_new_tokens=8, batch_size=2, greedy=False, n_samples=2)],
                         ids=["greedy", "sampled"])
def test_two_ranks_write_the_bytes_one_rank_writes(engine, tmp_path, settings):
    generate_benchmark(engine, out_dir=tmp_path / "one", **_args(settings))
    second = CountingEngine(engine)
    done = generate_benchmark(second, out_dir=tmp_path / "two", rank=1, world_size=2, **_args(settings))
    assert done["rank"] == 1 and not (tmp_path / "two" / NAME).exists()
    assert (tmp_path / "two" / partial_filename("humaneval", "tiny", 1, 2)).is_file()
    first = CountingEngine(engine)
    counts = generate_benchmark(first, out_dir=tmp_path / "two", rank=0, world_size=2, **_args(settings))
    assert counts["data_parallel_ranks"] == 2 and counts["samples"] == 7 * settings.n_samples
    assert first.seen and second.seen and not set(first.seen) & set(second.seen)
    assert (tmp_path / "two" / NAME).read_bytes() == (tmp_path / "one" / NAME).read_bytes()
    assert not list((tmp_path / "two").glob("*.partial*"))


KILL_AFTER_FIRST_BATCH = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from jobs.generation.benchmark import generate_benchmark
from jobs.generation.hf_engine import HFEngine
from jobs.generation.settings import DecodeSettings
import test_generation_ranks as t
engine = HFEngine.load({model!r}, device="cpu")
def log(message):
    if " rows [" in message:  # the first progress line: one batch is saved
        os.kill(os.getpid(), signal.SIGKILL)
args = t._args(DecodeSettings(max_new_tokens=8, batch_size=1))
args["log"] = log
generate_benchmark(engine, out_dir=Path({out!r}), rank=1, world_size=2, **args)
"""


def test_a_killed_rank_resumes_from_its_partial_file(engine, tiny_model_dir, tmp_path):
    settings = DecodeSettings(max_new_tokens=8, batch_size=1)
    out = tmp_path / "two"
    code = KILL_AFTER_FIRST_BATCH.format(tests=str(ROOT / "tests"), model=str(tiny_model_dir), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    saved = read_json(out / partial_filename("humaneval", "tiny", 1, 2))["rows"]
    assert len(saved) == 1  # killed after its first batch was saved

    again = CountingEngine(engine)
    generate_benchmark(again, out_dir=out, rank=1, world_size=2, **_args(settings))
    assert len(again.seen) == 2 and not set(again.seen) & set(saved)  # rank 1 owns 3 of the 7 rows
    generate_benchmark(engine, out_dir=out, rank=0, world_size=2, **_args(settings))
    generate_benchmark(engine, out_dir=tmp_path / "one", **_args(settings))
    assert (out / NAME).read_bytes() == (tmp_path / "one" / NAME).read_bytes()


def test_rank_zero_requeues_while_it_waits_for_a_missing_rank(engine, tmp_path):
    from jobs.context import RequeueRequested

    with pytest.raises(RequeueRequested, match="other ranks"):
        generate_benchmark(engine, out_dir=tmp_path, rank=0, world_size=2, should_stop=lambda: True,
                           **_args(DecodeSettings(max_new_tokens=4, batch_size=4)))
    assert (tmp_path / partial_filename("humaneval", "tiny", 0, 2)).is_file()


@pytest.mark.slurm
@pytest.mark.slow
def test_two_cpu_ranks_on_two_slurm_nodes_match_one_rank(slurm, tmp_path, data_dir, capsys):
    from test_slurm_pipeline import run_log, submit, wait_final

    outputs = {}
    for nodes in (2, 1):
        recipe = {
            "name": f"dp{nodes}",
            "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
            "output_root": str(tmp_path / "runs"),
            "data_dir": str(data_dir),
            "limit": 6,
            "stages": {"generate": {
                "benchmarks": ["humanevalsynthesize-python"], "max_new_tokens": 8, "batch_size": 1,
                "resources": {"nodes": nodes, "gpus_per_node": 0, "cpus_per_task": 1, "time": "00:10:00"}}},
        }
        path = tmp_path / f"dp{nodes}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        run = submit(path, capsys)
        rows = wait_final(run)
        log = run_log(run)
        assert rows[0]["state"] == "COMPLETED", log[-4000:]
        outputs[nodes] = run.piece_generations_file("tiny", "humanevalsynthesize-python", 0, 6).read_bytes()
        if nodes == 2:
            assert "generate rank 1/2" in log and re.search(r"rank 1/2: \d+/6 rows \[", log), log[-4000:]
            assert run.done_record("generate", 0)["data_parallel_ranks"] == 2
    assert outputs[2] == outputs[1]
