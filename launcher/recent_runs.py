"""`mftlaunch runs`: the recent runs under a runs root, newest first, read from their manifests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.rundir import RunDir, read_json


def recent_runs(root: Path, limit: int = 20) -> list[dict[str, Any]]:
    """What `mftlaunch runs` lists; directories without a readable manifest are not runs."""
    runs = []
    for run_dir in (RunDir(p) for p in sorted(root.iterdir()) if p.is_dir()) if root.is_dir() else ():
        try:
            data = read_json(run_dir.manifest_file)
        except (OSError, ValueError):
            continue
        runs.append({"run_dir": str(run_dir.root), "recipe": data.get("recipe"), "profile": data.get("profile"),
                     "submit_time": data.get("submit_time"), "status": data.get("status")})
    runs.sort(key=lambda r: r["submit_time"] or "", reverse=True)
    return runs[:limit]
