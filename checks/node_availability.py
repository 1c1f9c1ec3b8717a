"""node_availability: every node of the job's partition down or drained (saga.md: check sinfo -p accel first)."""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import CommandUnavailable, command_output, parse_sinfo

NAME = "node_availability"
DESCRIPTION = "sinfo -p <partition>: all nodes down, drained or failing (jobs would sit in the queue for days)"
STAGES = "all"


def check(ctx: PreflightContext) -> Result:
    """Fail when no node of the partition takes jobs; warn when sinfo cannot be asked."""
    site = ctx.site.get("SITE_NAME", "?")
    part = ctx.resources.partition or ctx.site.get("PARTITION_GPU" if ctx.gpu else "PARTITION_CPU", "")
    if not part:
        return ok("no partition given: nothing to ask sinfo about")
    if not ctx.is_local and not ctx.env.get("GEOHPC_SINFO_OUTPUT") and not ctx.work.exists():
        return warn(f"SCRATCH {ctx.work} is not on this machine: this sinfo would describe another cluster",
                    f"run make preflight on {site}'s login node (or sinfo -p {part} there)")
    try:
        text = command_output(ctx.env, "GEOHPC_SINFO_OUTPUT", ["sinfo", "-p", part])
    except (CommandUnavailable, OSError) as exc:
        return warn(f"cannot ask sinfo about partition {part}: {exc}",
                    f"run make preflight on {site}'s login node, or sinfo -p {part} there")
    rows = [r for r in parse_sinfo(text) if r.partition == part]
    if not rows:
        return warn(f"sinfo shows no partition {part} on this cluster", f"check PARTITION_* in sites/{site}.env")
    usable = sum(r.nodes for r in rows if r.usable)
    total = sum(r.nodes for r in rows)
    if usable == 0:
        states = ", ".join(f"{r.nodes} {r.state}" for r in rows)
        return fail(f"all {total} nodes of partition {part} are unavailable ({states}): the job would pend "
                    "(ReqNodeNotAvail) until an admin brings them back",
                    "submit to another partition or site (PARTITION_GPU=... or SITE=lumi), or wait and rerun "
                    f"make preflight; sinfo -R -p {part} shows why")
    return ok(f"partition {part}: {usable} of {total} nodes take jobs")
