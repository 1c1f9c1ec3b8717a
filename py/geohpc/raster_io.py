"""Raster I/O shared by the stages: safe opening, windows bounded by a memory budget, GDAL settings.

Nothing here reads a whole raster: every reader walks windows whose size follows a byte budget.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.util import cpu_threads

DEFAULT_MEM_BUDGET = 512 << 20  # bytes a windowed reader may hold at once


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading, turning a missing or corrupt file into an :class:`InputError`."""
    p = str(path)
    if "://" not in p and not p.startswith("/vsi") and not Path(p).exists():
        raise InputError(f"{p}: no such file (check the path or the manifest line)")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: not a readable raster ({first}); re-download or re-create it") from exc


def check_georeferenced(ds: rasterio.io.DatasetReader, *, allow_rotation: bool = False) -> None:
    """Raise :class:`InputError` when ``ds`` has no CRS or a rotated/sheared geotransform."""
    if ds.crs is None:
        raise InputError(f"{ds.name}: raster has no CRS; assign one (e.g. rio edit-info --crs EPSG:32635)")
    t = ds.transform
    if not allow_rotation and (t.b != 0 or t.d != 0):
        raise InputError(
            f"{ds.name}: rotated or sheared geotransform is not supported; warp it north-up first "
            "(gdalwarp or rasterio.warp.reproject)"
        )


def dtype_bytes(dtype: str | np.dtype[Any]) -> int:
    """Bytes per sample of a numpy/rasterio dtype name."""
    return int(np.dtype(dtype).itemsize)


def window_rows_for_budget(width: int, bands: int, dtype: str, budget: int, block_h: int = 1) -> int:
    """Rows per window so that ``rows * width * bands * dtype`` stays under ``budget``.

    The result is a multiple of ``block_h`` (the file's block height) when one block fits,
    so each block is decoded once.
    """
    row_bytes = max(1, width * bands * dtype_bytes(dtype))
    rows = max(1, budget // row_bytes)
    if block_h > 1 and rows >= block_h:
        rows = (rows // block_h) * block_h
    return int(rows)


def iter_row_windows(ds: rasterio.io.DatasetReader, budget: int = DEFAULT_MEM_BUDGET) -> Iterator[Window]:
    """Full-width windows of whole block rows, each within ``budget`` bytes for all bands."""
    block_h = ds.block_shapes[0][0] if ds.block_shapes else 1
    rows = window_rows_for_budget(ds.width, ds.count, ds.dtypes[0], budget, block_h)
    for row in range(0, ds.height, rows):
        yield Window(0, row, ds.width, min(rows, ds.height - row))


def iter_block_windows(height: int, width: int, block: int) -> Iterator[Window]:
    """Square-ish windows of ``block`` pixels covering a ``height`` x ``width`` grid."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def n_blocks(height: int, width: int, block: int) -> int:
    """Number of windows :func:`iter_block_windows` yields."""
    return math.ceil(height / block) * math.ceil(width / block)


@contextlib.contextmanager
def gdal_env(mem_budget: int = DEFAULT_MEM_BUDGET, threads: int | None = None, **options: Any) -> Iterator[None]:
    """A rasterio.Env with GDAL's block cache sized from ``mem_budget`` and threads from the job.

    ``GDAL_CACHEMAX`` is given in bytes; ``NUM_THREADS`` follows SLURM_CPUS_PER_TASK (never
    every core of a shared node).
    """
    n = threads or cpu_threads()
    opts: dict[str, Any] = {
        "GDAL_CACHEMAX": int(mem_budget),
        "GDAL_NUM_THREADS": str(n),
        "NUM_THREADS": str(n),
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }
    opts.update(options)
    with rasterio.Env(**opts):
        yield


def verify_raster(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` opens as a raster and its last block of band 1 decodes, else the reason.

    Reads the header and one block (the last one, which a killed or full-disk write misses first), never
    the whole raster, so a done-check stays cheap on large outputs.
    """
    p = str(path)
    if "://" not in p and not p.startswith("/vsi"):
        if not Path(p).is_file():
            return f"{p}: no such file"
        if Path(p).stat().st_size == 0:
            return f"{p}: empty file"
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(p) as ds:
            last = None
            for _, win in ds.block_windows(1):
                last = win
            if last is None:
                return f"{p}: the raster has no blocks"
            ds.read(1, window=last)
    except Exception as exc:  # rasterio raises several types for damaged files
        text = str(exc).strip().splitlines()
        return f"{p}: not a readable raster ({text[0] if text else type(exc).__name__})"
    return None
