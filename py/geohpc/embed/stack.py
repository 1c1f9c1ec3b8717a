"""Stack per-date rasters from ``geohpc.download`` into TESSERA's time-series arrays, block by block.

Outputs (in ``--out``)::

    bands.npy               (T, H, W, 10) uint16  S2 L2A in the order B04 B02 B03 B08 B8A B05 B06 B07 B11 B12
    masks.npy               (T, H, W)     uint8   1 = clear observation (SCL class in --scl-valid and
                                                  every band > 0), 0 = cloud, shadow, nodata, ...
    doys.npy                (T,)          int16   day of year of each S2 date
    sar_ascending.npy       (Ta, H, W, 2) float32 VV, VH backscatter in dB; NaN = no data
    sar_ascending_doy.npy   (Ta,)         int16
    sar_descending.npy      (Td, H, W, 2) float32
    sar_descending_doy.npy  (Td,)         int16
    stack.json              grid, dates and item ids (written last: the done marker)

Dates: items are sorted by acquisition time whatever order the ItemCollection had (STAC searches
return newest first). Two items of one kind/orbit with the same timestamp, or a series that spans two
calendar years (day-of-year would wrap), are errors: stack one year at a time.

Memory: the outputs are ``np.lib.format.open_memmap`` files filled one date and one spatial block at a
time, so memory is about ``block**2 * 10 * 2`` bytes whatever the length of the series.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import gc
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geohpc.embed.layout import (
    DONE_MARKER,
    ORBITS,
    S1_BANDS,
    S2_BANDS,
    S2_MASK_BAND,
    SKIP_MARKER,
    STACK_JSON,
    Grid,
)
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.raster_io import gdal_env, iter_block_windows
from geohpc.util import atomic_path, write_json_atomic

DEFAULT_SCL_VALID = (4, 5, 6, 7, 11)  # vegetation, bare, water, unclassified, snow


def _parse_time(text: str, where: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise InputError(f"{where}: datetime {text!r} is not ISO 8601; re-download the item") from None


def collect(download_dir: Path) -> tuple[Grid, dict[str, list[dict[str, Any]]]]:
    """Read the ``_DONE.json`` markers: the common grid and the items per series, sorted by time.

    Series keys are ``s2``, ``ascending`` and ``descending``.
    """
    if not download_dir.is_dir():
        raise InputError(f"{download_dir}: download folder not found; run the download stage first")
    series: dict[str, list[dict[str, Any]]] = {"s2": [], "ascending": [], "descending": []}
    grid: Grid | None = None
    for sub in sorted(p for p in download_dir.iterdir() if p.is_dir()):
        marker = sub / DONE_MARKER
        if not marker.exists():
            if (sub / SKIP_MARKER).exists():
                print(f"geohpc.stack: skipping {sub.name} (download reported it skipped)", file=sys.stderr)
                continue
            raise InputError(f"{sub}: item not finished ({DONE_MARKER} missing); rerun the download stage")
        try:
            meta = json.loads(marker.read_text())
            g = Grid(**meta["grid"])
            if meta["kind"] != "s2" and meta.get("orbit") not in ORBITS:
                raise ValueError(f"orbit {meta.get('orbit')!r}")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{marker}: unreadable done marker ({type(exc).__name__}: {exc}); delete {sub} "
                             "and rerun the download") from None
        if grid is None:
            grid = g
        elif g != grid:
            raise InputError(f"{marker}: item is on another grid than the others; download all items with one BBOX")
        slim = {"id": meta["id"], "dir": sub, "time": _parse_time(meta.get("datetime"), str(marker))}
        series["s2" if meta["kind"] == "s2" else meta["orbit"]].append(slim)  # only what stacking needs
    if grid is None or not series["s2"]:
        raise InputError(f"{download_dir}: no downloaded Sentinel-2 item; run the download stage first")
    for key, metas in series.items():
        metas.sort(key=lambda m: m["time"])
        for a, b in zip(metas, metas[1:], strict=False):
            if a["time"] == b["time"]:
                raise InputError(f"{download_dir}: items {a['id']} and {b['id']} ({key}) have the same timestamp; "
                                 "mosaic or drop one")
        years = {m["time"].year for m in metas}
        if len(years) > 1:
            raise InputError(f"{download_dir}: {key} dates span years {sorted(years)}; day-of-year would wrap, "
                             "stack one calendar year at a time")
    return grid, series


def _doy(metas: list[dict[str, Any]]) -> np.ndarray:
    return np.array([m["time"].timetuple().tm_yday for m in metas], dtype=np.int16)


def _open_bands(es: contextlib.ExitStack, meta: dict[str, Any], bands: tuple[str, ...]) -> list[Any]:
    """Open one date's band files once (closed with ``es``), with a clear error for a broken file."""
    out = []
    for b in bands:
        path = meta["dir"] / f"{b}.tif"
        try:
            out.append(es.enter_context(rasterio.open(path)))
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: unreadable ({str(exc).splitlines()[0]}); delete {meta['dir']} "
                             "and rerun the download") from None
    return out


