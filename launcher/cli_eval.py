"""CLI subcommands for the benchmark side: prompts, postprocess, evaluate, collect, data fetch.

`launcher/cli.py` calls `register(subparsers)`; each subcommand sets `func` (via set_defaults) to
a handler taking the parsed args and returning the exit code. Handlers import their `jobs`
module only when they run, so `mftlaunch --help` stays fast and the launcher never pulls in
anything heavy (none of these modules imports torch anyway).

Data directory: --data-dir, else the compute side's default (jobs/code_benchmarks/data.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from launcher.contract import ENV_DATA_DIR, PROMPT_FORMATS


def _data_dir(args: argparse.Namespace) -> Optional[str]:
    """--data-dir; None lets jobs/code_benchmarks/data.py choose the default."""
    return args.data_dir


def _err(message: str) -> None:
    print(f"mftlaunch: {message}", file=sys.stderr)


def _write_json(path: str, data: Any) -> None:
    from launcher.rundir import atomic_write_text

    atomic_write_text(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _prompt_format(args: argparse.Namespace) -> Any:
    from jobs.code_benchmarks.prompts import PromptFormat

    return PromptFormat(name=args.format, prefix=args.prefix, suffix=args.suffix, system=args.system,
                        eos=tuple(args.eos or ()))


# ---------------------------------------------------------------------------------------------
# handlers


def cmd_prompts(args: argparse.Namespace) -> int:
    """Exact prompt strings of a benchmark, dataset order, as a JSON list (no model needed)."""
    from jobs.code_benchmarks.data import DataError, load_benchmark
    from jobs.code_benchmarks.prompts import build_prompts

    try:
        fmt = _prompt_format(args)
        data = load_benchmark(args.task, _data_dir(args), args.limit)
    except (DataError, ValueError) as exc:
        _err(str(exc))
        return 1
    _write_json(args.out, build_prompts(args.task, data.problems, fmt))
    print(f"wrote {len(data)} prompts of {args.task} ({fmt.name}) to {args.out}")
    return 0


def cmd_postprocess(args: argparse.Namespace) -> int:
    """Programs the generation job would save for given completions."""
    from jobs.code_benchmarks.data import DataError, load_benchmark
    from jobs.code_benchmarks.postprocess import postprocess

    try:
        fmt = _prompt_format(args)
        data = load_benchmark(args.task, _data_dir(args))
        entries = json.loads(Path(args.completions).read_text(encoding="utf-8"))
    except (DataError, ValueError, OSError) as exc:
        _err(str(exc))
        return 1
    if not isinstance(entries, list):
        _err(f"{args.completions}: expected a JSON list of {{\"index\": i, \"completion\": text}}")
        return 1
    out = []
    for number, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("index"), int)
                and isinstance(entry.get("completion"), str)):
            _err(f"{args.completions}: entry {number} needs an int 'index' and a string 'completion'")
            return 1
        index = entry["index"]
        if not 0 <= index < len(data):
            _err(f"{args.completions}: entry {number}: index {index} is out of range (0..{len(data) - 1})")
            return 1
        program = postprocess(args.task, data.problems[index], entry["completion"], fmt)
        out.append({"index": index, "program": program})
    _write_json(args.out, out)
    print(f"wrote {len(out)} programs of {args.task} ({fmt.name}) to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a generations file; metrics JSON + per-sample results JSONL."""
    from jobs.code_benchmarks.data import DataError
    from jobs.evaluate import GenerationsError, SandboxError, evaluate_file

    try:
        payload = evaluate_file(args.task, args.generations, args.out, _data_dir(args), sandbox=args.sandbox,
                                workers=args.workers, limit=args.limit, timeout_s=args.timeout)
    except (DataError, GenerationsError, SandboxError, ValueError) as exc:
        _err(str(exc))
        return 1
    metrics = payload[args.task]
    print(f"{args.task}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) + f"  → {args.out}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Table of a run's (or a metrics folder's) results; exit 1 when a task is missing/failed."""
    from jobs.collect import ResultsError, gather_results, print_table, render, write_outputs
    from launcher.run_dir_check import open_run_dir

    for source in args.sources:  # a run directory (not a metrics folder) must be a sound one
        if (Path(source) / "plan.json").exists() or (Path(source) / "manifest.json").exists():
            open_run_dir(source, submitted=False)
    try:
        collection = gather_results(*args.sources, model=args.model)
    except ResultsError as exc:
        _err(str(exc))
        return 1
    if args.format == "table":
        print_table(collection)
    else:
        sys.stdout.write(render(collection, args.format))
    if args.out:
        try:
            written = write_outputs(collection, args.out)
        except ResultsError as exc:
            _err(str(exc))
            return 1
        print(f"wrote {', '.join(written['tables'])}" + (f", {written['zip']}" if written.get("zip") else
              f" (no zip: {written.get('no_zip_reason')})"), file=sys.stderr)
    if not collection.complete:
        _err(collection.problem_summary())
        return 1
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Download the benchmark data, verified against the pinned sha256 sums; or, with --model, a
    Hugging Face model snapshot (config, tokenizer, safetensors weights) into DEST/models/ for
    compute nodes without internet. HF_TOKEN (private / gated repos) and HF_ENDPOINT (a Hub mirror)
    are read from the environment."""
    from launcher.data_fetch import FetchError, fetch, fetch_model

    if args.model is None and (args.revision is not None or args.allow_pickle):
        _err("--revision and --allow-pickle go with --model REPO_ID")
        return 2
    if args.model is not None and args.base_url:
        _err("--base-url is a mirror of the benchmark data; for a model mirror set HF_ENDPOINT")
        return 2
    try:
        if args.model is None:
            fetch(args.dest, base_url=args.base_url)
            return 0
        path = fetch_model(args.dest, args.model, revision=args.revision, allow_pickle=args.allow_pickle)
    except FetchError as exc:
        _err(str(exc))
        return 1
    print("use as model.path in a recipe:", flush=True)
    print(path, flush=True)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from jobs.code_benchmarks.data import DataError
    from jobs.generate import generate_standalone

    try:
        counts = generate_standalone(
            args.model, args.task, args.out, model_name=args.model_name, data_dir=_data_dir(args),
            limit=args.limit, prompt_format=args.format, prefix=args.prefix, suffix=args.suffix,
            system=args.system, eos=args.eos or (), max_length=args.max_length,
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, n_samples=args.n_samples,
            greedy=not args.sample, temperature=args.temperature, top_p=args.top_p, dtype=args.dtype,
            device=args.device, static_cache=args.static_cache, compile=args.compile,
        )
    except DataError as exc:
        _err(str(exc))
        return 1
    for benchmark, c in counts.items():
        print(f"{benchmark}: {c.get('problems')} problems, {c.get('generated_tokens')} tokens")
    return 0


