"""Weather: raw ERA5-Land NetCDF4 and CHIRPS GeoTIFFs -> one normalised ``.npz`` a source a year.

ERA5-Land ``tp`` is accumulated from 00 UTC and the 00:00 value holds the previous day's total
(SURE2-NOTES, Weather): a day's total is the next day's 00:00 value, de-accumulated here. Files are
read eagerly (every variable into numpy, then closed) before anything is joined (sure2.md bug 2).
Zero-byte files and interrupted ``*_download`` leftovers (bug 7) are found by :func:`clean_cache`,
removed and, when a fetch function is given, fetched again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geohpc.errors import InputError, run_cli
from geohpc.util import atomic_path

ERA5_RE = re.compile(r"^era5land_(\d{4})-(\d{2})\.nc$")
CHIRPS_RE = re.compile(r"^chirps-v2\.0\.(\d{4})\.(\d{2})\.(\d{2})\.tif(\.gz)?$")
Fetch = Callable[[Path], None]


def clean_cache(raw: str | Path, fetch: Fetch | None = None) -> list[Path]:
    """Remove zero-byte files and ``*_download`` leftovers under ``raw``; refetch the real names.

    Returns the removed paths. ``fetch(path)`` is called for each removed file whose name is a real
    product (``foo.nc_download`` -> ``foo.nc``), so an interrupted download is fetched again.
    """
    removed: list[Path] = []
    for p in sorted(Path(raw).iterdir()) if Path(raw).is_dir() else []:
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name.endswith("_download") or p.stat().st_size == 0:
            p.unlink()
            removed.append(p)
            target = p.with_name(p.name[: -len("_download")]) if p.name.endswith("_download") else p
            if fetch is not None and (ERA5_RE.match(target.name) or CHIRPS_RE.match(target.name)):
                print(f"weather: {p.name}: interrupted or empty download removed; fetching {target.name} again",
                      file=sys.stderr)
                fetch(target)
            else:
                print(f"weather: {p.name}: interrupted or empty download removed", file=sys.stderr)
    return removed


def _read_era5(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    import netCDF4

    if zipfile.is_zipfile(path):  # the CDS zip of instant + accum files, saved under the .nc name
        import tempfile

        from geohpc.sure2.fetch import merge_zip

        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as td:
            merged = Path(td) / path.name
            merge_zip(path, merged)
            return _read_era5(merged)
    try:
        with netCDF4.Dataset(path) as ds:
            tname = "valid_time" if "valid_time" in ds.variables else "time"
            tv = ds.variables[tname]
            times = netCDF4.num2date(tv[:], tv.units, getattr(tv, "calendar", "standard"))
            out = {"time": np.array([np.datetime64(t.isoformat(), "h") for t in times])}
            out["lat"] = np.asarray(ds.variables["latitude"][:], float)
            out["lon"] = np.asarray(ds.variables["longitude"][:], float)
            for name in ("swvl1", "t2m", "tp"):
                if name not in ds.variables:
                    raise InputError(f"{path}: variable {name} missing (request swvl1, 2m_temperature, total_precipitation)")
                data = ds.variables[name][:]
                out[name] = np.ma.filled(data.astype(np.float32), np.nan)
                if ds.variables[name].ndim == 4:  # expver/number dimension: first non-NaN along it
                    out[name] = np.nanmax(out[name], axis=1)
    except OSError as exc:
        raise InputError(f"{path}: cannot open as NetCDF4 ({exc}); delete it so the weather stage fetches it again") from exc
    return out


def normalise_era5(files: list[Path], out: str | Path) -> Path:
    """Monthly hourly ERA5-Land files of one year -> ``era5land_<YYYY>.npz`` (daily, see the contract)."""
    parts = [_read_era5(f) for f in sorted(files)]  # eager: each month in numpy before any join
    if not parts:
        raise InputError("no ERA5-Land files to normalise")
    lat, lon = parts[0]["lat"], parts[0]["lon"]
    for f, p in zip(sorted(files), parts, strict=True):
        if p["lat"].shape != lat.shape or not np.allclose(p["lat"], lat) or not np.allclose(p["lon"], lon):
            raise InputError(f"{f}: grid differs from the other months (request the same area every month)")
    time = np.concatenate([p["time"] for p in parts])
    order = np.argsort(time)
    time = time[order]
    var = {k: np.concatenate([p[k] for p in parts])[order] for k in ("swvl1", "t2m", "tp")}
    if lat[0] < lat[-1]:
        lat, var = lat[::-1], {k: v[:, ::-1] for k, v in var.items()}
    days = np.unique(time.astype("datetime64[D]"))
    day_of = time.astype("datetime64[D]")
    sw, tm, tmin, tmax, tp = [], [], [], [], []
    for d in days:
        sel = day_of == d
        sw.append(np.nanmean(var["swvl1"][sel], axis=0))
        t = var["t2m"][sel] - 273.15
        tm.append(np.nanmean(t, axis=0))
        tmin.append(np.nanmin(t, axis=0))
        tmax.append(np.nanmax(t, axis=0))
        nxt = np.flatnonzero(time == (d + np.timedelta64(1, "D")).astype("datetime64[h]"))
        if nxt.size:  # next day's 00:00 holds this day's total
            tp.append(var["tp"][nxt[0]] * 1000.0)
        else:  # the last day: its 23:00 accumulation (one hour short)
            tp.append(var["tp"][np.flatnonzero(sel)[-1]] * 1000.0)
    year = int(str(days[0])[:4])
    target = Path(out) / f"era5land_{year}.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, dates=days, lat=lat, lon=lon, swvl1=np.stack(sw).astype(np.float32),
                 t2m=np.stack(tm).astype(np.float32), tmin=np.stack(tmin).astype(np.float32),
                 tmax=np.stack(tmax).astype(np.float32), tp=np.clip(np.stack(tp), 0, None).astype(np.float32))
    return target


def normalise_chirps(files: list[Path], out: str | Path, bbox: tuple[float, float, float, float] | None = None) -> Path:
    """Daily CHIRPS GeoTIFFs (``.tif`` or ``.tif.gz``) of one year -> ``chirps_<YYYY>.npz``, cropped to ``bbox``."""
    import rasterio
    import rasterio.windows

    dates, grids = [], []
    lat = lon = None
    for f in sorted(files, key=lambda p: p.name):
        m = CHIRPS_RE.match(f.name)
        if not m:
            continue
        path = f"/vsigzip/{f}" if f.name.endswith(".gz") else str(f)
        try:
            with rasterio.open(path) as ds:
                win = rasterio.windows.Window(0, 0, ds.width, ds.height)
                if bbox is not None:
                    win = rasterio.windows.from_bounds(*bbox, ds.transform).round_offsets().round_lengths()
                    win = win.intersection(rasterio.windows.Window(0, 0, ds.width, ds.height))
                data = ds.read(1, window=win, masked=True).astype(np.float32).filled(np.nan)
                tf = ds.window_transform(win)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{f}: cannot read CHIRPS GeoTIFF ({exc}); delete it so it is fetched again") from exc
        data[data < 0] = np.nan  # CHIRPS nodata is -9999
        if lat is None:
            lon = tf.c + tf.a * (np.arange(data.shape[1]) + 0.5)
            lat = tf.f + tf.e * (np.arange(data.shape[0]) + 0.5)
        elif data.shape != grids[0].shape:
            raise InputError(f"{f}: grid {data.shape} differs from the other days {grids[0].shape}")
        dates.append(np.datetime64(f"{m.group(1)}-{m.group(2)}-{m.group(3)}", "D"))
        grids.append(data)
    if not grids:
        raise InputError("no CHIRPS files to normalise (chirps-v2.0.YYYY.MM.DD.tif[.gz])")
    target = Path(out) / f"chirps_{str(dates[0])[:4]}.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, dates=np.array(dates), lat=lat, lon=lon, precip=np.stack(grids))
    return target


def normalise(raw: str | Path, out: str | Path, years: list[int], bbox: tuple[float, float, float, float] | None = None,
              fetch: Fetch | None = None) -> list[Path]:
    """Clean ``raw`` (bug 7), then write ``era5land_<Y>.npz`` and ``chirps_<Y>.npz`` for each year."""
    raw = Path(raw)
    clean_cache(raw, fetch)
    written = []
    for y in years:
        era5 = [p for p in raw.iterdir() if (m := ERA5_RE.match(p.name)) and int(m.group(1)) == y]
        chirps = [p for p in raw.iterdir() if (m := CHIRPS_RE.match(p.name)) and int(m.group(1)) == y]
        if not era5 and not chirps:
            raise InputError(f"{raw}: no ERA5-Land or CHIRPS files for {y} (era5land_{y}-MM.nc, chirps-v2.0.{y}.MM.DD.tif)")
        if era5:
            written.append(normalise_era5(era5, out))
        if chirps:
            written.append(normalise_chirps(chirps, out, bbox))
    return written


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """An npz fully in memory (eager), closed at once."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def cell_index(lat: np.ndarray, lon: np.ndarray, lon_x: float, lat_y: float) -> tuple[int, int] | None:
    """Nearest grid row/column to a centroid (bug 4: a point lookup, never a polygon mask); None outside."""
    r = int(np.abs(lat - lat_y).argmin())
    c = int(np.abs(lon - lon_x).argmin())
    dlat = abs(lat[1] - lat[0]) if lat.size > 1 else 1.0
    dlon = abs(lon[1] - lon[0]) if lon.size > 1 else 1.0
    if abs(lat[r] - lat_y) > dlat or abs(lon[c] - lon_x) > dlon:
        return None
    return r, c


