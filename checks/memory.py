"""memory: the per-task memory estimate, doubled for safety, against the --mem the job asks for."""

from __future__ import annotations

import math
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.util import human_bytes as human

NAME = "memory"
DESCRIPTION = "per-task estimate (raster read = bands x window x dtype; CatBoost ~2x data) x2 vs --mem"
STAGES = "all"
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


def raster_read_bytes(path: Path, window: int | None) -> int:
    """Bytes of one read: bands x rows x cols x dtype size, with rows/cols capped by ``window``."""
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        rows = min(src.height, window) if window else src.height
        cols = min(src.width, window) if window else src.width
        return src.count * rows * cols * max(np.dtype(d).itemsize for d in src.dtypes)


def estimate(ctx: PreflightContext) -> tuple[int, str] | None:
    """The per-task peak estimate in bytes and how it was reached (None when nothing is known)."""
    if ctx.mem_estimate:
        return ctx.mem_estimate, "declared by the stage"
    if ctx.catboost_dataset is not None and ctx.catboost_dataset.is_file():
        return 2 * ctx.catboost_dataset.stat().st_size, f"CatBoost ~2x {ctx.catboost_dataset.name}"
    if ctx.reads == "raster":
        paths = [Path(it) for it in ctx.items[:50] if it.lower().endswith(RASTER_SUFFIXES)]
        paths = [p if p.is_absolute() else ctx.work / p for p in paths]
        sizes = [(raster_read_bytes(p, ctx.window), p) for p in paths if p.is_file()]
        if sizes:
            size, p = max(sizes)
            how = f"window {ctx.window}px" if ctx.window else "whole raster"
            return size, f"{p.name} read as {how}"
    return None


def check(ctx: PreflightContext) -> Result:
    """Fail when the estimate exceeds --mem; warn when there is less than 2x headroom."""
    est = estimate(ctx)
    mem = ctx.resources.mem_bytes
    if est is None or mem is None:
        return ok("no memory estimate for this stage" if mem else "no --mem requested: the partition default applies")
    need, how = est
    msg = f"estimate {human(need)} ({how}) vs --mem {human(mem)}"
    want = f"{math.ceil(2 * need / 2**30)}G" if 2 * need >= 2**30 else f"{math.ceil(2 * need / 2**20)}M"
    fix = f"ask MEM={want} on the make line (2x the estimate), or read in windows (WINDOW=1024)"
    if need > mem:
        return fail(msg + ": the task will be killed (OOM)", fix)
    if 2 * need > mem:
        return warn(msg + ": less than 2x headroom", fix)
    return ok(msg)
