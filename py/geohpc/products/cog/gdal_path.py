"""The GDAL COG path: the three-pass fallback for what the fast path (:mod:`geohpc.products.cog.fast`) does not do.

Used by :func:`geohpc.products.cog.build.make_cog` for resampling other than ``average`` (class maps use
``mode``), an internal per-dataset mask, complex data, or a tile row too wide for the budget. The source is
read once, window by window, into an uncompressed tiled band-interleaved intermediate beside the output
(:func:`tiled_copy`); GDAL builds the overviews on it; a GTiff copy with ``COPY_SRC_OVERVIEWS=YES`` writes
the COG layout, compressing tiles on every thread (:func:`gdal_cog`). Memory stays within the budget
whatever the size: 1/2 GDAL's block cache, 1/4 the pixel windows, :data:`OVERVIEW_CACHE` while building
overviews.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

from geohpc.products.cog.common import (
    all_nodata,
    check_cog,
    copy_metadata,
    has_data,
    peak_rss_gb,
    read_window,
    tiled_profile,
)
from geohpc.progress import progress
from geohpc.raster_io import check_written, gdal_env
from geohpc.util import atomic_path

OVERVIEW_CACHE = 32 << 20  # GDAL block cache while building overviews (measured: 512M 5.0 s / 1.45 GB, 32M 2.6 s / 0.77 GB)


def gdal_cog(ds: rasterio.io.DatasetReader, dst: Path, blocksize: int, opts: dict[str, Any], mem_budget: int,
             n_threads: int, env: dict[str, Any], factors: list[int], resampling: Resampling) -> str:
    """The three-pass GDAL path: uncompressed tiled copy, GDAL's overviews on it, a COPY_SRC_OVERVIEWS copy.

    Returns the phases' timings for the log line.
    """
    inter = dst.parent / f".{dst.name}.{os.getpid()}.tmp.tiled.tif"  # a name the rerun's sweep finds
    try:
        with gdal_env(mem_budget // 2, n_threads, **env):
            t0 = time.monotonic()
            tiled_copy(ds, inter, blocksize, mem_budget // 4)
            check_written(inter, dst)
            t1, rss1 = time.monotonic(), peak_rss_gb()
            if factors:
                # GDAL's multi-band overview builder holds a full-width chunk of every band outside its block
                # cache (width x bands x 512 rows); a small cache here keeps the sum inside the budget, and is faster
                with rasterio.Env(GDAL_CACHEMAX=OVERVIEW_CACHE), rasterio.open(inter, "r+") as tmp:
                    tmp.build_overviews(factors, resampling)
                check_written(inter, dst)
            t2, rss2 = time.monotonic(), peak_rss_gb()
            with atomic_path(dst) as out:
                rasterio.shutil.copy(inter, out, driver="GTiff", copy_src_overviews=True, **opts)
                check_cog(out, dst, blocksize)
            t3 = time.monotonic()
    finally:
        for leftover in (inter, Path(f"{inter}.ovr"), Path(f"{inter}.aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return (f"tiled copy {t1 - t0:.1f}s (peak RSS so far {rss1:.2f} GiB), overviews {t2 - t1:.1f}s ({rss2:.2f} GiB), "
            f"COG write {t3 - t2:.1f}s ({peak_rss_gb():.2f} GiB)")


def windows(ds: rasterio.io.DatasetReader, budget: int, blocksize: int) -> list[Window]:
    """Windows of whole source blocks, each at most ``budget`` bytes for all bands."""
    isz = np.dtype(ds.dtypes[0]).itemsize
    block_h = ds.block_shapes[0][0]
    row_bytes = ds.width * ds.count * isz
    rows = budget // row_bytes
    if rows >= 1:
        cols = ds.width
        for align in (blocksize, block_h):
            if rows >= align:
                rows = rows // align * align
                break
    else:  # one row of all bands is over budget: narrower windows (rare, very wide rasters)
        rows = min(block_h, ds.height)
        cols = max(blocksize, budget // (rows * ds.count * isz) // blocksize * blocksize)
    return [Window(c, r, min(cols, ds.width - c), min(rows, ds.height - r))
            for r in range(0, ds.height, rows) for c in range(0, ds.width, cols)]


def tiled_copy(ds: rasterio.io.DatasetReader, inter: Path, blocksize: int, budget: int) -> None:
    """Copy ``ds`` window by window into an uncompressed tiled band-interleaved GeoTIFF."""
    prof = tiled_profile(ds, tiled=True, blockxsize=blocksize, blockysize=blocksize,
                         interleave="band", bigtiff="IF_SAFER", compress=None)
    nodata = ds.nodata
    seen_data = False
    todo = windows(ds, budget, blocksize)
    buffers: dict[tuple[int, int, int], np.ndarray] = {}
    flags = ds.mask_flag_enums[0]
    own_mask = MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and MaskFlags.nodata not in flags
    with rasterio.open(inter, "w", **prof) as out:
        copy_metadata(ds, out)
        for w in progress(todo, total=len(todo), desc="cog tiled copy"):
            shape = (ds.count, int(w.height), int(w.width))
            if shape not in buffers:  # reuse: fresh 100s-of-MB arrays cost page faults on every window
                buffers.clear()
                buffers[shape] = np.empty(shape, ds.dtypes[0])
            a = read_window(ds, w, buffers[shape])
            if not seen_data:
                seen_data = has_data(a, nodata)
            out.write(a, window=w)
            if own_mask:  # an internal transparency mask (not nodata, not alpha) travels along
                out.write_mask(ds.read_masks(1, window=w), window=w)
    if not seen_data:
        raise all_nodata(ds)