def days_of(dates: np.ndarray) -> list[dt.date]:
    return [dt.date.fromisoformat(str(d)) for d in dates]


def refetcher(raw: str | Path, bbox: tuple[float, float, float, float], chirps_url: str, era5_client: object = None) -> Fetch:
    """The ``fetch(path)`` that :func:`clean_cache` calls for a removed leftover (``geohpc.sure2.fetch``)."""
    from geohpc.sure2.fetch import fetch_chirps, fetch_era5

    def fetch(path: Path) -> None:
        if m := ERA5_RE.match(path.name):
            fetch_era5(int(m.group(1)), int(m.group(2)), raw, bbox, era5_client)
        elif m := CHIRPS_RE.match(path.name):
            fetch_chirps(dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))), raw, bbox, chirps_url)

    return fetch


def _ints(text: str) -> list[int]:
    """``2021,2022`` or ``4-7`` (or both mixed) -> the numbers."""
    out: list[int] = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc weather", description="(download and) normalise ERA5-Land + CHIRPS, npz a year")
    p.add_argument("--raw", default="", help="folder of era5land_YYYY-MM.nc and chirps-v2.0.YYYY.MM.DD.tif[.gz] "
                                              "(default <out>/raw)")
    p.add_argument("--out", required=True, help="folder for era5land_YYYY.npz and chirps_YYYY.npz")
    p.add_argument("--years", required=True, help="comma list or range, e.g. 2018-2022")
    p.add_argument("--bbox", default="", help="lon0,lat0,lon1,lat1: the region to request and crop to")
    p.add_argument("--fields", default="", help="fields GeoJSON: the region is their bounds + 0.15 deg (without --bbox)")
    p.add_argument("--download", action="store_true", help="fetch missing months/days first (needs internet)")
    p.add_argument("--months", default="4-7", help="months to download, e.g. 4-7")
    p.add_argument("--chirps-url", default="", help="CHIRPS URL template with {year} {month} {day} (default: CHC server)")
    p.add_argument("--no-era5", action="store_true", help="download CHIRPS only")
    a = p.parse_args(argv)

    def _run() -> None:
        from geohpc.sure2 import fetch

        raw = Path(a.raw) if a.raw else Path(a.out) / "raw"
        try:
            years, months = _ints(a.years), _ints(a.months)
            bbox = tuple(float(v) for v in a.bbox.split(",")) if a.bbox else None
        except ValueError as exc:
            raise InputError(f"--years/--months/--bbox: not numbers ({exc}); e.g. --years 2018-2022 --bbox 25,44,27,46") from exc
        if bbox is None and a.fields:
            bbox = fetch.region(a.fields)
        if bbox is not None and len(bbox) != 4:
            raise InputError(f"--bbox {a.bbox}: give lon0,lat0,lon1,lat1")
        refetch = None
        if a.download:
            if bbox is None:
                raise InputError("--download needs the region: --bbox lon0,lat0,lon1,lat1 or --fields <fields.geojson>")
            refetch = refetcher(raw, bbox, a.chirps_url or fetch.CHIRPS_URL)  # type: ignore[arg-type]
            clean_cache(raw, refetch)
            got = fetch.ensure(raw, years, months, bbox, a.chirps_url or fetch.CHIRPS_URL,  # type: ignore[arg-type]
                               era5=not a.no_era5)
            n_era5 = sum(p.name.startswith("era5land_") for p in got)
            print(f"weather: fetched {n_era5} ERA5-Land month(s) and {len(got) - n_era5} CHIRPS day(s) into {raw}",
                  file=sys.stderr, flush=True)
        for path in normalise(raw, a.out, years, bbox, refetch):  # type: ignore[arg-type]
            print(path)

    return run_cli(_run, "geohpc weather")


if __name__ == "__main__":
    raise SystemExit(main())
