"""The one entry point every job task runs: `python -m jobs.run STAGE RUN_DIR INDEX`.

It turns (run directory, stage, array index) into a StageContext, checks that the elements this
one depends on really completed (their sentinels — Slurm's COMPLETED alone is not trusted), runs
`jobs.<stage>.run(ctx)`, and on rank 0 records the element's state and completion sentinel.
Exit codes: 0 done, 1 failed, 75 saved and asks to be requeued.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import socket
import sys
import time
import traceback
from typing import Any, NoReturn

from jobs import distributed
from jobs.context import RequeueRequested, StageContext
from jobs.runtime_versions import runtime_versions
from launcher.contract import (ENV_LOCAL_JOB_ID, ENV_RESTART_COUNT, ENV_START_TIME, REQUEUE_EXIT_CODE, STAGES,
                               plan_job, required_upstream)
from launcher.recipe import load_recipe
from launcher.rundir import RunDir, read_json

#: Every stage is the module of its name: jobs.train, jobs.merge, ... each exposing run_stage(ctx).
STAGE_MODULES = {stage: f"jobs.{stage}" for stage in STAGES}


class UpstreamIncomplete(RuntimeError):
    pass


def check_upstream(run_dir: RunDir, plan: dict[str, Any], stage: str, index: int) -> None:
    missing = [f"{s}[{i}] ({key})" for s, i, key in required_upstream(plan, stage, index) if not run_dir.is_done(s, i)]
    if missing:
        raise UpstreamIncomplete(
            f"cannot run {stage}[{index}]: these elements did not complete (no sentinel): {', '.join(missing)}; "
            f"see `mftlaunch status {run_dir.root}` and `mftlaunch resume {run_dir.root}`"
        )


def restart_count(env: dict[str, str]) -> int:
    return int(env.get("SLURM_RESTART_COUNT") or env.get(ENV_RESTART_COUNT) or 0)


def deadline(env: dict[str, str], minutes: int, margin_min: int) -> float:
    """When this attempt must have saved: the job's start + time limit − margin."""
    start = float(env.get("SLURM_JOB_START_TIME") or env.get(ENV_START_TIME) or time.time())
    return start + minutes * 60 - margin_min * 60


def build_context(run_dir: RunDir, stage: str, index: int) -> StageContext:
    plan = read_json(run_dir.plan_file)
    try:
        job = plan_job(plan, stage)
    except KeyError as exc:
        raise SystemExit(f"mftlaunch: {exc.args[0]}") from None
    if not 0 <= index < len(job["items"]):
        raise SystemExit(f"mftlaunch: {stage} has {len(job['items'])} elements, index {index} is out of range")
    recipe = load_recipe(run_dir.recipe_file)
    dist = distributed.from_environ()
    profile = run_dir.read_profile()
    distributed.export(dist, profile.get("net_ifname"))
    train = recipe.stages.train
    margin = train.stop_margin_min if (stage == "train" and train) else 1
    ctx = StageContext(
        run_dir=run_dir,
        recipe=recipe,
        plan=plan,
        stage=stage,
        index=index,
        item=job["items"][index],
        dist=dist,
        restart_count=restart_count(dict(os.environ)),
        deadline=deadline(dict(os.environ), job["resources"]["time_minutes"], margin),
        profile=profile,
    )
    ctx.stop.install()
    return ctx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGE_MODULES))
    parser.add_argument("run_dir")
    parser.add_argument("index", type=int)
    args = parser.parse_args(argv)
    run_dir = RunDir(args.run_dir)
    ctx = build_context(run_dir, args.stage, args.index)
    main_rank = ctx.dist.is_main
    job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get(ENV_LOCAL_JOB_ID, "")
    if main_rank:
        run_dir.update_state(args.stage, args.index, state="RUNNING", host=socket.gethostname(), job_id=job_id,
                     restarts=ctx.restart_count, started=time.time(), world_size=ctx.dist.world_size,
                     master_port=ctx.dist.master_port, versions=runtime_versions())
        print(f"mftlaunch: {args.stage}[{args.index}] ({ctx.item['key']}) on {socket.gethostname()} "
              f"rank {ctx.dist.rank}/{ctx.dist.world_size}, attempt {ctx.restart_count + 1}", flush=True)
    try:
        check_upstream(run_dir, ctx.plan, args.stage, args.index)
        module = importlib.import_module(STAGE_MODULES[args.stage])
        counts = module.run_stage(ctx) or {}
    except RequeueRequested as exc:
        if main_rank:
            run_dir.update_state(args.stage, args.index, state="REQUEUED", reason=str(exc) or ctx.stop.reason,
                                 versions=runtime_versions())
        print(f"mftlaunch: {args.stage}[{args.index}] saved its state and asks to be requeued", flush=True)
        return REQUEUE_EXIT_CODE
    except Exception as exc:  # the job's log gets the traceback; state keeps a one-line reason
        traceback.print_exc()
        if main_rank:
            run_dir.update_state(args.stage, args.index, state="FAILED", ended=time.time(),
                         error=f"{type(exc).__name__}: {exc}"[:500], versions=runtime_versions())
        return 1
    if main_rank:
        run_dir.mark_done(args.stage, args.index, counts)
        run_dir.update_state(args.stage, args.index, state="COMPLETED", ended=time.time(), versions=runtime_versions())
    return 0


def exit_without_teardown(code: int) -> NoReturn:
    """End the process with `code` once the element's outcome is on disk, skipping the interpreter's
    teardown. The C++ threads of torch's gloo backend and DeepSpeed's communication state can
    outlive destroy_process_group and abort that teardown now and then ("terminate called without
    an active exception", SIGABRT), which would make a completed element look failed to Slurm and to
    the local scheduler. Output is flushed first; nothing of the job's own runs at exit."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_without_teardown(main())
