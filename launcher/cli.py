"""The `mftlaunch` command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from launcher import cli_eval, cli_results
from launcher import profile as profiles
from launcher.plan import Plan
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from launcher.yamlsource import ConfigError


def _err(message: str) -> None:
    print(f"mftlaunch: error: {message}", file=sys.stderr)


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--profile", help="cluster profile name or YAML file (default: local without sbatch, "
                                     "else $MFTLAUNCH_PROFILE or the recipe's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set train.learning_rate=1e-4 (repeatable)")


def _print_plan(plan: Plan) -> None:
    if len(plan.models) > 1:
        print(f"  models ({len(plan.models)}): {', '.join(m['name'] for m in plan.models)}")
    for job in plan.jobs:
        res = job.resources
        dep = f" after {job.depends_on} ({job.dependency_type})" if job.depends_on else ""
        kind = f"array[{len(job.items)}]" if job.is_array else "job"
        print(f"  {job.name:40s} {kind:10s} nodes={res.nodes} tasks/node={res.tasks_per_node} gpus/node={res.gpus_per_node} "
              f"partition={res.partition or '-'} time={res.time_minutes}min{dep}")
    for note in plan.notes:
        print(f"  note: {note}")


def cmd_validate(args: argparse.Namespace) -> int:
    from launcher.submit import load

    loaded = load(args.recipe, args.profile, args.overrides, check_paths=args.check_paths)
    print(f"{args.recipe}: valid ({', '.join(loaded.recipe.stages.present())}) for profile '{loaded.profile.name}'")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from launcher import slurm
    from launcher.render import render_script
    from launcher.submit import load

    loaded = load(args.recipe, args.profile, args.overrides, check_paths=False)
    out = RunDir(args.out) if args.out else None
    print(f"plan for {loaded.recipe.name} on profile '{loaded.profile.name}':")
    _print_plan(loaded.plan)
    if not loaded.profile.is_local:
        _print_kept_sbatch_defaults()
    if out is None:
        return 0
    atomic_write_json(out.plan_file, loaded.plan.to_dict())
    for job in loaded.plan.jobs:
        for chunk in range(len(job.chunks)):
            path = out.script(job.name, chunk)
            atomic_write_text(path, render_script(job, loaded.recipe, loaded.profile, out, chunk))
            print(f"  wrote {path}")
            if args.test_only:
                print(f"    sbatch --test-only: {slurm.sbatch(path, test_only=True)}")
    return 0


def _print_kept_sbatch_defaults() -> None:
    from launcher.inherited_env import kept_sbatch_defaults

    kept = kept_sbatch_defaults()
    if kept:
        print("  kept from your environment (sbatch lets them override the scripts' #SBATCH lines): "
              + " ".join(f"{k}={v}" for k, v in kept.items()))


def cmd_submit(args: argparse.Namespace) -> int:
    from launcher.submit import load, submit

    started = time.perf_counter()
    loaded = load(args.recipe, args.profile, args.overrides, check_paths=True, submitting=True)
    run_dir = submit(loaded)
    print(f"submitted {loaded.recipe.name} to profile '{loaded.profile.name}' in {time.perf_counter() - started:.2f}s")
    print(f"run directory: {run_dir.root}")
    print(f"watch it: mftlaunch status {run_dir.root}   logs: mftlaunch logs {run_dir.root} -f")
    if not args.wait:
        return 0
    return _wait(run_dir, loaded.profile.is_local)


def _wait(run_dir: RunDir, local: bool, poll_s: float = 5.0) -> int:
    from launcher import status
    from launcher.submit import wait_local
    from launcher.waiting import EXIT_COMPLETED, wait_for_run

    if local:
        wait_local(run_dir)
    code, message = wait_for_run(run_dir, status.read_status, poll_s=poll_s)
    rows, warnings = status.read_status(run_dir)
    status.print_table(run_dir, rows, warnings)
    results = run_dir.results_table("md")
    if results.is_file():
        print(results.read_text(encoding="utf-8"))
    print(f"{message}: {run_dir.root}" + ("" if code == EXIT_COMPLETED else f" (exit {code})"))
    return code


def cmd_status(args: argparse.Namespace) -> int:
    from launcher import status
    from launcher.run_dir_check import open_run_dir

    run_dir = open_run_dir(args.run)
    rows, warnings = status.read_status(run_dir)
    from jobs.results.cost import run_cost

    cost = run_cost(run_dir)
    if args.json:
        print(json.dumps({"run_dir": str(run_dir.root), "elements": [r.to_dict() for r in rows],
                          "summary": status.summary(rows), "warnings": warnings, "cost": cost.to_dict()}, indent=2))
    else:
        status.print_table(run_dir, rows, warnings)
        print(cost.summary_line())
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from launcher import logs
    from launcher.run_dir_check import open_run_dir

    run_dir = open_run_dir(args.run, submitted=False)
    if args.follow:
        return _follow_logs(run_dir, args)
    files = logs.log_files(run_dir, args.stage, args.index)
    for path in files:
        print(f"==> {path} <==")
        sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
    return 0 if files else _no_logs(run_dir, args)


def _no_logs(run_dir: RunDir, args: argparse.Namespace) -> int:
    _err(f"no logs under {run_dir.logs_dir}" + (f" for stage {args.stage}" if args.stage else "")
         + (f" index {args.index}" if args.index is not None else ""))
    return 1


def _follow_logs(run_dir: RunDir, args: argparse.Namespace, patience_s: float = 900.0) -> int:
    """`logs -f`: print what the chosen elements write until each has reached a state it will not
    leave by itself; exit 4 when Slurm stops answering for `patience_s` (as `--wait` does)."""
    from launcher import logs, status
    from launcher.waiting import EXIT_UNKNOWABLE, RunWatch

    watch = RunWatch(run_dir, status.read_status, patience_s,
                     select=lambda r: args.stage in (None, r.stage) and args.index in (None, r.index))
    outcomes = []

    def ended() -> bool:
        outcomes.append(watch.check())
        return outcomes[-1] is not None

    printed = False
    try:
        for chunk in logs.follow(lambda: logs.log_files(run_dir, args.stage, args.index), ended):
            printed = True
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    code, message = outcomes[-1]
    if code == EXIT_UNKNOWABLE:
        _err(f"stopped following: {message}")
        return code
    return 0 if printed else _no_logs(run_dir, args)


def cmd_cancel(args: argparse.Namespace) -> int:
    from launcher.cancel import cancel
    from launcher.run_dir_check import open_run_dir

    cancelled = cancel(open_run_dir(args.run))
    print("cancelled: " + (" ".join(cancelled) if cancelled else "nothing was running"))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from launcher.resume import rerun_selection, resume
    from launcher.run_dir_check import open_run_dir

    run_dir = open_run_dir(args.run, profile=True)
    if rerun_selection(run_dir, read_json(run_dir.plan_file)):
        _check_unchanged(run_dir, strict=args.strict, force=args.force)
    selection = resume(run_dir)
    if not selection:
        print("nothing to resume: every element has its completion sentinel")
        return 0
    for stage, indices in selection.items():
        print(f"resubmitted {stage}: {indices}")
    if args.wait:
        from launcher.submit import load_manifest

        return _wait(run_dir, load_manifest(run_dir).get("scheduler") == "local")
    return 0


def _check_unchanged(run_dir: RunDir, *, strict: bool, force: bool) -> None:
    """Refuse to continue a run under a changed recipe or profile (or changed code with --strict),
    unless --force, which the manifest records."""
    from launcher import fingerprint
    from launcher.submit import load_manifest

    manifest = load_manifest(run_dir)
    drift = fingerprint.check_resume(run_dir, manifest)
    for note in drift.notes:
        print(f"mftlaunch: note: {note}", file=sys.stderr)
    if drift.refused(strict) and not force:
        what = drift.config + (drift.code if strict else [])
        raise RuntimeError(
            f"resume refused: {'the recipe or profile' if drift.config else 'the code'} changed since this run was "
            f"submitted ({'; '.join(what[:6])}{'; ...' if len(what) > 6 else ''}). Submit a new run, or "
            "resume anyway with --force (recorded in the manifest)")
    for change in drift.config:  # only reached with --force
        print(f"mftlaunch: warning: resuming despite a changed {change}", file=sys.stderr)
    for change in drift.code:
        print(f"mftlaunch: warning: code changed since submission: {change} (--strict refuses)", file=sys.stderr)
    if force and (drift.config or drift.code):
        fingerprint.record_forced_resume(run_dir, manifest, drift)


def cmd_runs(args: argparse.Namespace) -> int:
    from launcher.recent_runs import recent_runs

    for r in recent_runs(Path(args.root), args.limit):
        print(f"{r['submit_time']}  {r['recipe']:24s} {r['profile']:16s} {r['status']:12s} {r['run_dir']}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, path in sorted(profiles.available().items()):
            p = profiles.load_profile(str(path))
            print(f"{name:28s} {p.scheduler:6s} {p.description}  ({path})")
        return 0
    if not args.name:
        _err(f"profiles {args.action} needs a profile NAME")
        return 2
    p = profiles.load_profile(args.name)
    if args.action == "show":
        print(profiles.profile_to_yaml(p), end="")
        return 0
    from launcher.profile_check import check, distributed_check

    root = Path(args.root) / "_checks"
    problems = check(p, root, args.timeout)
    for line in problems:
        print(line)
    failed = any(line.startswith("FAIL") for line in problems)
    if args.nodes and not failed:
        report = distributed_check(p, args.nodes, root, args.timeout)
        ok = report["world_size"] == args.nodes * max(1, p.gpus_per_node) and \
            report["all_reduce_sum"] == report["expected_sum"]
        hosts = ", ".join(f"rank {r['rank']}: {r['host']} {r['address']}" for r in report["ranks"])
        print(f"{'OK  ' if ok else 'FAIL'} {report['backend']} all_reduce across {report['world_size']} ranks "
              f"(sum {report['all_reduce_sum']:g}, expected {report['expected_sum']:g}); {hosts}")
        failed = not ok
    return 1 if failed else 0


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("mftlaunch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mftlaunch", description="Fine-tune and evaluate code LLMs on Slurm clusters.")
    parser.add_argument("--version", action="version", version=f"mftlaunch {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("validate", cmd_validate, "check a recipe (and profile) and exit 0, or print every error and exit 1")
    _add_recipe_args(p)
    p.add_argument("--check-paths", action="store_true", help="also require model/data paths to exist here")
    p = add("plan", cmd_plan, "show the job graph; with --out render every sbatch script and plan.json")
    _add_recipe_args(p)
    p.add_argument("--out", help="directory to write the rendered scripts and plan.json into")
    p.add_argument("--test-only", action="store_true", help="also run `sbatch --test-only` on each script")
    p = add("submit", cmd_submit, "submit the whole graph and print the run directory")
    _add_recipe_args(p)
    p.add_argument("--wait", action="store_true", help="wait for the run to finish; exit non-zero if anything failed")
    p = add("status", cmd_status, "one table for every job and array element of a run")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p = add("logs", cmd_logs, "print (or follow) a run's logs")
    p.add_argument("run")
    p.add_argument("--stage")
    p.add_argument("--index", type=int)
    p.add_argument("-f", "--follow", action="store_true")
    p = add("cancel", cmd_cancel, "cancel every job of a run")
    p.add_argument("run")
    p = add("resume", cmd_resume, "resubmit only elements without a completion sentinel, and their dependents")
    p.add_argument("run")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--strict", action="store_true", help="also refuse when the code changed since submission")
    p.add_argument("--force", action="store_true",
                   help="resume even though the recipe, profile or code changed (recorded in the manifest)")
    p = add("runs", cmd_runs, "list recent runs")
    p.add_argument("--root", default="./runs")
    p.add_argument("--limit", type=int, default=20)
    p = add("profiles", cmd_profiles, "list, show or check cluster profiles")
    p.add_argument("action", choices=["list", "show", "check"])
    p.add_argument("name", nargs="?")
    p.add_argument("--nodes", type=int, default=0,
                   help="check: also run a torch.distributed all_reduce across this many nodes")
    p.add_argument("--root", default="./runs", help="check: where the check job's files go")
    p.add_argument("--timeout", type=float, default=300,
                   help="check: seconds to wait for each check job before cancelling it (default 300)")
    cli_eval.register(sub)
    cli_results.register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"mftlaunch: {len(exc.problems)} problem(s); nothing was submitted", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # SlurmError, RunDirError and friends: one clear line, no traceback
        _err(str(exc))
        return 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        paths = _run_dir_arguments(args)
        if not paths:
            raise
        # a run directory that passed the checks but has a damaged file deeper inside
        _err(f"{', '.join(paths)}: damaged run directory ({type(exc).__name__}: {exc})")
        return 1


def _run_dir_arguments(args: argparse.Namespace) -> list[str]:
    """The run directories a command was given (`run`, or the lists of collect/compare/report)."""
    if getattr(args, "run", None):
        return [args.run]
    return list(getattr(args, "runs", None) or getattr(args, "sources", None) or [])


if __name__ == "__main__":
    sys.exit(main())
