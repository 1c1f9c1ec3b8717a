"""quota: will the stage's planned output fit in the quota (bytes and files) of the work area?"""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.quota import QuotaUnavailable, entry_for, read_quota, statvfs_entry
from geohpc.util import human_bytes as human

NAME = "quota"
DESCRIPTION = "planned output bytes and files against the quota (lumi-quota, dusage, lfs quota, df)"
STAGES = "all"
HEADROOM = 0.9  # warn when the output would take the area past 90% of its limit


def check(ctx: PreflightContext) -> Result:
    """Fail when the pending items' outputs do not fit in the bytes or files left under SCRATCH."""
    scratch = str(ctx.work)
    kind = ctx.site.get("QUOTA_CMD", "df")
    try:
        entries = read_quota(kind, scratch, ctx.quota_output, ctx.env)
    except QuotaUnavailable as exc:
        return warn(f"cannot read the quota: {exc}", f"ssh {ctx.site.get('REMOTE') or 'the site'} and run make preflight there")
    entry = entry_for(entries, scratch)
    if entry is None or entry.limit is None:
        why = "no row covers SCRATCH" if entry is None else f"no quota on {entry.path}"
        entry = statvfs_entry(scratch)  # no quota set on this path: the filesystem is the limit (df, df -i)
        kind = "df" if kind == "df" else f"df; {kind}: {why}"
    need = sum(ctx.output_bytes or [])
    files = ctx.pending if ctx.pending is not None else len(ctx.items)
    where = f"{entry.path} ({kind})"
    fix = f"free space under {scratch}, or move finished outputs to PROJECT_DIR (make rescue SITE={ctx.site.get('SITE_NAME', '')})"
    if entry.over or entry.files_over:
        what = "files" if entry.files_over and not entry.over else "bytes"
        return fail(f"{where} is already over its {what} quota: {human(entry.used)} used of "
                    f"{human(entry.limit or 0)}, {entry.files} files of {entry.files_limit}", fix)
    free, ffree = entry.free, entry.files_free
    if free is not None and need > free:
        return fail(f"planned output {human(need)} for {files} items does not fit: {human(free)} left on {where}", fix)
    if ffree is not None and files > ffree:
        return fail(f"{files} output files do not fit: {ffree} files left on {where}", fix)
    msg = f"{human(need)} planned, {human(free) if free is not None else 'unlimited'} and " \
          f"{ffree if ffree is not None else 'unlimited'} files left on {where}"
    if entry.approximate:
        return warn(msg + " (lfs marked values as not authoritative)", "rerun later; some storage targets did not answer")
    if entry.limit and entry.used + need > HEADROOM * entry.limit:
        return warn(msg + f": over {HEADROOM:.0%} after this stage", fix)
    if entry.files_limit and entry.files is not None and entry.files + files > HEADROOM * entry.files_limit:
        return warn(msg + f": file count over {HEADROOM:.0%} after this stage", fix)
    return ok(msg)
