"""Helpers both COG paths share: logging, GDAL's root error, one-window reads, nodata test, metadata, final check.

Imported by :mod:`geohpc.products.cog.build` (the entry point and the fast path's driver) and
:mod:`geohpc.products.cog.gdal_path` (the GDAL fallback); it imports neither, so there is no import circle.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geohpc.errors import GeohpcError, InputError
from geohpc.products.cog.layout import validate_cog
from geohpc.raster_io import check_written
from geohpc.util import redact

# creation options of the source that a tiled copy sets anew
LAYOUT_KEYS = ("blockxsize", "blockysize", "tiled", "compress", "interleave", "photometric", "predictor")


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[cog] {msg}", file=sys.stderr, flush=True)


def gdal_message(exc: BaseException) -> str:
    """The root GDAL error behind a rasterio exception ("Read failed. See previous exception" hides it)."""
    msgs = []
    seen: BaseException | None = exc
    while seen is not None and len(msgs) < 5:
        text = str(seen).strip()
        if text:
            msgs.append(text.splitlines()[0])
        seen = seen.__cause__ or seen.__context__
    useful = [m for m in msgs if "previous exception" not in m]
    return (useful or msgs or [type(exc).__name__])[-1]


def tiled_profile(ds: rasterio.io.DatasetReader, **opts: Any) -> dict[str, Any]:
    """``ds``'s profile without its layout options, as a GTiff with ``opts`` (the tiling and codec to write)."""
    prof = ds.profile.copy()
    for key in LAYOUT_KEYS:
        prof.pop(key, None)
    prof.update(driver="GTiff", **opts)
    return prof


def read_window(ds: rasterio.io.DatasetReader, w: Window, out: np.ndarray,
                indexes: list[int] | None = None) -> np.ndarray:
    """``ds.read`` of one window into ``out``; a failure is a one-line :class:`InputError` naming the rows."""
    try:
        return ds.read(indexes, window=w, out=out)
    except RasterioError as exc:
        first = gdal_message(exc)
        fix = ("raise the open-file limit (ulimit -n) or lower GDAL_MAX_DATASET_POOL_SIZE"
               if "Too many open files" in first else
               "the file is corrupt or truncated: re-download or re-create it")
        raise InputError(f"{redact(ds.name)}: cannot read rows {w.row_off}-{w.row_off + w.height} "
                         f"({redact(first)}); {fix}") from exc


def has_data(a: np.ndarray, nodata: float | None) -> bool:
    """True when ``a`` holds a pixel that is neither nodata nor NaN."""
    valid = ~np.isnan(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= a != nodata
    return bool(valid.any())


def all_nodata(ds: rasterio.io.DatasetReader) -> InputError:
    """The error for a source whose every pixel is nodata."""
    return InputError(f"{redact(ds.name)}: every pixel is nodata ({ds.nodata}); nothing to publish, check the producing step")


def copy_metadata(src: rasterio.io.DatasetReader, dst: rasterio.io.DatasetWriter) -> None:
    """Tags, band descriptions, units, colour tables, scales/offsets and colour interpretation of ``src`` onto ``dst``."""
    dst.update_tags(**src.tags())
    for b in range(1, src.count + 1):
        if src.descriptions[b - 1]:
            dst.set_band_description(b, src.descriptions[b - 1])
        tags = src.tags(b)
        if tags:
            dst.update_tags(b, **tags)
        if src.units[b - 1]:
            dst.set_band_unit(b, src.units[b - 1])
        with contextlib.suppress(ValueError):
            dst.write_colormap(b, src.colormap(b))
    if any(s != 1.0 for s in src.scales) or any(o != 0.0 for o in src.offsets):
        dst.scales, dst.offsets = src.scales, src.offsets
    if any(ci not in (ColorInterp.gray, ColorInterp.undefined) for ci in src.colorinterp):
        dst.colorinterp = src.colorinterp


def check_cog(out: Path, dst: Path, blocksize: int) -> None:
    """Raise unless the temporary ``out`` (for ``dst``) is a complete raster with a valid COG layout."""
    check_written(out, dst)
    problems = validate_cog(out, blocksize)
    if problems:
        raise GeohpcError(f"{dst}: the written file is not a valid COG ({'; '.join(problems)})")


@functools.lru_cache(maxsize=1)
def libc() -> Any:
    """glibc through ctypes with ``fallocate`` typed (the calls Python's ``os`` lacks), or None where it is missing."""
    import ctypes
    import ctypes.util

    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    except (OSError, AttributeError):
        return None
    return lib


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """Keep freed heap memory in the process while the block: glibc then reuses it instead of page-faulting anew.

    GDAL allocates and frees a cache block (512x512 float32 = 1 MiB) per tile written; glibc hands blocks that
    size back to the kernel (mmap threshold, heap trim), so every tile costs fresh zeroed pages (measured at
    2896x2896x128: ~1 s of page clearing in the kernel). Peak memory is unchanged: what is kept is what the
    block cache already held. glibc's defaults are set back afterwards; no-op without glibc.
    """
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    lib = libc()
    mallopt = getattr(lib, "mallopt", None)
    if mallopt is None:
        yield
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks come from the heap
    mallopt(M_TRIM_THRESHOLD, 1 << 30)  # and stay there
    try:
        yield
    finally:
        mallopt(M_TRIM_THRESHOLD, 128 << 10)  # glibc's defaults
        mallopt(M_MMAP_THRESHOLD, 128 << 10)