def _read(dss: list[Any], win: Window) -> np.ndarray:
    try:
        return np.stack([ds.read(1, window=win) for ds in dss], axis=-1)
    except rasterio.errors.RasterioError as exc:
        bad = next((ds.name for ds in dss if _unreadable(ds, win)), dss[0].name)
        raise InputError(f"{bad}: corrupt or truncated ({str(exc).splitlines()[0]}); delete its item folder "
                         "and rerun the download") from None


def _unreadable(ds: Any, win: Window) -> bool:
    try:
        ds.read(1, window=win)
    except rasterio.errors.RasterioError:
        return True
    return False


def _fill(out: Path, series: dict[str, list[dict[str, Any]]], specs: dict[str, tuple[tuple[int, ...], str]],
          block: int, scl_valid: tuple[int, ...], s1_db: bool, allow_empty: bool = False) -> None:
    """Fill the memory-mapped arrays date by date and block by block, then rename them into place."""
    s2 = series["s2"]
    H, W = specs["masks"][0][1:]
    # every array is written beside its target and renamed only when all are complete
    with contextlib.ExitStack() as atomic:
        tmps = {name: atomic.enter_context(atomic_path(out / f"{name}.npy")) for name in specs}
        arrays = {name: np.lib.format.open_memmap(tmps[name], mode="w+", dtype=dtype, shape=shape)
                  for name, (shape, dtype) in specs.items()}
        for name in specs:
            _reserve(tmps[name], out / f"{name}.npy")
        windows = list(iter_block_windows(H, W, block))
        valid = np.array(scl_valid, dtype=np.uint8)
        clear = False
        for t, meta in enumerate(progress(s2, desc="stack S2 dates")):
            with contextlib.ExitStack() as es:
                dss, scl_ds = _open_bands(es, meta, S2_BANDS), _open_bands(es, meta, (S2_MASK_BAND,))
                for win in windows:
                    rs, cs = win.toslices()
                    refl = _read(dss, win)
                    scl = _read(scl_ds, win)[..., 0]
                    arrays["bands"][t, rs, cs, :] = refl
                    m = np.isin(scl, valid) & (refl > 0).all(axis=-1)
                    clear = clear or bool(m.any())
                    arrays["masks"][t, rs, cs] = m
            gc.collect()  # rasterio leaves small reference cycles per read: keep them from piling up
        for orbit in ORBITS:
            arr = arrays[f"sar_{orbit}"]
            for t, meta in enumerate(progress(series[orbit], desc=f"stack S1 {orbit}")):
                with contextlib.ExitStack() as es:
                    dss = _open_bands(es, meta, S1_BANDS)
                    for win in windows:
                        rs, cs = win.toslices()
                        x = _read(dss, win).astype(np.float32)
                        if s1_db:
                            with np.errstate(divide="ignore", invalid="ignore"):
                                x = np.where(x > 0, 10.0 * np.log10(x), np.nan).astype(np.float32)
                        arr[t, rs, cs, :] = x
        if not clear and not allow_empty:
            raise InputError(f"{s2[0]['dir'].parent}: not one clear Sentinel-2 observation (every pixel of every "
                             "date is cloud, shadow or nodata); check --scl-valid and the AOI, or pass --allow-empty")
        for a in arrays.values():
            a.flush()
        del arrays


def specs_names(series: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The pixel arrays the stack writes (``<name>.npy``)."""
    return ["bands", "masks", *(f"sar_{o}" for o in ORBITS)]


def _reserve(path: Path, final: Path) -> None:
    """Allocate a memory-mapped file's blocks now: a full disk is then an error here, not a SIGBUS later."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise InputError(f"{final}: cannot reserve {size >> 20} MiB ({exc.strerror}); free space or "
                             "write the stack elsewhere") from None
        if shutil.disk_usage(path.parent).free < size:  # no fallocate (some parallel file systems)
            raise InputError(f"{final}: needs {size >> 20} MiB, the disk has less free; free space or "
                             "write the stack elsewhere") from None
    finally:
        os.close(fd)


