"""The one-read COG path: level files written from a single read pass, then assembled by copying tile bytes.

1. The source is read ONCE, in full-width windows of whole tile rows (``blocksize`` rows). Each window goes
   into a tiled, compressed ``level 0`` GTiff (the final codec, level, predictor, interleave and threads:
   GDAL encodes on every thread). When one tile row of all bands (x2: window + overview buffers) is over the
   budget, the bands go in groups, one read pass per group (band interleave only: a pixel-interleaved tile
   holds every band).
2. From the same window the overview levels are computed in numpy, each one 2x2 from the level before (as
   GDAL's ``build_overviews`` does): ``average`` of the valid pixels (nodata and, when nodata is NaN, NaN are
   skipped; otherwise NaN propagates as in GDAL), integers rounded half away from zero, an output pixel
   that would equal nodata nudged off it (GDAL's replacement value), all-invalid -> nodata. Level sizes are
   ``ceil(size / 2**l)`` as GDAL's; where a level's input is odd-sized the edge output pixel averages the
   source pixels that exist (GDAL weights fractional source pixels there, so such levels differ slightly).
   Each level buffers its rows until it holds a full tile row (or the end) and writes them into its own
   compressed temporary GTiff, so GDAL never evicts and re-encodes a half-filled tile.
3. :func:`geohpc.products.cog.assemble.assemble` writes the COG around the compressed tiles (no decode, no
   re-encode): see that module.

Memory (``budget`` = COG_MEM / ``--mem``): 1/4 GDAL's block cache (:data:`CACHE_SHARE`), 3/4 for the window
(two of them when the next is read ahead, :func:`read_plan`) plus the overview tile-row buffers (together at
most one tile row of the band group) and per-band temporaries.
Not covered here (the GDAL path in :mod:`geohpc.products.cog.gdal_path` does them): resampling other than
``average`` (class maps use ``mode``), an internal per-dataset mask, complex data, and a pixel-interleaved
output (<= 4 bands) or a single band whose tile row x2 exceeds the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geohpc.errors import GeohpcError
from geohpc.products.cog.assemble import start_write_out
from geohpc.products.cog.common import log
from geohpc.products.cog.overviews import Level
from geohpc.progress import progress

CACHE_SHARE = 4  # GDAL's block cache gets budget // CACHE_SHARE, windows and level buffers the rest


def band_groups(ds: rasterio.io.DatasetReader, budget: int, blocksize: int,
                windows: int = 1) -> tuple[list[list[int]], int] | None:
    """``(band groups, tile rows per window)`` for the read pass, or None when the budget is too small.

    The budget's share holds ``windows`` window buffers (2: the next window is read while this one is written)
    plus the overview levels' tile-row buffers (together at most one tile row of the group).
    """
    per_band = ds.width * blocksize * np.dtype(ds.dtypes[0]).itemsize  # one tile row of one band
    share = budget - budget // CACHE_SHARE
    nb = min(ds.count, share // ((windows + 1) * per_band))
    if nb < 1 or (nb < ds.count and ds.count <= 4):
        return None
    k = max(1, (share // (nb * per_band) - 1) // windows) if nb == ds.count else 1
    k = min(k, math.ceil(ds.height / blocksize))
    bands = list(range(1, ds.count + 1))
    return [bands[i:i + nb] for i in range(0, ds.count, nb)], k


def read_plan(ds: rasterio.io.DatasetReader, budget: int, blocksize: int) -> tuple[list[list[int]], int, bool] | None:
    """``(band groups, tile rows per window, prefetch)``: the next window is read on a thread while this one is
    written whenever two windows fit in at most twice the read passes of one.

    Measured at 2896x2896x128 float32, striped pixel-interleaved, COG_MEM=1G: 3 band groups reading ahead
    33.7 s, 2 groups one window at a time 38.0 s (a pass over a pixel-interleaved source reads all of it, but
    the overlap wins); COG_MEM=2G, one group, no read-ahead: 34.8 s at twice the RSS.
    """
    one = band_groups(ds, budget, blocksize)
    if one is None:
        return None
    two = band_groups(ds, budget, blocksize, windows=2)
    steps = len(two[0]) * math.ceil(ds.height / (two[1] * blocksize)) if two is not None else 0
    if two is not None and len(two[0]) <= 2 * len(one[0]) and steps > 1:
        return two[0], two[1], True
    return one[0], one[1], False


def refusal(ds: rasterio.io.DatasetReader, resampling: Resampling, budget: int, blocksize: int,
            interleave: str = "") -> str | None:
    """Why the fast path cannot build this COG (the GDAL path will), or None when it can."""
    flags = ds.mask_flag_enums[0]
    if resampling != Resampling.average:
        return f"{resampling.name} overviews"
    if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and MaskFlags.nodata not in flags:
        return "an internal mask"
    if np.dtype(ds.dtypes[0]).kind not in "uif":
        return f"{ds.dtypes[0]} data"
    groups = band_groups(ds, budget, blocksize)
    if groups is None:
        return "a tile row too wide for the memory budget"
    if len(groups[0]) > 1 and interleave.upper() == "PIXEL":  # a pixel tile holds every band: one pass must fill it
        return "a pixel-interleaved tile row of all bands too wide for the memory budget"
    return None


def write_levels(ds: rasterio.io.DatasetReader, paths: list[Path], profile: dict[str, Any], blocksize: int,
                 budget: int, read: Any, has_data: Any, copy_metadata: Any = None,
                 plan: tuple[list[list[int]], int, bool] | None = None) -> bool:
    """Write level 0 (the pixels) and every overview level into ``paths``; True when some pixel is not nodata.

    ``profile`` holds the creation options of level 0 (georeferencing included); ``read(window, out, indexes)``
    reads a window (one-line errors), ``has_data(array)`` says whether it holds a valid pixel. ``plan`` is
    :func:`read_plan`'s, given when the caller built ``read`` for it (the spilling reader follows its groups).
    """
    plan = plan or read_plan(ds, budget, blocksize)
    if plan is None:
        raise GeohpcError(f"{ds.name}: a tile row is too wide for the memory budget")
    groups, k, prefetch = plan
    nodata = ds.nodata
    outs: list[rasterio.io.DatasetWriter] = []
    seen = False
    with contextlib.ExitStack() as stack:
        for lvl, p in enumerate(paths):
            prof = dict(profile)
            if lvl:
                for key in ("crs", "transform", "gcps", "rpcs"):
                    prof.pop(key, None)
                prof.update(width=-(-ds.width // 2**lvl), height=-(-ds.height // 2**lvl))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                outs.append(stack.enter_context(rasterio.open(p, "w", **prof)))
        if copy_metadata is not None:  # tags, descriptions, scales, colours of the source (common.copy_metadata)
            copy_metadata(ds, outs[0])
        # entered after the datasets, so on an error they wait for their threads before the datasets are closed
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="cog-levels"))
        reader = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="cog-read"))
        rows = k * blocksize
        steps = [(g, r) for g in groups for r in range(0, ds.height, rows)]
        # one flat buffer per window in flight, sized for the largest step; each step reads into a contiguous
        # prefix of it (fresh 100s-of-MB arrays page-fault on every window, and a group or the last window
        # of a different shape would otherwise mean a new array)
        size = max(len(g) for g in groups) * min(rows, ds.height) * ds.width
        bufs = [np.empty(size, ds.dtypes[0]) for _ in range(2 if prefetch else 1)]

        def fetch(i: int) -> tuple[np.ndarray, float]:
            """Read step ``i`` into its buffer."""
            g, r = steps[i]
            h = min(rows, ds.height - r)
            buf = bufs[i % len(bufs)][:len(g) * h * ds.width].reshape(len(g), h, ds.width)
            t0 = time.perf_counter()
            return read(Window(0, r, ds.width, h), buf, g), time.perf_counter() - t0

        # level 0's pages go to disk while the pass runs (the assembly's insert waits for any left dirty)
        write_out = os.open(paths[0], os.O_RDONLY)
        stack.callback(os.close, write_out)
        levels: Level | None = None
        spent = {"read": 0.0, "waiting for the read": 0.0, "level-0 write": 0.0, "waiting for the overviews": 0.0}
        ahead = reader.submit(fetch, 0) if prefetch else None
        for i, (g, r) in enumerate(progress(steps, total=len(steps), desc="cog read + level files")):
            if r == 0 and levels is not None:
                levels.start(g)  # the next band group, in the same buffers
            elif r == 0:
                for out in reversed(outs[1:]):
                    levels = Level(out, g, blocksize, nodata, levels, max(len(x) for x in groups))
            t0 = time.perf_counter()
            if ahead is not None:  # the next window is read while this one is written
                a, took = ahead.result()
                ahead = reader.submit(fetch, i + 1) if i + 1 < len(steps) else None
                spent["waiting for the read"] += time.perf_counter() - t0
            else:
                a, took = fetch(i)
            spent["read"] += took
            t1 = time.perf_counter()
            if not seen:
                seen = has_data(a)
            h = a.shape[1]
            # the overviews of this window are reduced and written (their own datasets) on a second thread while
            # level 0 is written: both release the GIL (numpy arithmetic, GDAL I/O and compression)
            pending = pool.submit(levels.push, a, r + h >= ds.height) if levels is not None else None
            outs[0].write(a, indexes=g, window=Window(0, r, ds.width, h))
            start_write_out(write_out)
            t2 = time.perf_counter()
            if pending is not None:
                pending.result()
            spent["level-0 write"] += t2 - t1
            spent["waiting for the overviews"] += time.perf_counter() - t2
    if not prefetch:
        del spent["waiting for the read"]
    log(f"{ds.name}: {len(groups)} band group(s) x {-(-ds.height // rows)} window(s) of {k} tile row(s)"
          f"{', next window read ahead' if prefetch else ''}: " + ", ".join(f"{n} {v:.1f}s" for n, v in spent.items()))
    return seen
