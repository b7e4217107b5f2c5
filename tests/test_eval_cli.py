"""The benchmark subcommands of `mftlaunch`: prompts, postprocess, evaluate, collect, data fetch."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import contract
from jobs.code_benchmarks.data import load_benchmark
from jobs.code_benchmarks.postprocess import postprocess
from jobs.code_benchmarks.prompts import build_prompt
from launcher import cli_eval

REPO = Path(__file__).resolve().parent.parent


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mftlaunch")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_eval.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_prompts_exact_strings(tmp_path, data_dir):
    out = tmp_path / "p.json"
    assert cli(["prompts", "--task", "mbpp", "--limit", "2", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    prompts = json.loads(out.read_text())
    assert len(prompts) == 2
    assert prompts[0] == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n"
        '"""\nWrite a python function to remove first and last occurrence of a given character from the string.\n'
        'assert remove_Occ("hello","l") == "heo"\n"""\n'
        "<|im_end|>\n<|im_start|>assistant"
    )
    rows = load_benchmark("mbpp", data_dir, limit=2).problems
    assert prompts[1] == build_prompt("mbpp", rows[1], "competition")


def test_prompts_all_problems_instruct_and_custom(tmp_path, data_dir):
    out = tmp_path / "p.json"
    assert cli(["prompts", "--task", "humanevalfixtests-cpp", "--format", "instruct", "--data-dir", str(data_dir),
                "--out", str(out)]) == 0
    prompts = json.loads(out.read_text())
    assert len(prompts) == 164 and prompts[0].endswith("bool has_close_elements(vector<float> numbers, float threshold){")
    assert cli(["prompts", "--task", "humaneval", "--format", "custom", "--prefix", "<U>", "--suffix", "<A>",
                "--limit", "1", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    prompt = json.loads(out.read_text())[0]
    assert prompt.startswith("<U>from typing import List") and prompt.endswith('    """\n<A>')


def test_prompts_default_data_dir_from_env(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(data_dir))
    out = tmp_path / "p.json"
    assert cli(["prompts", "--task", "humanevalsynthesize-rust", "--limit", "1", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 1


def test_prompts_missing_data_says_how_to_fetch(tmp_path, capsys):
    rc = cli(["prompts", "--task", "mbpp", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "p.json")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "mbpp.jsonl" in err and "mftlaunch data fetch" in err
    assert not (tmp_path / "p.json").exists()


def test_unknown_task_is_refused():
    with pytest.raises(SystemExit):
        cli(["prompts", "--task", "humanevalsynthesize-cobol", "--out", "x.json"])


def test_postprocess_command(tmp_path, data_dir):
    rows = load_benchmark("humanevalsynthesize-python", data_dir, limit=3).problems
    completions = [
        {"index": 2, "completion": rows[2]["canonical_solution"] + "\n\nprint('hi')<|im_end|>"},
        {"index": 0, "completion": "```python\nprint(1)\n```"},
    ]
    src = tmp_path / "c.json"
    src.write_text(json.dumps(completions))
    out = tmp_path / "o.json"
    assert cli(["postprocess", "--task", "humanevalsynthesize-python", "--data-dir", str(data_dir),
                "--completions", str(src), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert [g["index"] for g in got] == [2, 0]
    assert got[0]["program"] == rows[2]["prompt"].rstrip() + "\n" + rows[2]["canonical_solution"] + "\n"
    assert got[1]["program"] == rows[0]["prompt"].rstrip()
    assert got[0]["program"] == postprocess("humanevalsynthesize-python", rows[2], completions[0]["completion"], "competition")


def test_postprocess_rejects_bad_input(tmp_path, data_dir, capsys):
    src = tmp_path / "c.json"
    src.write_text(json.dumps([{"index": 999, "completion": "x"}]))
    rc = cli(["postprocess", "--task", "mbpp", "--data-dir", str(data_dir), "--completions", str(src),
              "--out", str(tmp_path / "o.json")])
    assert rc == 1 and "out of range" in capsys.readouterr().err
    src.write_text(json.dumps([{"completion": "x"}]))
    assert cli(["postprocess", "--task", "mbpp", "--data-dir", str(data_dir), "--completions", str(src),
                "--out", str(tmp_path / "o.json")]) == 1


@pytest.mark.sandbox
def test_evaluate_command_end_to_end(tmp_path, data_dir, capsys):
    import eval_sandbox

    try:
        eval_sandbox.get_backend("auto")
    except eval_sandbox.SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    rows = load_benchmark("mbpp", data_dir, limit=3).problems
    gens = [[r["code"].replace("\r\n", "\n")] for r in rows]
    gens[1] = ["def nothing():\n    pass\n"]
    src = tmp_path / "generations_mbpp_m.json"
    src.write_text(json.dumps(gens))
    out = tmp_path / "metrics_mbpp_m.json"
    rc = cli(["evaluate", "--task", "mbpp", "--generations", str(src), "--out", str(out), "--data-dir", str(data_dir),
              "--workers", "2", "--limit", "3"])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["mbpp"]["pass@1"] == pytest.approx(2 / 3)
    assert metrics["config"]["data_sha256"] == load_benchmark("mbpp", data_dir).sha256
    results = [json.loads(l) for l in (tmp_path / "results_mbpp_m.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False, True]
    assert results[1]["error"] == "NameError"
    assert "pass@1=0.6667" in capsys.readouterr().out


def test_evaluate_command_mismatch_is_an_error(tmp_path, data_dir, capsys):
    src = tmp_path / "g.json"
    src.write_text(json.dumps([["x"]] * 2))
    rc = cli(["evaluate", "--task", "humaneval", "--generations", str(src), "--out", str(tmp_path / "m.json"),
              "--data-dir", str(data_dir)])
    assert rc == 1 and "holds 2 problems" in capsys.readouterr().err


def _metrics_dir(tmp_path: Path, skip=()) -> Path:
    folder = tmp_path / "metrics_m"
    folder.mkdir()
    for i, task in enumerate(contract.ALL_BENCHMARKS):
        if task in skip:
            continue
        n = 500 if task == "mbpp" else 164
        (folder / f"metrics_{task}_m.json").write_text(json.dumps(
            {task: {"pass@1": i / 100}, "config": {"num_problems": n, "limit": None}}))
    return folder


def test_collect_command_formats(tmp_path, capsys):
    folder = _metrics_dir(tmp_path)
    assert cli(["collect", str(folder), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"]["model"] == "m" and data["schema"] == 2
    assert data["models"][0]["mean_competition"] == pytest.approx(sum(range(13)) / 100 / 13)
    assert data["models"][0]["humaneval"] == pytest.approx(0.13)
    assert cli(["collect", str(folder), "--format", "csv"]) == 0
    assert "mean (13 tasks)" in capsys.readouterr().out
    assert cli(["collect", str(folder), "--format", "md", "--model", "m"]) == 0
    assert capsys.readouterr().out.startswith("# Results of m")
    assert cli(["collect", str(folder)]) == 0
    assert "humanevalfixtests-rust" in capsys.readouterr().out


def test_collect_command_names_missing_and_exits_1(tmp_path, capsys):
    folder = _metrics_dir(tmp_path, skip=("humanevalsynthesize-go",))
    out_dir = tmp_path / "out"
    rc = cli(["collect", str(folder), "--format", "md", "--out", str(out_dir)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "humanevalsynthesize-go" in captured.err and "missing" in captured.err
    assert (out_dir / "results.md").is_file() and not list(out_dir.glob("*.zip"))
    assert cli(["collect", str(tmp_path / "nowhere")]) == 1


def test_data_fetch_command(tmp_path, data_dir, monkeypatch):
    import functools
    import http.server
    import threading

    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    from launcher.data_fetch import FILES

    root = tmp_path / "mirror"
    for item in FILES:  # plain, writable copies (the shared data is read-only)
        (root / item.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / item.relpath, root / item.relpath)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert cli(["data", "fetch", "--dest", str(tmp_path / "d"), "--base-url", base]) == 0
        assert len(load_benchmark("mbpp", tmp_path / "d")) == 500
        bad = root / "mbpp" / "mbpp.jsonl"
        bad.write_text("{}\n")
        assert cli(["data", "fetch", "--dest", str(tmp_path / "d2"), "--base-url", base]) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_registered_in_the_real_cli(tmp_path, data_dir):
    cli_module = pytest.importorskip("launcher.cli")
    out = tmp_path / "p.json"
    assert cli_module.main(["prompts", "--task", "mbpp", "--limit", "1", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 1


def test_no_torch_import(tmp_path, data_dir):
    """The launcher side never imports torch: registering and running these commands must not."""
    code = (
        "import sys, argparse, json\n"
        "from launcher import cli_eval\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers(dest='c'); cli_eval.register(s)\n"
        f"a = p.parse_args(['prompts', '--task', 'mbpp', '--limit', '1', '--data-dir', {str(data_dir)!r}, '--out', {str(tmp_path / 'p.json')!r}])\n"
        "assert a.func(a) == 0\n"
        "import jobs.evaluate, jobs.collect, launcher.data_fetch, jobs.code_benchmarks.postprocess\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


def test_prompts_without_any_data_dir_use_the_packaged_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("MFTLAUNCH_DATA_DIR", raising=False)
    out = tmp_path / "p.json"
    assert cli(["prompts", "--task", "mbpp", "--limit", "2", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 2
