"""Weather downloads for Sure2 (a login node or a site with internet): CHIRPS over HTTP, ERA5-Land with cdsapi.

- CHIRPS v2.0 daily: ``CHIRPS_URL`` (the CHC server's ``.tif.gz``; any ``{year} {month} {day}`` template,
  ``.tif`` or ``.tif.gz``), fetched to ``<name>_download``, cropped to the region and written as
  ``chirps-v2.0.<Y>.<M>.<D>.tif`` through a temporary and a rename.
- ERA5-Land: ONE regional request a month (``reanalysis-era5-land``: swvl1, 2 m temperature, total
  precipitation, every hour of every day of the month, ``area`` = the region) through ``cdsapi.Client``
  (>= 0.7 speaks the CDS retrieve API v1; URL and key from ``CDSAPI_URL``/``CDSAPI_KEY`` or ``~/.cdsapirc``,
  never from the site file). The result goes to ``era5land_<Y>-<M>.nc_download``; a zip (the CDS splits
  instantaneous and accumulated variables into two NetCDF files) is merged into one NetCDF4; the file is
  opened and checked before the rename to ``era5land_<Y>-<M>.nc``.
A killed download leaves only a ``*_download`` file, which :func:`geohpc.sure2.weather.clean_cache` removes
and fetches again (bug 7), as it does for zero-byte files.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from geohpc.errors import InputError
from geohpc.util import atomic_path, redact

CHIRPS_URL = ("https://data.chc.ucsb.edu/products/CHIRPS-2.0/global_daily/tifs/p05/{year}/"
              "chirps-v2.0.{year}.{month:02d}.{day:02d}.tif.gz")
ERA5_DATASET = "reanalysis-era5-land"
ERA5_VARIABLES = ["volumetric_soil_water_layer_1", "2m_temperature", "total_precipitation"]
Bbox = tuple[float, float, float, float]  # lon0, lat0, lon1, lat1


def http_get(url: str, target: Path, timeout: float = 60) -> Path:
    """GET ``url`` into ``target`` (streamed); InputError naming the URL (redacted) on any failure."""
    import requests

    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            if r.status_code != 200:
                raise InputError(f"{redact(url)}: HTTP {r.status_code} (not published yet, or a wrong URL template?)")
            with open(target, "wb") as fh:
                for chunk in r.iter_content(1 << 20):
                    fh.write(chunk)
    except requests.RequestException as exc:
        raise InputError(f"{redact(url)}: download failed ({type(exc).__name__}); rerun the weather stage") from exc
    return target


def fetch_chirps(day: dt.date, raw: str | Path, bbox: Bbox | None, url_template: str = CHIRPS_URL) -> Path:
    """One CHIRPS day -> ``raw/chirps-v2.0.<Y>.<M>.<D>.tif`` cropped to ``bbox`` (as delivered without one)."""
    import rasterio
    import rasterio.windows

    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    url = url_template.format(year=day.year, month=day.month, day=day.day)
    gz = url.endswith(".gz")
    target = raw / f"chirps-v2.0.{day:%Y.%m.%d}.tif"
    part = raw / f"{target.name}{'.gz' if gz else ''}_download"
    http_get(url, part)
    try:
        if gz:  # check the gzip stream whole before GDAL reads it
            with gzip.open(part) as fh:
                while fh.read(1 << 20):
                    pass
        with rasterio.open(f"/vsigzip/{part}" if gz else str(part)) as src:
            win = rasterio.windows.Window(0, 0, src.width, src.height)
            if bbox is not None:
                win = rasterio.windows.from_bounds(*bbox, src.transform).round_offsets().round_lengths()
                win = win.intersection(rasterio.windows.Window(0, 0, src.width, src.height))
            data = src.read(1, window=win)
            profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1,
                       "dtype": data.dtype.name, "crs": src.crs, "transform": src.window_transform(win),
                       "nodata": src.nodata, "compress": "deflate"}
        with atomic_path(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data, 1)
    except (OSError, EOFError, rasterio.errors.RasterioIOError, rasterio.errors.WindowError) as exc:
        raise InputError(f"{redact(url)}: not a whole CHIRPS GeoTIFF ({exc}); rerun the weather stage") from exc
    finally:
        part.unlink(missing_ok=True)
    return target


def era5_request(year: int, month: int, bbox: Bbox) -> dict[str, Any]:
    """The one regional request of a month (every day, every hour, the region only)."""
    lon0, lat0, lon1, lat1 = bbox
    days = calendar.monthrange(year, month)[1]
    return {"variable": list(ERA5_VARIABLES), "year": [str(year)], "month": [f"{month:02d}"],
            "day": [f"{d:02d}" for d in range(1, days + 1)], "time": [f"{h:02d}:00" for h in range(24)],
            "area": [round(lat1, 2), round(lon0, 2), round(lat0, 2), round(lon1, 2)],  # N, W, S, E
            "data_format": "netcdf", "download_format": "unarchived"}


def merge_zip(part: Path, target: Path) -> None:
    """A CDS zip of NetCDF files (instant + accum) -> one NetCDF4 at ``target`` with every variable."""
    import netCDF4

    work = part.with_name(part.name + ".d")
    shutil.rmtree(work, ignore_errors=True)
    try:
        with zipfile.ZipFile(part) as zf:
            members = [m for m in zf.namelist() if m.endswith(".nc")]
            zf.extractall(work, members)
        with netCDF4.Dataset(target, "w", format="NETCDF4") as dst:
            for m in sorted(members):
                with netCDF4.Dataset(work / m) as src:
                    for d, dim in src.dimensions.items():
                        if d not in dst.dimensions:
                            dst.createDimension(d, len(dim))
                    for name, v in src.variables.items():
                        if name in dst.variables:
                            continue
                        nv = dst.createVariable(name, v.dtype, v.dimensions, zlib=True)
                        nv.setncatts({k: v.getncattr(k) for k in v.ncattrs() if k != "_FillValue"})
                        nv[:] = v[:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_era5(path: Path, what: str) -> None:
    """The delivered file opens as NetCDF and holds swvl1, t2m and tp with a time axis."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            missing = [v for v in ("swvl1", "t2m", "tp") if v not in ds.variables]
            timed = "valid_time" in ds.variables or "time" in ds.variables
    except OSError as exc:
        raise InputError(f"{what}: the CDS delivered a file that is not NetCDF ({exc}); rerun the weather stage") from exc
    if missing or not timed:
        raise InputError(f"{what}: the delivered NetCDF lacks {', '.join(missing) or 'a time axis'} (check the request)")


