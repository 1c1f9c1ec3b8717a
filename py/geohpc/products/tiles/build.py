"""Orchestration: check inputs, fit the rendering once, run shards of metatiles, then finalize.

A full run (no ``--shard``) does everything in one process pool. With ``--shard i/n`` a job renders
only its slice of metatiles (base zoom and the three zooms above, in memory), leaves
``.shards/i-of-n.done``, and the shard that completes the set finalizes: lower zooms from children,
the PMTiles archive and the viewer. ``--finalize`` runs that last step by hand (it reads only tiles,
never the source). Everything is idempotent: finished tiles are skipped on a rerun.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from rasterio.errors import RasterioError

from geohpc.errors import ConfigError, GeohpcError, InputError
from geohpc.guards import io_error, refuse_overwrite, sweep_temporaries
from geohpc.products.tiles import pyramid
from geohpc.products.tiles.core import (
    SETTINGS_FILE,
    SHARD_DIR,
    Settings,
    make_readable,
    meta_zoom,
    shard_items,
    shard_marker,
)
from geohpc.progress import progress
from geohpc.util import cpu_threads, redact, write_json_atomic, write_text_atomic

DEFAULT_BUDGET = 512 << 20


def check_out_dir(out: Path) -> None:
    """Make sure ``out`` can be written (created if missing); a clear error otherwise."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, not a folder; give the output folder for the tiles")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{out}: output folder is not writable ({exc.strerror or exc}); "
                         "choose a folder you can write to") from exc


