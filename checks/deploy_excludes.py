"""deploy_excludes: an unanchored rsync exclude that also drops a nested package folder of that name.

``--exclude 'data'`` excludes every folder named data at any depth, so ``src/pkg/data/`` never reaches the
site and the job fails there only: ``ModuleNotFoundError: No module named 'vcloud.data'`` (lumi.md,
tips.md #1, howto-*.md). Top-level folders must be excluded with a leading slash (``/data``). This reads
the exclude patterns ``make deploy`` passes to rsync and looks for nested folders in the checkout they hit.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "deploy_excludes"
DESCRIPTION = "make deploy's unanchored rsync excludes (data, outputs, logs, ...) that drop nested package folders"
STAGES = "all"
# excluded everywhere on purpose (caches, VCS, secrets); only the other patterns are meant for the top level
ANYWHERE = ("__pycache__", ".git", ".pytest_cache", ".ruff_cache", "node_modules", "build", "secrets", ".ssh",
            ".aws", ".env", ".netrc")


def deploy_excludes(repo: Path) -> list[str]:
    """The ``--exclude=`` patterns of the rsync command ``make deploy`` runs."""
    deploy = importlib.import_module("geohpc.ops.deploy")
    cmd = deploy.rsync_command(repo, "site", "/remote/dir", dry_run=True)
    return [a.split("=", 1)[1] for a in cmd if a.startswith("--exclude=")]


def nested_hits(repo: Path, patterns: list[str]) -> list[tuple[str, str]]:
    """``(pattern, nested folder)`` for unanchored plain-name patterns that match a folder below the top."""
    names = [p.rstrip("/") for p in patterns]
    top_only = [n for n in names if n and not any(c in n for c in "/*?[") and n not in ANYWHERE]
    hits = []
    for root, dirs, _files in os.walk(repo):
        rel = Path(root).relative_to(repo)
        keep = []
        for d in dirs:
            if rel != Path(".") and d in top_only:
                hits.append((d, str(rel / d)))
            elif not any(fnmatch.fnmatch(d, n) for n in names if "/" not in n):
                keep.append(d)  # walk on; excluded folders (venv, caches, data at the top) are not looked into
        dirs[:] = keep
    return hits


def check(ctx: PreflightContext) -> Result:
    """Fail when an exclude meant for a top-level folder also drops a nested folder of the checkout."""
    try:
        patterns = deploy_excludes(ctx.repo)
    except (ImportError, AttributeError, TypeError) as exc:
        return warn(f"cannot read make deploy's rsync excludes: {type(exc).__name__}: {exc}",
                    "check the rsync command with make deploy SITE=... DRY_RUN=1")
    hits = nested_hits(ctx.repo, patterns)
    if hits:
        pat, folder = hits[0]
        return fail(f"rsync --exclude={pat} (no leading /) also drops {folder}/: it never reaches the site "
                    f"('ModuleNotFoundError' or missing files there only){f' (+{len(hits) - 1} more)' if len(hits) > 1 else ''}",
                    f"anchor top-level excludes: --exclude=/{pat} (make deploy's exclude list)")
    return ok(f"{len(patterns)} deploy excludes; none drops a nested folder of the checkout")