def fetch_era5(year: int, month: int, raw: str | Path, bbox: Bbox, client: Any = None) -> Path:
    """One month of ERA5-Land for the region -> ``raw/era5land_<Y>-<M>.nc`` (checked, then renamed)."""
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    target = raw / f"era5land_{year}-{month:02d}.nc"
    part = raw / f"{target.name}_download"
    if client is None:
        try:
            import cdsapi

            client = cdsapi.Client(quiet=True, progress=False)
        except Exception as exc:  # cdsapi raises a bare Exception for a missing ~/.cdsapirc
            raise InputError(f"ERA5-Land: no CDS API access ({exc}); set CDSAPI_URL and CDSAPI_KEY or write ~/.cdsapirc") from exc
    try:
        client.retrieve(ERA5_DATASET, era5_request(year, month, bbox), str(part))
    except Exception as exc:  # requests/multiurl/datastores errors: one line naming the month
        raise InputError(f"ERA5-Land {year}-{month:02d}: CDS request failed ({redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)})") from exc
    try:
        with atomic_path(target) as tmp:
            if zipfile.is_zipfile(part):
                tmp.unlink()
                merge_zip(part, tmp)
            else:
                os.replace(part, tmp)
            _check_era5(tmp, f"ERA5-Land {year}-{month:02d}")  # else InputError and nothing is renamed
    finally:
        part.unlink(missing_ok=True)
    return target


def ensure(raw: str | Path, years: list[int], months: list[int], bbox: Bbox, chirps_url: str = CHIRPS_URL,
           era5_client: Any = None, era5: bool = True, chirps: bool = True) -> list[Path]:
    """Fetch every missing month of ERA5-Land and day of CHIRPS of ``years`` x ``months``; the fetched paths."""
    raw = Path(raw)
    got = []
    for y in years:
        for m in months:
            if era5 and not (raw / f"era5land_{y}-{m:02d}.nc").is_file():
                got.append(fetch_era5(y, m, raw, bbox, era5_client))
            for d in range(1, calendar.monthrange(y, m)[1] + 1) if chirps else ():
                name = f"chirps-v2.0.{y}.{m:02d}.{d:02d}.tif"
                if not (raw / name).is_file() and not (raw / f"{name}.gz").is_file():
                    got.append(fetch_chirps(dt.date(y, m, d), raw, bbox, chirps_url))
    return got


def region(fields_path: str | Path, margin: float = 0.15) -> Bbox:
    """The fields' bounds plus ``margin`` degrees (over one ERA5-Land cell), for requests and crops."""
    from geohpc.sure2.fields import load_fields

    b = [f.bounds for f in load_fields(fields_path)]
    return (min(x[0] for x in b) - margin, min(x[1] for x in b) - margin,
            max(x[2] for x in b) + margin, max(x[3] for x in b) + margin)