def prepare(src: str, out: Path, minzoom: int, maxzoom: int, mode: str, bands: list[int] | None,
            fmt: str, resampling: str, skip_empty: bool, name: str | None,
            percentiles: tuple[float, float] = (2.0, 98.0), budget: int = DEFAULT_BUDGET) -> Settings:
    """Validate the source, fit the rendering and agree with any earlier run in ``out``.

    Raises
    ------
    InputError, ConfigError
        Missing/corrupt/unreferenced source, all-nodata source, unwritable ``out``, or an ``out``
        that an earlier run filled with different settings.
    """
    from rasterio.warp import transform_bounds

    from geohpc.products.tiles.paint import choose_mode, fit_render
    from geohpc.raster_io import check_georeferenced, gdal_env, open_raster

    with gdal_env(budget), open_raster(src) as ds:
        check_georeferenced(ds)
        mode, chosen = choose_mode(ds, mode, bands)
        if mode == "classes" and resampling not in ("nearest", "mode"):
            resampling = "nearest"
        local = "://" not in src and not src.startswith("/vsi")
        # tiles.json sits beside the tiles, which get published: a signed URL's signature stays out of it
        settings = Settings(src=str(Path(src).resolve()) if local else redact(src),
                            name=name or Path(src.split("?", 1)[0]).stem, minzoom=minzoom, maxzoom=maxzoom, mode=mode, bands=chosen, fmt=fmt, resampling=resampling,
                            skip_empty=skip_empty, percentiles=list(percentiles))
        old = load_settings(out)
        if old is not None:
            if old.content_key() != settings.content_key():
                diff = sorted(k for k, v in settings.content_key().items() if old.content_key().get(k) != v)
                raise ConfigError(f"{out}: holds tiles made with other settings ({', '.join(diff)} differ); "
                                  "use a new output folder or delete this one")
            # reuse the fitted rendering and bounds: every shard and rerun draws with the same numbers,
            # even on nodes whose BLAS would round a refit differently
            settings.render, settings.bounds = old.render, old.bounds
            check_out_dir(out)
            if old.minzoom > minzoom:
                write_json_atomic(out / SETTINGS_FILE, settings.to_json())
                make_readable(out / SETTINGS_FILE)
            return settings
        try:
            bounds = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
        except Exception as exc:  # noqa: BLE001 - PROJ raises several types
            raise InputError(f"{redact(src)}: cannot transform its bounds to lon/lat ({exc}); check its CRS") from exc
        settings.bounds = tuple(float(v) for v in bounds)
        settings.render = fit_render(ds, mode, chosen, percentiles, budget // 2)
    check_out_dir(out)
    sweep_temporaries(out / SETTINGS_FILE)
    write_json_atomic(out / SETTINGS_FILE, settings.to_json())
    make_readable(out / SETTINGS_FILE)
    return settings


def load_settings(out: Path) -> Settings | None:
    """The settings an earlier run stored in ``out``, or None."""
    p = out / SETTINGS_FILE
    if not p.is_file():
        return None
    try:
        return Settings.from_json(json.loads(p.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{p}: unreadable ({exc}); delete the output folder and run again") from exc


def _pool_map(func: Callable[[Any], Any], items: list[Any], processes: int, desc: str,
              init: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> Iterator[Any]:
    """``map`` over ``items`` in ``processes`` workers (in-process when 1), with progress on stderr."""
    if not items:
        return
    if processes <= 1 or len(items) == 1:
        if init is not None:
            init(*initargs)
        try:
            yield from progress((func(i) for i in items), total=len(items), desc=desc)
        finally:
            if init is not None:
                pyramid.close_worker()
        return
    ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    # one metatile per task keeps both workers busy to the end; tiny parent tasks go in batches
    chunk = 1 if len(items) < 2000 else min(16, len(items) // (processes * 64))
    with ProcessPoolExecutor(max_workers=min(processes, len(items)), mp_context=ctx,
                             initializer=init, initargs=initargs) as pool:
        yield from progress(pool.map(func, items, chunksize=chunk), total=len(items), desc=desc)


def run_base(settings: Settings, out: Path, shard: int, nshards: int, processes: int,
             budget: int = DEFAULT_BUDGET, src: str | None = None) -> dict[str, int]:
    """Render shard ``shard`` of ``nshards`` of the metatiles (base zoom + 3 zooms in memory)."""
    mts = shard_items(pyramid.metatiles(settings), shard, nshards)
    written = skipped = 0
    init_args = (settings.to_json(), str(out), budget // max(1, processes), src)
    for w, s in _pool_map(pyramid.render_metatile, mts, processes, f"tiles z{settings.maxzoom} shard {shard}/{nshards}",
                          pyramid.init_worker, init_args):
        written += w
        skipped += s
    marker = shard_marker(out, shard, nshards)
    marker.parent.mkdir(exist_ok=True)
    sweep_temporaries(marker)
    write_json_atomic(marker, {"metatiles": len(mts), "written": written, "skipped": skipped})
    return {"metatiles": len(mts), "written": written, "skipped": skipped}


def shards_complete(out: Path, nshards: int) -> list[int]:
    """Shard numbers of ``nshards`` that have not left their marker yet."""
    return [i for i in range(nshards) if not shard_marker(out, i, nshards).exists()]


def _finished_shard_count(out: Path) -> int | None:
    d = out / SHARD_DIR
    counts = set()
    for p in d.glob("*-of-*.done") if d.is_dir() else []:
        with contextlib.suppress(ValueError):
            counts.add(int(p.stem.split("-of-")[1]))
    for n in sorted(counts):
        if not shards_complete(out, n):
            return n
    return None


@contextlib.contextmanager
def finalize_lock(out: Path) -> Iterator[bool]:
    """Non-blocking flock on ``.shards/finalize.lock``: True when this process may finalize.

    The kernel drops the lock when its holder dies, so a killed finalizer never blocks a rerun.
    Filesystems without flock (some Lustre mounts) answer with an error: then we just go ahead,
    finalizing twice is harmless (every write is atomic and idempotent).
    """
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    with open(out / SHARD_DIR / "finalize.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:
            yield True
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def finalize(settings: Settings, out: Path, processes: int, make_pmtiles: bool, viewer: bool,
             basemap: str | None = None) -> dict[str, Any]:
    """Build zooms below the metatile zoom from their children, then the PMTiles archive and viewer."""
    from geohpc.products.tiles.pmtiles_out import write_pmtiles
    from geohpc.products.tiles.viewer import DEFAULT_BASEMAP, write_viewer

    written = 0
    for z in range(meta_zoom(settings.minzoom, settings.maxzoom) - 1, settings.minzoom - 1, -1):
        tasks = pyramid.parent_tasks(settings, out, z)
        written += sum(_pool_map(pyramid.build_parent, tasks, processes if len(tasks) > 64 else 1, f"tiles z{z}"))
    result: dict[str, Any] = {"lower_written": written}
    if make_pmtiles:
        path, n = write_pmtiles(out, settings)
        result.update(pmtiles=str(path), pmtiles_tiles=n)
    if viewer:
        result["viewer"] = str(write_viewer(out, settings, DEFAULT_BASEMAP if basemap is None else basemap or None))
    sweep_temporaries(out / SHARD_DIR / "finalized")
    write_text_atomic(out / SHARD_DIR / "finalized", json.dumps(result) + "\n")
    return result


def finalized(out: Path) -> bool:
    """True once a finalize step has completed in ``out``."""
    return (out / SHARD_DIR / "finalized").exists()


def build(src: str, out: Path, *, zoom: tuple[int, int], mode: str = "auto", bands: list[int] | None = None,
          fmt: str = "png", resampling: str = "bilinear", make_pmtiles: bool = False, viewer: bool = True,
          processes: int | None = None, shard: tuple[int, int] | None = None, finalize_only: bool = False,
          no_finalize: bool = False, skip_empty: bool = False, name: str | None = None,
          percentiles: tuple[float, float] = (2.0, 98.0), budget: int = DEFAULT_BUDGET,
          basemap: str | None = None) -> dict[str, Any]:
    """Make XYZ tiles of ``src`` in ``out`` (see the module docstring for the shard/finalize flow).

    ``basemap`` is the viewer's base-map URL template (None: OpenStreetMap; ``""``: no base map).

    Returns
    -------
    dict
        A summary (tiles written and skipped, archive, viewer, seconds) printed as JSON by the CLI.
    """
    if not finalize_only:
        refuse_overwrite([src], [out], fix="give another output folder for the tiles")
    try:
        return _build(src, out, zoom=zoom, mode=mode, bands=bands, fmt=fmt, resampling=resampling,
                      make_pmtiles=make_pmtiles, viewer=viewer, processes=processes, shard=shard,
                      finalize_only=finalize_only, no_finalize=no_finalize, skip_empty=skip_empty, name=name,
                      percentiles=percentiles, budget=budget, basemap=basemap)
    except GeohpcError:
        raise
    except BrokenProcessPool:
        raise GeohpcError(f"{out}: a tile worker died (out of memory? raise MEM or lower --processes); "
                          "rerun: finished tiles are kept") from None
    except RasterioError as exc:
        from geohpc.products.cog.build import gdal_message

        first = redact(gdal_message(exc))
        raise InputError(f"{redact(src)}: cannot read it ({first}); the file is corrupt or truncated, "
                         "re-create it") from None
    except OSError as exc:
        raise io_error(exc, out, "check the output folder; a rerun keeps finished tiles") from None


def _build(src: str, out: Path, *, zoom: tuple[int, int], mode: str, bands: list[int] | None, fmt: str,
           resampling: str, make_pmtiles: bool, viewer: bool, processes: int | None,
           shard: tuple[int, int] | None, finalize_only: bool, no_finalize: bool, skip_empty: bool,
           name: str | None, percentiles: tuple[float, float], budget: int,
           basemap: str | None) -> dict[str, Any]:
    t0 = time.monotonic()
    nproc = processes or cpu_threads()
    minzoom, maxzoom = zoom
    summary: dict[str, Any] = {"out": str(out)}
    if finalize_only:
        settings = load_settings(out)
        if settings is None:
            raise InputError(f"{out}: no {SETTINGS_FILE} here; run the shards (or a full run) first")
        if settings.maxzoom != maxzoom:
            raise ConfigError(f"{out}: base zoom is {settings.maxzoom}, not {maxzoom}; pass --zoom {minzoom}-{settings.maxzoom}")
        if _finished_shard_count(out) is None:
            raise InputError(f"{out}: not every shard has finished (see {out / SHARD_DIR}); rerun the missing shards first")
        settings.minzoom = minzoom
        summary.update(finalize(settings, out, nproc, make_pmtiles, viewer, basemap))
    else:
        settings = prepare(src, out, minzoom, maxzoom, mode, bands, fmt, resampling, skip_empty, name,
                           percentiles, budget)
        i, n = shard or (0, 1)
        summary.update(mode=settings.mode, bands=settings.bands, shard=f"{i}/{n}")
        summary.update(run_base(settings, out, i, n, nproc, budget, src))
        missing = shards_complete(out, n)
        if no_finalize:
            summary["finalize"] = "skipped (--no-finalize)"
        elif missing:
            summary["finalize"] = f"waiting for shards {missing[:10]} of {n}"
        else:
            with finalize_lock(out) as mine:
                if mine:
                    summary.update(finalize(settings, out, nproc, make_pmtiles, viewer, basemap))
                else:
                    summary["finalize"] = "another shard is finalizing"
    summary["tiles"] = pyramid.count_tiles(settings)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return summary


def iter_summary_lines(summary: dict[str, Any]) -> Iterable[str]:
    """The summary as one JSON line (stdout is for data)."""
    yield json.dumps(summary, sort_keys=True)