# ---------------------------------------------------------------------------------------------
# registration


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help=f"benchmark data (default: ${ENV_DATA_DIR}, else the copy installed with mftlaunch)")


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="competition", choices=PROMPT_FORMATS,
                        help="prompt format (default: competition)")
    parser.add_argument("--prefix", default="", help="custom format: text before the prompt")
    parser.add_argument("--suffix", default="", help="custom format: text after the prompt")
    parser.add_argument("--system", default="", help="custom format: text before the prefix")
    parser.add_argument("--eos", action="append", default=None,
                        help="extra end-of-sequence string (repeatable), e.g. --eos '<|im_end|>'")


def _task_choices() -> list[str]:
    from launcher.contract import ALL_BENCHMARKS

    return list(ALL_BENCHMARKS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add prompts, postprocess, evaluate, collect and `data fetch` to the `mftlaunch` CLI."""
    tasks = _task_choices()

    p = subparsers.add_parser("prompts", help="write a benchmark's exact prompts as a JSON list",
                              description=cmd_prompts.__doc__)
    p.add_argument("--task", required=True, choices=tasks, metavar="TASK", help="benchmark, e.g. mbpp")
    _add_format(p)
    _add_data_dir(p)
    p.add_argument("--limit", type=int, default=None, help="first N problems")
    p.add_argument("--out", required=True, help="output JSON file")
    p.set_defaults(func=cmd_prompts)

    p = subparsers.add_parser("postprocess", help="post-process completions into programs",
                              description=cmd_postprocess.__doc__ + ' Input: JSON list of {"index": i, '
                              '"completion": text}; output: JSON list of {"index": i, "program": text}.')
    p.add_argument("--task", required=True, choices=tasks, metavar="TASK")
    _add_format(p)
    _add_data_dir(p)
    p.add_argument("--completions", required=True, help="JSON list of {index, completion}")
    p.add_argument("--out", required=True, help="output JSON file")
    p.set_defaults(func=cmd_postprocess)

    p = subparsers.add_parser("generate", help="generate programs for benchmarks with a model, no Slurm",
                              description="Writes generations_<task>_<model>.json (+ .raw.json sidecar) into --out.")
    p.add_argument("--model", required=True, help="HF model directory or builtin:tiny-llama")
    p.add_argument("--task", action="append", required=True,
                   help="benchmark name or alias (competition, all); repeatable")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model-name", help="name used in file names (default: the model directory's name)")
    p.add_argument("--limit", type=int, help="first N problems per benchmark")
    _add_data_dir(p)
    _add_format(p)
    p.add_argument("--max-length", type=int, default=2048, help="prompt + generation tokens")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-samples", type=int, default=1)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--static-cache", action="store_true", help="static KV cache (GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step (GPU; implies --static-cache)")
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser("evaluate", help="execute a generations file and write its metrics",
                              description=cmd_evaluate.__doc__)
    p.add_argument("--task", required=True, choices=tasks, metavar="TASK")
    p.add_argument("--generations", required=True, help="generations JSON (list per problem of programs)")
    p.add_argument("--out", required=True, help="metrics JSON to write (results JSONL goes beside it)")
    _add_data_dir(p)
    p.add_argument("--sandbox", default="auto", choices=("auto", "bubblewrap", "apptainer", "none"))
    p.add_argument("--workers", type=int, default=None, help="parallel programs (default: the allocation's CPUs)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per program (default: the reference harness's per benchmark)")
    p.add_argument("--limit", type=int, default=None, help="first N problems")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("collect", help="results table of a run, every model (13-task mean, HumanEval beside, best model)",
                              description=cmd_collect.__doc__)
    p.add_argument("sources", nargs="+", metavar="RUN_DIR_OR_METRICS_DIR",
                   help="a run directory, or metrics_<task>_<model>.json files / folders")
    p.add_argument("--model", default=None, help="the model the submission zip is for (default: the best by the 13-task mean)")
    p.add_argument("--format", default="table", choices=("table", "md", "csv", "json"))
    p.add_argument("--out", default=None, help="also write results.md/csv/json (and the zip) into this folder")
    p.set_defaults(func=cmd_collect)

    data = subparsers.add_parser("data", help="benchmark data")
    data_sub = data.add_subparsers(dest="data_command", metavar="{fetch}")
    data_sub.required = True
    p = data_sub.add_parser("fetch", help="download the benchmark data (sha256-pinned), or a model (--model)",
                            description=cmd_data_fetch.__doc__)
    p.add_argument("--dest", required=True, help="data directory to fill")
    p.add_argument("--base-url", default=None, help="mirror laid out like a data dir (default: the public sources)")
    p.add_argument("--model", default=None, metavar="REPO_ID",
                   help="instead of the benchmark data, download this Hugging Face model into DEST/models/ORG--NAME")
    p.add_argument("--revision", default=None, metavar="REV", help="with --model: branch, tag or commit (default: main)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="with --model: also take pickle *.bin weights (default: safetensors only)")
    p.set_defaults(func=cmd_data_fetch)