def build_stack(download_dir: Path, out: Path, block: int = 1024,
                scl_valid: tuple[int, ...] = DEFAULT_SCL_VALID, s1_db: bool = True,
                allow_empty: bool = False) -> dict[str, Any]:
    """Stack the downloaded items into the TESSERA arrays in ``out``; return the ``stack.json`` content.

    Parameters
    ----------
    download_dir : Path
        Output folder of ``geohpc.download`` (one subfolder per item).
    out : Path
        Folder for the ``.npy`` arrays and ``stack.json``.
    block : int
        Side of the spatial blocks read at once (memory ~ block**2 * 20 bytes).
    scl_valid : tuple of int
        SCL classes that count as a clear observation.
    s1_db : bool
        Convert Sentinel-1 linear backscatter to dB (False: the input is already dB).
    allow_empty : bool
        Write a stack without a single clear observation instead of failing.
    """
    refuse_overwrite([download_dir], [out], folders=[], fix="give the stack its own output folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, not a folder; give the output folder for the stack")
    if download_dir.resolve() in out.resolve().parents:
        raise InputError(f"{out}: lies inside the download folder {download_dir}; the stack would be read "
                         "as a downloaded item next time: give it its own folder")
    grid, series = collect(download_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [*specs_names(series), "doys", "sar_ascending_doy", "sar_descending_doy"]
    for name in names:
        sweep_temporaries(out / f"{name}.npy")  # a killed earlier run's arrays: full stack size
    sweep_temporaries(out / STACK_JSON)
    H, W = grid.height, grid.width
    s2 = series["s2"]
    specs: dict[str, tuple[tuple[int, ...], str]] = {
        "bands": ((len(s2), H, W, len(S2_BANDS)), "uint16"), "masks": ((len(s2), H, W), "uint8")}
    for orbit in ORBITS:
        specs[f"sar_{orbit}"] = ((len(series[orbit]), H, W, len(S1_BANDS)), "float32")
    # One GDAL environment for every open: without it each rasterio.open builds its own Env (and, with AWS
    # keys in the environment, a boto3 session: ~1 MB and ~50 ms per file).
    with gdal_env(threads=1):
        _fill(out, series, specs, block, scl_valid, s1_db, allow_empty)
    for key, fname in (("s2", "doys"), ("ascending", "sar_ascending_doy"), ("descending", "sar_descending_doy")):
        with atomic_path(out / f"{fname}.npy") as tmp:
            np.save(tmp, _doy(series[key]))
    info = {"grid": grid.to_json(), "band_order": list(S2_BANDS), "scl_valid": list(scl_valid),
            "s1_units": "dB" if s1_db else "as downloaded",
            "dates": {k: [m["time"].isoformat() for m in v] for k, v in series.items()},
            "items": {k: [m["id"] for m in v] for k, v in series.items()}}
    write_json_atomic(out / STACK_JSON, info)
    return info


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc stack --downloads DIR --out DIR [--block 1024]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc stack", description=__doc__.splitlines()[0])
    ap.add_argument("--downloads", type=Path, required=True, help="output folder of geohpc.download")
    ap.add_argument("--out", type=Path, required=True, help="folder for the .npy arrays")
    ap.add_argument("--block", type=int, default=1024, help="spatial block side read at once (default 1024)")
    ap.add_argument("--scl-valid", default=",".join(map(str, DEFAULT_SCL_VALID)),
                    help="SCL classes counted as clear (default 4,5,6,7,11)")
    ap.add_argument("--s1-already-db", action="store_true", help="S1 input is dB already (default: linear)")
    ap.add_argument("--allow-empty", action="store_true", help="write a stack without any clear observation")
    args = ap.parse_args(argv)

    def work() -> int:
        try:
            scl = tuple(int(v) for v in args.scl_valid.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"--scl-valid {args.scl_valid!r}: give SCL class numbers like 4,5,6,7,11") from None
        with one_line_errors(args.out, fix="check the output folder and free space"):
            info = build_stack(args.downloads, args.out, max(16, args.block), scl, not args.s1_already_db,
                               args.allow_empty)
        print(json.dumps({"out": str(args.out), "s2_dates": len(info["dates"]["s2"]),
                          "ascending": len(info["dates"]["ascending"]),
                          "descending": len(info["dates"]["descending"]), "grid": info["grid"]}))
        return 0

    return run_cli(work, "geohpc.stack")


if __name__ == "__main__":
    sys.exit(main())
