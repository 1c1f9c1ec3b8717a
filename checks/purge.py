"""purge: inputs the stage needs must outlive the work-storage purge; outputs at risk are named."""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.purge_guard import purge_days_for, scan, summary

NAME = "purge"
DESCRIPTION = "inputs older than the purge age minus a margin; outputs the purge will delete soon"
STAGES = "all"
DAY = 86400


def check(ctx: PreflightContext) -> Result:
    """Fail on inputs the purge may delete before the job ends; warn on outputs at risk."""
    days = purge_days_for(ctx.work, ctx.site)
    if days is None:
        return ok(f"no PURGE_DAYS on site {ctx.site.get('SITE_NAME', '?')}: nothing is purged")
    if not ctx.work.exists():
        return warn(f"SCRATCH {ctx.work} is not on this machine: cannot see file ages",
                    "run make preflight on the site's login node")
    margin = float(ctx.params.get("PURGE_MARGIN_DAYS", "3")) + (ctx.resources.time_s or 0) / DAY
    site = ctx.site.get("SITE_NAME", "")
    inputs = scan(ctx.inputs, days, margin, ctx.now)
    if inputs:
        return fail(f"inputs at risk of the {days:g}-day purge within the job: {summary(inputs)}",
                    f"copy them to PROJECT_DIR (make rescue SITE={site}) and point the stage there, or rerun the stage that makes them")
    outputs = scan(ctx.outputs or [ctx.work / "outputs"], days, margin + 4, ctx.now)
    if outputs:
        return warn(f"outputs at risk of the {days:g}-day purge: {summary(outputs)}",
                    f"make purge-guard SITE={site} to list them, make rescue SITE={site} to copy them to PROJECT_DIR")
    return ok(f"nothing the stage touches is within {margin:.1f} days of the {days:g}-day purge")
