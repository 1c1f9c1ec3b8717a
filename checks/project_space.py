"""project_space: data, logs, outputs or checkpoints written under project space (PROJECT_SPACE).

On NRIS the project space (``/cluster/projects/<account>``) has a small quota shared by every project of
the account: "NEVER write data, logs, shards, or checkpoints here"; writes fail with "Disk quota
exceeded" and rsync fails there (emb-betzy.md, howto-betzy.md, emb-errors.md). Work space takes them.
"""

from __future__ import annotations

import os

from geohpc.preflight.context import PreflightContext, Result, fail, ok

NAME = "project_space"
DESCRIPTION = "data/, logs/, outputs/ or checkpoint paths of the job under PROJECT_SPACE (e.g. /cluster/projects)"
STAGES = "all"
WRITE_KEYS = ("OUT_DIR", "LOG_DIR", "LOGS", "CKPT_DIR", "CHECKPOINT_DIR", "CHECKPOINT", "RUN_DIR", "CACHE_DIR")


def written_paths(ctx: PreflightContext) -> list[tuple[str, str]]:
    """``(what, path)`` for every place the job writes: data/ and outputs/ under SCRATCH, logs, outputs, TMPDIR."""
    out: list[tuple[str, str]] = []
    scratch = ctx.site.get("SCRATCH", "")
    if scratch:
        out += [("data (SCRATCH/data)", f"{scratch.rstrip('/')}/data"), ("outputs (SCRATCH/outputs)", f"{scratch.rstrip('/')}/outputs")]
    code = ctx.site.get("REMOTE_DIR", "") if not ctx.is_local else ""
    if code:
        out.append(("job logs (REMOTE_DIR/logs)", f"{code.rstrip('/')}/logs"))
    out += [("stage outputs", str(p)) for p in ctx.outputs]
    out += [(key, ctx.params[key]) for key in WRITE_KEYS if ctx.params.get(key)]
    if ctx.site.get("JOB_TMPDIR"):
        out.append(("TMPDIR (JOB_TMPDIR)", ctx.site["JOB_TMPDIR"]))
    return [(w, p) for w, p in out if p.startswith("/")]


def under(path: str, prefixes: list[str]) -> str | None:
    """The project-space prefix ``path`` lies under (after symlinks, where the path exists here), or None."""
    real = os.path.realpath(path)  # resolves the part that exists here (project-space symlinks into work)
    for pre in prefixes:
        p = pre.rstrip("/")
        if real == p or real.startswith(p + "/"):
            return pre
    return None


def check(ctx: PreflightContext) -> Result:
    """Fail when the job writes data, logs, outputs or checkpoints under a PROJECT_SPACE prefix."""
    site = ctx.site.get("SITE_NAME", "?")
    prefixes = [p.strip() for p in ctx.site.get("PROJECT_SPACE", "").split(",") if p.strip()]
    if not prefixes:
        return ok(f"site {site} has no PROJECT_SPACE: no place is off-limits for writes (unknown if unset)")
    bad = [(what, p, pre) for what, p in written_paths(ctx) if (pre := under(p, prefixes))]
    if bad:
        what, path, pre = bad[0]
        more = f" (+{len(bad) - 1} more: {', '.join(b[0] for b in bad[1:3])})" if len(bad) > 1 else ""
        return fail(f"{what} {path} is under project space {pre}{more}: its small shared quota fills "
                    "('OSError: [Errno 122] Disk quota exceeded'; rsync fails there)",
                    f"write to work space: point SCRATCH/REMOTE_DIR/OUT_DIR in sites/{site}.env under /cluster/work "
                    "(symlink from project space if scripts expect the old path)")
    return ok(f"nothing the job writes is under {', '.join(prefixes)}")
