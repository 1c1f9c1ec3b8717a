"""manifest: the stage's work list builds, is non-empty, and says how much is left to do."""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "manifest"
DESCRIPTION = "the stage's manifest builds (its parameters are given) and has items left to run"
STAGES = "all"


def check(ctx: PreflightContext) -> Result:
    """Fail when the manifest cannot be built; warn when there is nothing left to run."""
    if ctx.stage is None:
        return ok("no stage given")
    if ctx.manifest_error:
        return fail(f"stage {ctx.stage}: {ctx.manifest_error}",
                    f"give the stage's parameters on the make line (make submit STAGE={ctx.stage} KEY=...)")
    if not ctx.items:
        return fail(f"stage {ctx.stage} has an empty manifest", "check the stage's input parameters")
    pending = ctx.pending if ctx.pending is not None else len(ctx.items)
    if pending == 0:
        return warn(f"all {len(ctx.items)} items of {ctx.stage} are done: nothing to submit",
                    "nothing to do; delete an output to redo it, or make resubmit after failures")
    return ok(f"{pending} of {len(ctx.items)} items to run")
