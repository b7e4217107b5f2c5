"""The generation engines share one interface, and the benchmark loop serves both call styles
(fixed batches, all rows at once) without asking which engine it holds."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from jobs.code_benchmarks import prompts as pr  # noqa: E402
from jobs.generation.benchmark import generate_benchmark  # noqa: E402
from jobs.generation.engine import GenerationEngine  # noqa: E402
from jobs.generation.hf_engine import HFEngine  # noqa: E402
from jobs.generation.settings import DecodeSettings  # noqa: E402
from jobs.generation.vllm_engine import VLLMEngine  # noqa: E402
from launcher.rundir import generations_name, read_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = [{"task_id": f"Python/{i}", "prompt": f"def f{i}(x):\n" + "    # step\n" * (i % 3)} for i in range(5)]


def _members(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))


def test_both_engines_implement_every_member_of_the_interface():
    wanted = {n for n in vars(GenerationEngine) if not n.startswith("_")} | set(GenerationEngine.__annotations__)
    for cls in (HFEngine, VLLMEngine):
        init = inspect.getsource(cls.__init__)
        have = _members(cls) | set(re.findall(r"self\.(\w+)\s*=", init))
        assert wanted <= have, f"{cls.__name__} lacks {sorted(wanted - have)}"
        for name in ("generate", "batch_rows", "dtype_used", "generation_config", "encode"):
            ours = list(inspect.signature(getattr(cls, name)).parameters)
            theirs = list(inspect.signature(getattr(GenerationEngine, name)).parameters)
            assert ours == theirs, f"{cls.__name__}.{name}{ours} != interface {theirs}"


def test_no_code_asks_which_engine_it_holds():
    offenders = [str(p) for p in (ROOT / "jobs").rglob("*.py")
                 if re.search(r"isinstance\([^)]*(VLLMEngine|HFEngine)", p.read_text(encoding="utf-8"))]
    assert offenders == []


class AllAtOnce:
    """An HF engine that, like vLLM, wants every pending row in one call."""

    def __init__(self, inner: HFEngine):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def batch_rows(self, settings):
        return None

    def generate(self, rows, stop, settings):
        self.calls.append(len(rows))
        return self.inner.generate(rows, stop, settings)


def test_an_all_rows_engine_gets_one_call_and_the_same_file(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFTLAUNCH_CACHE", str(tmp_path / "cache"))
        from jobs.tiny_model import resolve_model_path

        engine = HFEngine.load(resolve_model_path("builtin:tiny-llama"), device="cpu")
    args = dict(benchmark="humaneval", problems=PROBLEMS, indices=range(5), fmt=pr.PromptFormat("competition"),
                settings=DecodeSettings(max_new_tokens=6, batch_size=2), model_name="tiny", log=lambda _m: None)
    whole = AllAtOnce(engine)
    generate_benchmark(whole, out_dir=tmp_path / "a", **args)
    generate_benchmark(engine, out_dir=tmp_path / "b", **args)
    assert whole.calls == [5]
    name = generations_name("humaneval", "tiny")
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_json(tmp_path / "a" / name.replace(".json", ".raw.json"))["backend"] == "hf"


def test_an_all_rows_engine_reports_progress_in_chunks(tmp_path, monkeypatch):
    """vLLM-style engines get calls of ALL_AT_ONCE_CHUNK_ROWS rows, so they log progress lines
    (rate, ETA) and can stop between calls like batched engines."""
    from jobs.generation import benchmark

    monkeypatch.setenv("MFTLAUNCH_CACHE", str(tmp_path / "cache"))
    from jobs.tiny_model import resolve_model_path

    monkeypatch.setattr(benchmark, "ALL_AT_ONCE_CHUNK_ROWS", 2)
    whole = AllAtOnce(HFEngine.load(resolve_model_path("builtin:tiny-llama"), device="cpu"))
    logged: list[str] = []
    shown: list[str] = []
    generate_benchmark(whole, "humaneval", PROBLEMS, range(5), pr.PromptFormat("competition"),
                       DecodeSettings(max_new_tokens=6, batch_size=8), tmp_path, "tiny", log=logged.append,
                       on_progress=shown.append)
    assert whole.calls == [2, 2, 1]
    assert [re.match(r"generate humaneval: (\d)/5 rows \[\d\d:\d\d<\d\d:\d\d, .*rows/s, .* new tok/s\]$", line)[1]
            for line in shown] == ["2", "4", "5"]
    assert all(line in logged for line in shown)
