"""Raster I/O shared by the stages: safe opening, windows bounded by a memory budget, GDAL settings.

Nothing here reads a whole raster: every reader walks windows whose size follows a byte budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.tiff import STRIP_COUNTS, STRIP_OFFSETS, TILE_COUNTS, TILE_OFFSETS, read_directories
from geohpc.util import cpu_threads, redact

DEFAULT_MEM_BUDGET = 512 << 20  # bytes a windowed reader may hold at once


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading, turning a missing or corrupt file into an :class:`InputError`."""
    p = str(path)
    if "://" not in p and not p.startswith("/vsi") and not Path(p).exists():
        raise InputError(f"{redact(p)}: no such file (check the path or the manifest line)")
    if "://" not in p and not p.startswith("/vsi") and Path(p).is_dir() and not p.endswith((".zarr", ".gdb")):
        raise InputError(f"{redact(p)}: is a folder, not a raster (give the raster file)")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        first = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise InputError(f"{redact(p)}: not a readable raster ({first}); re-download or re-create it") from exc


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


# ---------------------------------------------------------------- is a written raster whole?

def _tiff_parts(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(offsets, byte counts) of every directory of a TIFF; ValueError when the structure is broken."""
    _, dirs = read_directories(path, (TILE_OFFSETS, TILE_COUNTS, STRIP_OFFSETS, STRIP_COUNTS))
    if not dirs:
        raise ValueError("no image directory")
    none = np.zeros(0, np.uint64)
    return [(tags.get(TILE_OFFSETS, tags.get(STRIP_OFFSETS, none)), tags.get(TILE_COUNTS, tags.get(STRIP_COUNTS, none)))
            for _, tags in dirs]


def tiff_problem(path: str | os.PathLike[str], *, strict: bool = False) -> str | None:
    """Why the TIFF at ``path`` is not whole (None when it is): directories and tile data inside the file.

    Only headers and offset tables are read. ``strict`` (for a file this process just wrote, never
    sparse) also refuses a tile that was never written (offset 0: a write that failed, e.g. a full disk).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        parts = _tiff_parts(p)
    except (OSError, ValueError, struct.error) as exc:
        return f"not a whole TIFF ({getattr(exc, 'strerror', None) or exc})"
    for offs, cnts in parts:  # numpy arrays: a 128-band map has millions of tiles
        if len(offs) != len(cnts):
            return "tile offset and size tables differ in length"
        if len(offs) == 0:
            continue
        end = offs.astype(np.uint64) + cnts.astype(np.uint64)
        if int(end.max()) > size:
            return f"truncated: tile data runs to byte {int(end.max())}, the file has {size}"
        if strict and bool(((offs == 0) | (cnts == 0)).any()):
            return "a tile was never written (full disk or a failed write)"
    return None


def verify_raster(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a readable raster, else the reason: header, the last block of the first and
    last band (the data written last), and for a GeoTIFF that every tile lies inside the file.

    Memory: one block. Used by the done-checks (a file that merely exists is not done).
    """
    p = str(path)
    local = "://" not in p and not p.startswith("/vsi")
    if local:
        if not Path(p).is_file():
            return "no such file"
        if Path(p).stat().st_size == 0:
            return "empty file (0 bytes)"
        if Path(p).suffix.lower() in (".tif", ".tiff") and (why := tiff_problem(p)):
            return why
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(p) as ds:
            if ds.width < 1 or ds.height < 1 or ds.count < 1:
                return "no pixels"
            bh, bw = ds.block_shapes[0]
            row, col = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
            win = Window(col, row, min(bw, ds.width - col), min(bh, ds.height - row))
            for band in sorted({1, ds.count}):
                ds.read(band, window=win)
    except Exception as exc:  # noqa: BLE001 - GDAL raises many types; any of them means "not valid"
        return f"not a readable raster ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def check_written(path: str | os.PathLike[str], final: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`InputError` unless the raster just written at ``path`` (a temporary) is whole.

    GDAL reports some write failures (a full disk while flushing tiles at close) only on stderr, so a
    write that "succeeded" is checked: every tile written and inside the file, the last block readable.
    ``final`` is the name the user knows (messages say it, not the temporary).
    """
    name = redact(os.fspath(final if final is not None else path))
    why = tiff_problem(path, strict=True) if Path(path).suffix.lower() in (".tif", ".tiff") else None
    why = why or verify_raster(path)
    if why:
        free = shutil.disk_usage(Path(path).parent).free
        hint = "the disk is full: free space or write elsewhere" if free < (64 << 20) else "check the disk and rerun"
        raise InputError(f"{name}: the write failed, {why} ({hint})")


