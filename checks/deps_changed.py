"""deps_changed: a deps folder on PYTHONPATH modified after a running job started (Lustre stale handles).

sure2.md bug 5 and feedback-sigma2-nris.md: replacing packages in a ``pip --target`` folder while jobs
import from it gives ``OSError: [Errno 116] Stale file handle``; treat the folder as immutable and
install into a new versioned one (pylibs -> pylibs3). Running jobs and their start times come from
``squeue -h -u $USER -t RUNNING -o '%i %S'``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from geohpc.core.runtime import deps_dir
from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import CommandUnavailable, command_output, parse_squeue_starts

NAME = "deps_changed"
DESCRIPTION = "DEPS_DIR (or DEPS_ROOT/current) / CONTAINER_PYTHONPATH / PYTHONPATH folders modified after a running job started (squeue)"
STAGES = "all"


def deps_folders(ctx: PreflightContext) -> list[Path]:
    """The deps folders jobs import from: DEPS_DIR, CONTAINER_PYTHONPATH and PYTHONPATH entries outside the repo."""
    raw = [deps_dir(ctx.site)]
    raw += ctx.site.get("CONTAINER_PYTHONPATH", "").replace(",", ":").split(":")
    raw += ctx.env.get("PYTHONPATH", "").split(":")
    # the checkout itself and its py/ (PYTHONPATH=<repo>/py in containers) are code, not a deps folder;
    # a deps folder that happens to live under the checkout is still watched
    own = {ctx.repo.resolve(), (ctx.repo / "py").resolve()}
    return [Path(p) for p in dict.fromkeys(r.strip() for r in raw)
            if p and p.startswith("/") and Path(p).resolve() not in own]


def last_change(folder: Path) -> float:
    """Newest mtime of the folder and its direct entries (pip --target rewrites the package folders there)."""
    newest = folder.stat().st_mtime
    with os.scandir(folder) as it:
        for entry in it:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def check(ctx: PreflightContext) -> Result:
    """Fail when a deps folder changed after a running job of this user started."""
    folders = deps_folders(ctx)
    if not folders:
        return ok("no deps folder (DEPS_DIR, CONTAINER_PYTHONPATH, PYTHONPATH) to watch")
    here = [f for f in folders if f.is_dir()]
    site = ctx.site.get("SITE_NAME", "?")
    if not here:
        return warn(f"deps folder {folders[0]} is not on this machine: cannot see when it changed",
                    f"run make preflight on {site}'s login node")
    user = ctx.env.get("USER") or os.environ.get("USER", "")
    argv = ["squeue", "-h", "-t", "RUNNING", "-o", "%i %S"] + (["-u", user] if user else [])
    try:
        running = parse_squeue_starts(command_output(ctx.env, "GEOHPC_SQUEUE_OUTPUT", argv))
    except (CommandUnavailable, OSError) as exc:
        return warn(f"cannot list running jobs: {exc}", f"run make preflight on {site}'s login node")
    if not running:
        return ok(f"no running jobs: changes to {len(here)} deps folder(s) harm nothing")
    first_job, first_start = min(running, key=lambda r: r[1])
    changed = [(f, t) for f in here if (t := last_change(f)) > first_start]
    if changed:
        folder, t = changed[0]
        return fail(f"deps folder {folder} changed at {_when(t)}, after running job {first_job} started at "
                    f"{_when(first_start)}: on Lustre that job can die with 'OSError: [Errno 116] Stale file handle'",
                    "never modify a deps folder in place: make site-setup installs into a NEW versioned folder "
                    "(pip --target .../v<N+1>); point DEPS_DIR at it and leave the old one until its jobs end")
    return ok(f"{len(here)} deps folder(s) unchanged since the oldest of {len(running)} running job(s) started")
