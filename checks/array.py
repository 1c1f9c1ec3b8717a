"""array: the array size against MaxArraySize and the site's job cap; a big array needs a throttle."""

from __future__ import annotations

import math

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "array"
DESCRIPTION = "array size vs MAX_ARRAY_SIZE and MAX_JOBS; a large array without a %N throttle"
STAGES = "all"
THROTTLE_ABOVE = 50


def check(ctx: PreflightContext) -> Result:
    """Fail when the array cannot be submitted; warn when it will be split or has no throttle."""
    size = ctx.resources.array_size
    if size is None:
        size = ctx.pending if ctx.pending is not None else len(ctx.items)
    if not size:
        return ok("no array tasks to submit")
    max_array = ctx.site_int("MAX_ARRAY_SIZE", 1001)
    max_jobs = ctx.site_int("MAX_JOBS", 0)
    thr = ctx.resources.throttle
    if max_jobs and size > max_jobs:
        return warn(f"{size} array tasks exceed the site's {max_jobs}-job cap (every array task counts as a job; "
                    "one sbatch of them all is refused with QOSMaxSubmitJobPerUserLimit)",
                    f"make submit sends waves of at most {max_jobs}: run it again when a wave finishes")
    if size > max_array:  # one array's indices run 0..size-1 and must stay below MaxArraySize
        chunks = math.ceil(size / max_array)
        if not ctx.resources.chunked:
            return fail(f"{size} array tasks exceed MaxArraySize {max_array} (highest index {max_array - 1}): "
                        "sbatch: error: Batch job submission failed: Invalid job array specification",
                        f"split into {chunks} arrays of <= {max_array} tasks (make submit does this)")
        return warn(f"{size} tasks exceed MaxArraySize {max_array}: one sbatch would fail with 'Invalid job array "
                    f"specification', so make submit splits them into {chunks} arrays",
                    "nothing to do with make submit; when submitting by hand, split the manifest")
    if thr and max_jobs and thr > max_jobs:
        return warn(f"throttle %{thr} is above the site's {max_jobs}-job cap", f"use THROTTLE<={max_jobs}")
    if size > THROTTLE_ABOVE and not thr:
        return warn(f"{size} array tasks with no %N throttle: they can flood the queue and the filesystem",
                    "add THROTTLE=<N> (e.g. 20) on the make line, or make throttle JOB=<id> N=<n> later")
    return ok(f"{size} array tasks" + (f", throttle %{thr}" if thr else "") + f" (MaxArraySize {max_array})")
