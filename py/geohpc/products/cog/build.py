"""Build a Cloud Optimized GeoTIFF fast from any GeoTIFF, including striped many-band ones.

Two paths. Why not one ``gdal_translate -of COG``: GDAL's COG driver reads the source in its own block
order; on a striped (one-row strips) pixel-interleaved 128-band file that means decoding each strip once
per band and per tile, which is what made the field's COG step take 48 minutes.

**Fast path** (:mod:`geohpc.products.cog.fast` + :mod:`~geohpc.products.cog.overviews` +
:mod:`~geohpc.products.cog.assemble`, driven by
``_fast_cog`` here; about the cost of reading the source once and compressing it
once): one read pass in full-width windows of whole tile rows (straight from the file for an uncompressed
source whose strips lie back to back, :mod:`~geohpc.products.cog.rawread`; decoded once for a compressed
pixel-interleaved one, :mod:`~geohpc.products.cog.spill`) writes a compressed tiled level-0 file and,
from the same windows, numpy ``average`` overviews into one compressed file per level; the COG is then
assembled from the compressed tiles (no re-encode) behind our own headers, the level-0 file turned into the
COG in place where the file system can insert a range (ext4, XFS), the tiles copied elsewhere.

**GDAL path** (:mod:`geohpc.products.cog.gdal_path`; the fallback, for what the fast path does not do: resampling other than ``average`` -- class
maps use ``mode`` --, an internal per-dataset mask, complex data, a tile row too wide for the budget):
the source is read once into an uncompressed tiled band-interleaved intermediate beside the output, GDAL
builds the overviews on it, and a GTiff copy with ``COPY_SRC_OVERVIEWS=YES`` writes the COG layout,
compressing tiles on every thread. Memory stays within the budget whatever the size on both paths.

This module holds :func:`make_cog` (argument, output-folder, free-space and up-to-date checks, the choice of
path, one-line errors), the codec and overview defaults, and the fast path's driver; the helpers both paths
use (window reads, the nodata test, metadata copy, the final COG check) are in
:mod:`geohpc.products.cog.common`. Neither ``fast``, ``gdal_path`` nor ``common`` imports this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from geohpc.errors import ConfigError, GeohpcError, InputError
from geohpc.guards import io_error, refuse_overwrite, sweep_temporaries
from geohpc.products.cog import fast
from geohpc.products.cog.assemble import assemble
from geohpc.products.cog.common import (
    all_nodata,
    check_cog,
    copy_metadata,
    gdal_message,
    has_data,
    kept_heap,
    log,
    peak_rss_gb,
    read_window,
    tiled_profile,
)
from geohpc.products.cog.gdal_path import gdal_cog
from geohpc.products.cog.layout import validate_cog
from geohpc.products.cog.rawread import raw_reader
from geohpc.products.cog.spill import CHUNK, needs_spill, spill_reader
from geohpc.raster_io import check_georeferenced, check_written, gdal_env, open_raster, verify_raster
from geohpc.util import atomic_path, cpu_threads, redact

DEFAULT_MEM_BUDGET = 1 << 30
DEFAULT_ZSTD_LEVEL = 1  # measured: level 9 triples the write time for ~3% smaller float32 files
MIN_MEM_BUDGET = 64 << 20
INTERMEDIATE_OVERHEAD = 1.4  # GDAL path: uncompressed tiled copy + its overviews (1/3) + slack
FAST_OVERHEAD = 2.1  # fast path: compressed level files + the COG copied from them, each ~1.03x raw (float32 ZSTD-1, measured)


@lru_cache(maxsize=1)
def zstd_available() -> bool:
    """True when this GDAL's GTiff driver can write ZSTD (tried once on /vsimem/)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open("/vsimem/geohpc_zstd_probe.tif", "w", driver="GTiff", width=16, height=16,
                               count=1, dtype="uint8", compress="ZSTD") as ds:
                ds.write(np.zeros((1, 16, 16), "uint8"))
        return True
    except RasterioError:
        return False
    finally:
        with contextlib.suppress(Exception):
            rasterio.shutil.delete("/vsimem/geohpc_zstd_probe.tif")


def default_interleave(count: int) -> str:
    """The final COG's interleave for ``count`` bands: pixel up to 4 bands, else band (see bench/RESULTS-layout.md)."""
    return "PIXEL" if count <= 4 else "BAND"


def predictor_for(dtype: str) -> int:
    """TIFF predictor: 3 (floating point) for floats, 2 (horizontal) for integers."""
    return 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2


def has_colormap(ds: rasterio.io.DatasetReader) -> bool:
    """True when band 1 carries a colour table (a class map)."""
    try:
        ds.colormap(1)
    except ValueError:
        return False
    return True


def overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """Factors 2, 4, 8, ... until the smallest overview fits in one tile (as GDAL's COG driver does)."""
    factors, f = [], 2
    while math.ceil(max(width, height) / (f // 2)) > blocksize:
        factors.append(f)
        f *= 2
    return factors


def _resampling(name: str | None, classes: bool) -> Resampling:
    if name is None:
        return Resampling.mode if classes else Resampling.average
    try:
        return Resampling[name.lower()]
    except KeyError:
        valid = ", ".join(r.name for r in Resampling if r.value < 14)
        raise ConfigError(f"unknown overview resampling {name!r}: use one of {valid}") from None


def _check_output_dir(dst: Path) -> None:
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dst.parent}: cannot create the output folder ({exc.strerror}); choose a writable one") from exc
    if not os.access(dst.parent, os.W_OK | os.X_OK):
        raise InputError(f"{dst.parent}: output folder is not writable; choose another output path or fix its permissions")


def _check_space(dst: Path, raw_bytes: int, overhead: float) -> None:
    need = int(raw_bytes * overhead)
    free = shutil.disk_usage(dst.parent).free
    if free < need:
        raise InputError(
            f"{dst.parent}: {free / 2**30:.1f} GiB free, the COG build needs about {need / 2**30:.1f} GiB "
            "(temporary copies beside the output); free space or write elsewhere"
        )


def _remove_leftovers(dst: Path) -> None:
    """Delete temporaries of an earlier build of ``dst`` that was killed (node failure, time limit).

    One manifest item has one writer, so anything matching this output's temporary names is stale;
    on scratch with quotas a forgotten tiled copy can be tens of GB.
    """
    for old in sweep_temporaries(dst):
        log(f"removed {old} left by an interrupted earlier build")
    for pattern in (f".{dst.name}.*.tiled.tif", f".{dst.name}.*.tmp{dst.suffix}"):
        for old in dst.parent.glob(pattern):
            with contextlib.suppress(OSError):
                size = old.stat().st_size
                old.unlink()
                log(f"removed {old} ({size / 2**20:.0f} MiB) left by an interrupted earlier build")


def _is_current(src: Path, dst: Path, blocksize: int) -> bool:
    return (dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime and not validate_cog(dst, blocksize)
            and verify_raster(dst) is None)  # a COG layout is headers only: a truncated one still "validates"


def make_cog(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    blocksize: int = 512,
    compress: str | None = None,
    mem_budget: int = DEFAULT_MEM_BUDGET,
    threads: int | None = None,
    overview_resampling: str | None = None,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    force: bool = False,
    interleave: str | None = None,
) -> Path:
    """Write ``src`` as a Cloud Optimized GeoTIFF at ``dst`` (lossless, atomically, validated).

    Parameters
    ----------
    src:
        Any north-up georeferenced raster GDAL reads (striped or tiled GeoTIFF, VRT, ...).
    dst:
        The COG to write (an existing folder means ``<folder>/<src stem>.tif``). A temporary tiled copy and the final file's temporary name live in
        the same folder (never /tmp, which is RAM on LUMI compute nodes).
    blocksize:
        Internal tile size in pixels (a multiple of 16 from 64 to 4096; GDAL's overview limit).
    compress:
        ``ZSTD`` (default when GDAL has it), ``DEFLATE``, ``LZW`` or ``NONE``. The predictor follows
        the data type: 3 for floats, 2 for integers.
    mem_budget:
        Bytes this process may use for pixel windows and GDAL's block cache; peak memory stays
        near it whatever the input size.
    threads:
        Compression and overview threads; default SLURM_CPUS_PER_TASK in a job, else all CPUs.
    overview_resampling:
        Overview resampling name; default ``mode`` for class maps (colour table), else ``average``.
    zstd_level:
        ZSTD level (1 is fastest; larger is smaller and slower).
    force:
        Rebuild even when ``dst`` is already a valid COG newer than ``src``.
    interleave:
        ``band`` or ``pixel`` for the final file; default :func:`default_interleave` of the band count.

    Returns
    -------
    Path
        ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / f"{src.stem}.tif"
    if not 64 <= blocksize <= 4096 or blocksize % 16:
        raise ConfigError(f"blocksize {blocksize} must be a multiple of 16 from 64 to 4096 (e.g. 256 or 512)")
    if mem_budget < MIN_MEM_BUDGET:
        raise ConfigError(f"memory budget {mem_budget} bytes is too small; give at least 64M")
    refuse_overwrite([src], [dst], fix="choose another output path")
    n_threads = threads or cpu_threads()
    codec = (compress or ("ZSTD" if zstd_available() else "DEFLATE")).upper()
    if codec not in ("ZSTD", "DEFLATE", "LZW", "NONE"):
        raise ConfigError(f"unknown compression {compress!r}: use ZSTD, DEFLATE, LZW or NONE")
    if interleave is not None and interleave.upper() not in ("BAND", "PIXEL"):
        raise ConfigError(f"unknown interleave {interleave!r}: use band or pixel")
    with open_raster(src) as ds:
        check_georeferenced(ds)
        if not force and _is_current(src, dst, blocksize):
            log(f"{dst}: already a valid COG newer than its input; skipped (use --force to rebuild)")
            return dst
        if len(set(ds.dtypes)) != 1:
            raise InputError(f"{redact(str(src))}: bands have different data types {sorted(set(ds.dtypes))}; split them first")
        _check_output_dir(dst)
        raw = ds.width * ds.height * ds.count * np.dtype(ds.dtypes[0]).itemsize
        classes = has_colormap(ds)
        resampling = _resampling(overview_resampling, classes)
        _remove_leftovers(dst)
        opts: dict[str, Any] = {
            "tiled": True, "blockxsize": blocksize, "blockysize": blocksize, "bigtiff": "IF_SAFER",
            "num_threads": str(n_threads), "interleave": (interleave or default_interleave(ds.count)).upper(), "compress": codec,
        }
        if codec != "NONE":
            opts["predictor"] = predictor_for(ds.dtypes[0])
        if codec == "ZSTD":
            opts["zstd_level"] = zstd_level
        env: dict[str, Any] = {"GDAL_TIFF_OVR_BLOCKSIZE": str(blocksize), "GDAL_PAM_ENABLED": "NO",
                               "GDAL_TIFF_INTERNAL_MASK": "YES",
                               "CPL_TMPDIR": str(dst.parent)}
        why = fast.refusal(ds, resampling, mem_budget, blocksize, opts["interleave"])
        factors = overview_factors(ds.width, ds.height, blocksize)
        try:
            if why is None:
                _check_space(dst, raw, FAST_OVERHEAD if codec != "NONE" else 2 * INTERMEDIATE_OVERHEAD)
                phases = _fast_cog(ds, dst, blocksize, opts, mem_budget, n_threads, env, len(factors))
            else:
                _check_space(dst, raw, INTERMEDIATE_OVERHEAD)
                log(f"{dst}: {why}: the three-pass GDAL path")
                phases = gdal_cog(ds, dst, blocksize, opts, mem_budget, n_threads, env, factors, resampling)
        except RasterioError as exc:
            first = redact(gdal_message(exc))
            raise GeohpcError(f"{redact(str(src))} -> {dst}: GDAL failed ({first}); check free space and the input") from exc
        except OSError as exc:
            raise io_error(exc, dst, "check the output folder") from exc
    log(f"{dst}: {phases}, overviews {factors or 'none'} ({resampling.name}), {codec}, {n_threads} threads")
    return dst


def _fast_cog(ds: rasterio.io.DatasetReader, dst: Path, blocksize: int, opts: dict[str, Any], budget: int,
              n_threads: int, env: dict[str, Any], n_levels: int) -> str:
    """The one-read path (:mod:`geohpc.products.cog.fast`): level files, then the COG assembled from their tiles."""
    prof = tiled_profile(ds, **opts)
    # names the rerun's sweep (_remove_leftovers) finds: .<name>.<pid>.l<k>.tmp<suffix>
    levels = [dst.parent / f".{dst.name}.{os.getpid()}.l{k}.tmp{dst.suffix}" for k in range(n_levels + 1)]
    try:
        t0 = time.monotonic()
        with gdal_env(budget // fast.CACHE_SHARE, n_threads, **env), kept_heap():
            # an uncompressed striped source is read straight from its file (band passes cost no full re-read)
            read = raw_reader(ds)
            plan = fast.read_plan(ds, budget, blocksize)
            with contextlib.ExitStack() as reads:
                if read is not None:
                    log(f"{redact(str(ds.name))}: uncompressed, strips in order: read straight from the file")
                else:
                    read = lambda w, out, idx: read_window(ds, w, out, idx)  # noqa: E731
                    if plan is not None and needs_spill(ds, plan[0]):  # one decode, not one per band group
                        scratch = dst.parent / f".{dst.name}.{os.getpid()}.spill.tmp{dst.suffix}"  # swept if killed
                        read = reads.enter_context(spill_reader(ds, plan[0], scratch, read, min(CHUNK, budget // 16)))
                        log(f"{redact(str(ds.name))}: compressed, pixel-interleaved, {len(plan[0])} band groups: "
                            "decoded once, later groups from a scratch copy")
                seen = fast.write_levels(ds, levels, prof, blocksize, budget, read, lambda a: has_data(a, ds.nodata),
                                         copy_metadata, plan)
        if not seen:
            raise all_nodata(ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the overview level files carry no georeferencing
            for p in levels:
                check_written(p, dst)
        t1, rss1 = time.monotonic(), peak_rss_gb()
        with atomic_path(dst) as out:
            assemble(levels, out)
            check_cog(out, dst, blocksize)
        t2 = time.monotonic()
    finally:
        for p in levels:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return (f"one read + level files {t1 - t0:.1f}s (peak RSS so far {rss1:.2f} GiB), "
            f"tile copy into the COG {t2 - t1:.1f}s ({peak_rss_gb():.2f} GiB)")
