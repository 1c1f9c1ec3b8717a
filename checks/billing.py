"""billing: the GPU- or CPU-hours a submit will cost against what is left of the project's allocation.

Rules from the guide: on LUMI one GCD for one wall-hour is billed one GPU-hour ("1 wall-hour on small-g
with 8 GCDs = 8 GPU-hours", emb-lumi.md, feedback-lumi-csc.md), CPU work in core-hours, and
``lumi-allocations`` prints what is left. On NRIS (Saga, Betzy, one shared account) ``cost -p <account>``
prints billing hours; a CPU hour is at least one billing hour (memory and GPUs add to it), so the estimate
there is a lower bound. Whole-node partitions (``whole_node:yes``) bill every core of every node.
"""

from __future__ import annotations

from geohpc.core import billing
from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import (
    CommandUnavailable,
    command_output,
    parse_cost,
    parse_lumi_allocations,
)

NAME = "billing"
DESCRIPTION = "GPU/CPU hours the submit costs vs what lumi-allocations (LUMI) or cost -p (NRIS) says is left"
STAGES = "all"
WARN_SHARE = 0.5  # warn when one submit takes more than half of what is left


def estimate(ctx: PreflightContext, rule: str) -> tuple[float, str] | None:
    """(hours, unit) the submit costs at most (all tasks run to their walltime); None without --time.

    The rule itself is :func:`geohpc.core.billing.estimate` (one home: make run's DRY_RUN uses it too).
    """
    res = ctx.resources
    if not res.time_s:
        return None
    tasks = res.array_size or ctx.pending or len(ctx.items) or 1
    return billing.estimate({**ctx.site, "BILLING": rule}, res, tasks, res.time_s)


def _left(ctx: PreflightContext, rule: str, account: str, unit: str) -> tuple[float, float] | str:
    """(left, allocated) for ``account`` in ``unit``, or a reason it is unknown."""
    cmd = ctx.site.get("ALLOC_CMD") or ("lumi-allocations" if rule == "lumi" else "cost")
    argv = [cmd] if rule == "lumi" else [cmd, "-p", account]
    try:
        text = command_output(ctx.env, "GEOHPC_ALLOC_OUTPUT", argv)
    except (CommandUnavailable, OSError) as exc:
        return f"cannot read the allocation: {exc}"
    if rule == "lumi":
        alloc = parse_lumi_allocations(text).get(account, {}).get(unit)
    else:
        found = parse_cost(text)
        alloc = found.get(account) or (next(iter(found.values())) if len(found) == 1 else None)
    if alloc is None:
        return f"{' '.join(argv)} shows no {unit} for {account}"
    return alloc.left, alloc.allocated


def check(ctx: PreflightContext) -> Result:
    """Fail when the submit costs more than is left; warn when it takes over half of it."""
    site = ctx.site.get("SITE_NAME", "?")
    rule = (ctx.site.get("BILLING") or "").strip().lower()
    if rule not in ("lumi", "nris"):
        return ok(f"no BILLING rule for site {site}: the cost of a submit is unknown")
    account = ctx.resources.account or ctx.site.get("ACCOUNT", "")
    if not account:
        return warn(f"no ACCOUNT for site {site}: cannot look up its allocation", f"set ACCOUNT in sites/{site}.env")
    est = estimate(ctx, rule)
    if est is None:
        return warn("no --time for this job: its cost is unknown", "give TIME= on the make line")
    cost, unit = est
    left = _left(ctx, rule, account, unit)
    if isinstance(left, str):
        bound = "at least" if rule == "nris" else "up to"
        return warn(f"submit costs {bound} {cost:,.0f} {unit}; {left}", f"run make preflight on {site}'s login node")
    remaining, allocated = left
    bound = " at least" if rule == "nris" else " up to"
    msg = f"submit costs{bound} {cost:,.0f} {unit} ({ctx.resources.gpus or ctx.resources.cpus or 1} " \
          f"{'GPUs' if unit == 'gpu-hours' else 'CPUs'} x walltime x tasks); {remaining:,.0f} of {allocated:,.0f} left on {account}"
    fix = "ask less (TIME=, fewer GPUS=/CPUS=, N= fewer items), or ask the project PI for more hours"
    if remaining <= 0 or cost > remaining:
        return fail(msg + ": jobs would pend (AssocGrpBillingMinutes) or be refused", fix)
    if cost > WARN_SHARE * remaining:
        return warn(msg + f": over {WARN_SHARE:.0%} of what is left", fix)
    return ok(msg)
