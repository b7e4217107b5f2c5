"""`mftlaunch compare` and `mftlaunch report`: reading collected runs back.

Both read RUN/collect/results.json through `jobs.results` (imported lazily, as the compute side
is not needed to parse the command line). A run directory that is missing, empty, not collected
yet or damaged gets one line naming it and what to do, and exit code 1.
"""
from __future__ import annotations

import argparse
import sys

#: compare's output formats (jobs.results.compare.FORMATS; not imported: `--help` needs no jobs/)
FORMATS = ("table", "md", "csv", "json", "html")


def _err(message: str) -> None:
    print(f"mftlaunch: error: {message}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    """The tasks x models table across runs (and the models inside each), best per task in bold,
    the difference per task; refuses runs measured on other data or prompts unless --force."""
    from jobs.results import compare
    from jobs.results.run_results import ResultsUnreadable, load_run_results
    from launcher.run_dir_check import open_run_dir

    for path in args.runs:
        open_run_dir(path, submitted=False)
    try:
        runs = [load_run_results(path) for path in args.runs]
        comparison = compare.compare(runs, force=args.force)
    except (ResultsUnreadable, compare.MismatchedRuns) as exc:
        _err(str(exc))
        return 1
    if args.format == "table":
        compare.print_table(comparison)
    else:
        text = compare.render(comparison, args.format)
        if args.out:
            from pathlib import Path

            from launcher.rundir import atomic_write_text

            atomic_write_text(Path(args.out), text)
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        for line in comparison.differences:
            print(f"mftlaunch: warning: {line}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report (tables, plots, training curves, outcomes, cost)."""
    from jobs.results.report import write_report
    from jobs.results.run_results import ResultsUnreadable
    from launcher.run_dir_check import open_run_dir

    for path in args.runs:
        open_run_dir(path, submitted=False)
    try:
        out = write_report(args.runs, args.out)
    except ResultsUnreadable as exc:
        _err(str(exc))
        return 1
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add compare and report to the `mftlaunch` CLI."""
    p = subparsers.add_parser("compare", help="compare the results of runs (and of the models inside them)",
                              description=cmd_compare.__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (their collect/results.json)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", help="write the md/csv/json/html output to this file instead of stdout")
    p.add_argument("--force", action="store_true",
                   help="compare runs even when their data (sha256) or prompt settings differ")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("report", help="write a self-contained HTML report of one or more runs",
                              description=cmd_report.__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (their collect/results.json)")
    p.add_argument("--out", required=True, help="the HTML file to write, e.g. report.html")
    p.set_defaults(func=cmd_report)
