"""A synthetic Sure2 county: corn fields with known planting dates, not-emerged patches, clouds and weather.

Everything the Sure2 stages read, in the formats the providers deliver (see ``geohpc.sure2``):

- ``fields.geojson``: EPSG:4326 polygons with ``field_id``, ``county``, ``year``;
- ``s2/<tile>/<date>/{B02,B04,B08,SCL}.tif`` (uint16 DN, tiled GeoTIFFs, EPSG:4326) and
  ``stac/items.json`` (a STAC ItemCollection; items from 2022-01-25 say processing baseline 04.00 and
  carry the -1000 DN offset, ``earthsearch:boa_offset_applied`` false);
- ``weather/raw/era5land_<YYYY>-<MM>.nc`` (NetCDF4 as the CDS delivers it: hourly ``swvl1``, ``t2m`` [K],
  ``tp`` [m] accumulated from 00 UTC, ``valid_time``) and ``weather/raw/chirps-v2.0.<YYYY>.<MM>.<DD>.tif``;
- ``truth.csv``: per field-year the planting and emergence dates, the not-emerged share, the drought severity.

Fields sit in a few clusters (one S2 "tile" each) spread over several ERA5-Land and CHIRPS cells, so
weather differs between fields. Emergence follows the same thermal-time rule the engine inverts
(daily-mean GDD, base 4 C, 110 C.d; ``geohpc.sure2.planting``); canopy cover after emergence is a logistic.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geohpc.errors import run_cli
from geohpc.util import atomic_path, write_json_atomic, write_text_atomic

BASELINE_04_FROM = dt.date(2022, 1, 25)
ERA5_STEP, CHIRPS_STEP, S2_STEP = 0.1, 0.05, 0.0001
# the region (degrees): ERA5-Land points and CHIRPS cells around the clusters
LON0, LAT1 = 25.9, 45.3  # west edge, north edge
ERA5_W, ERA5_H = 7, 5
CHIRPS_W, CHIRPS_H = 12, 8
FIELD_PX, GAP_PX = 16, 4
SOIL = np.array([0.07, 0.11, 0.19])  # B02, B04, B08 reflectance of bare soil
VEG = np.array([0.03, 0.035, 0.42])  # full maize canopy
WET, DROUGHT = 2021, 2022


@dataclass(frozen=True)
class County:
    """Paths of a made county."""

    root: Path
    fields: Path
    stac: Path
    raw: Path
    truth: Path
    years: tuple[int, ...]
    clim_years: tuple[int, ...]


def _daily_weather(rng: np.random.Generator, year: int, days: list[dt.date]) -> dict[str, np.ndarray]:
    """Daily weather on the ERA5 grid (+ CHIRPS rain on its grid): t2m mean degC, swvl1, rain mm."""
    lon = LON0 + ERA5_STEP * np.arange(ERA5_W)
    east = (lon - LON0) / (ERA5_STEP * (ERA5_W - 1))  # 0 west .. 1 east
    if year == DROUGHT:
        sev = np.broadcast_to(0.15 + 0.85 * east, (ERA5_H, ERA5_W))
    elif year == WET:
        sev = np.full((ERA5_H, ERA5_W), -0.6)
    else:
        sev = rng.normal(0.0, 0.15, (ERA5_H, ERA5_W))
    doy = np.array([d.timetuple().tm_yday for d in days], float)[:, None, None]
    warm = {DROUGHT: 1.5, WET: -1.0}.get(year, rng.normal(0, 0.5))
    t2m = 11.0 + 0.18 * (doy - 105) + warm + 1.5 * sev + rng.normal(0, 1.2, (len(days), 1, 1))
    sm = (0.32 - 0.0008 * (doy - 91)) * (1 - 0.35 * sev) + rng.normal(0, 0.008, (len(days), ERA5_H, ERA5_W))
    wet_day = rng.random((len(days), 1, 1)) < 0.45
    rain = wet_day * rng.gamma(1.2, 3.7, (len(days), ERA5_H, ERA5_W)) * np.clip(1 - 0.8 * sev, 0.05, None)
    return {"t2m": t2m + np.zeros((1, ERA5_H, ERA5_W)), "swvl1": np.clip(sm, 0.05, 0.5), "rain": rain, "sev": sev}


def _chirps_from(rain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CHIRPS cells: the rain of the nearest ERA5 point, with a little independent noise."""
    lat = LAT1 - CHIRPS_STEP * (np.arange(CHIRPS_H) + 0.5)
    lon = LON0 + CHIRPS_STEP * (np.arange(CHIRPS_W) + 0.5)
    r = np.clip(np.rint((LAT1 - lat) / ERA5_STEP), 0, ERA5_H - 1).astype(int)
    c = np.clip(np.rint((lon - LON0) / ERA5_STEP), 0, ERA5_W - 1).astype(int)
    return (rain[:, r][:, :, c] * rng.lognormal(0, 0.1, (rain.shape[0], CHIRPS_H, CHIRPS_W))).astype(np.float32)


def _write_era5_month(path: Path, days: list[dt.date], w: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """One month of hourly ERA5-Land as the CDS writes it (tp accumulated from 00 UTC, 00:00 = yesterday's total)."""
    import netCDF4

    hours = np.arange(24)
    t = w["t2m"][:, None] + 5.0 * np.sin((hours - 9) / 24 * 2 * np.pi)[None, :, None, None]
    sm = np.repeat(w["swvl1"][:, None], 24, axis=1)
    # rain falls evenly over the day; acc at hour h (h=1..23) = h/24 of today's, at 00 = all of yesterday's
    frac = hours / 24.0
    acc = w["rain"][:, None] * frac[None, :, None, None]
    acc[:, 0] = np.concatenate([w["prev_rain"][None], w["rain"][:-1]])  # 00:00 holds the previous day's total
    n = len(days) * 24
    epoch = dt.datetime(1970, 1, 1)
    secs = np.array([(dt.datetime.combine(d, dt.time()) - epoch).total_seconds() + 3600 * h for d in days for h in hours])
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.createDimension("valid_time", n)
        ds.createDimension("latitude", ERA5_H)
        ds.createDimension("longitude", ERA5_W)
        v = ds.createVariable("valid_time", "i8", ("valid_time",))
        v.units, v.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
        v[:] = secs.astype(np.int64)
        ds.createVariable("latitude", "f8", ("latitude",))[:] = LAT1 - ERA5_STEP * np.arange(ERA5_H)
        ds.createVariable("longitude", "f8", ("longitude",))[:] = LON0 + ERA5_STEP * np.arange(ERA5_W)
        for name, data, units in (("swvl1", sm, "m**3 m**-3"), ("t2m", t + 273.15, "K"), ("tp", acc / 1000.0, "m")):
            var = ds.createVariable(name, "f4", ("valid_time", "latitude", "longitude"), zlib=True)
            var.units = units
            var[:] = data.reshape(n, ERA5_H, ERA5_W).astype(np.float32)
        ds.GRIB_centre, ds.Conventions = "ecmf", "CF-1.7"
    del rng


def _write_tif(path: Path, data: np.ndarray, transform: object, dtype: str, nodata: float, cog: bool = False) -> None:
    import rasterio

    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": dtype,
               "crs": "EPSG:4326", "transform": transform, "nodata": nodata, "compress": "deflate",
               "tiled": True, "blockxsize": 16, "blockysize": 16}
    if cog:  # Sentinel-2 bands: Cloud Optimized GeoTIFFs, as Earth Search serves them
        profile = {k: v for k, v in profile.items() if k not in ("tiled", "blockxsize", "blockysize")}
        profile.update({"driver": "COG", "blocksize": 32, "overviews": "none"})
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(data.astype(dtype), 1)


def _season(year: int, start: tuple[int, int], end: tuple[int, int], step: int) -> list[dt.date]:
    d, last, out = dt.date(year, *start), dt.date(year, *end), []
    while d <= last:
        out.append(d)
        d += dt.timedelta(days=step)
    return out


def _emergence(planting: dt.date, days: list[dt.date], t2m: np.ndarray) -> dt.date:
    """First day e with sum of daily GDD (base 4, cap 30) over [planting, e) >= 110 (the engine's rule)."""
    gdd = np.clip(np.minimum(t2m, 30.0) - 4.0, 0, None)
    k = days.index(planting)
    total = np.cumsum(gdd[k:])
    return days[k + int(np.searchsorted(total, 110.0)) + 1]


def make_county(out: str | Path, *, fields_per_cluster: int = 10, clusters: int = 4, years: tuple[int, ...] = (2021, 2022),
                clim_years: tuple[int, ...] = (2018, 2019, 2020, 2021, 2022), cloud: float = 0.3, revisit: int = 5,
                seed: int = 0) -> County:
    """Write a synthetic county under ``out`` and return its paths.

    ``cloud`` is the chance that a cloud cell (8 x 8 S2 pixels) is cloudy on an acquisition date;
    ``revisit`` the days between acquisitions. ``years`` get fields and imagery; ``clim_years`` (a superset)
    get weather, so the climatology has a baseline. 2021 is the wet year, 2022 the drought year.
    """
    rng = np.random.default_rng(seed)
    root = Path(out)
    raw = root / "weather" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    weather_days: dict[int, list[dt.date]] = {}
    weather: dict[int, dict[str, np.ndarray]] = {}
    all_years = tuple(sorted(set(clim_years) | set(years)))
    for y in all_years:
        days = _season(y, (4, 1), (7, 31), 1)
        w = _daily_weather(rng, y, days)
        w["prev_rain"] = w["rain"][0] * 0.5
        weather_days[y], weather[y] = days, w
        chirps = _chirps_from(w["rain"], rng)
        import rasterio.transform

        ctr = rasterio.transform.from_origin(LON0, LAT1, CHIRPS_STEP, CHIRPS_STEP)
        for i, d in enumerate(days):
            _write_tif(raw / f"chirps-v2.0.{d:%Y.%m.%d}.tif", chirps[i], ctr, "float32", -9999.0)
        for m in sorted({d.month for d in days}):
            idx = [i for i, d in enumerate(days) if d.month == m]
            mw = {k: w[k][idx] for k in ("t2m", "swvl1", "rain")}
            mw["prev_rain"] = w["rain"][idx[0] - 1] if idx[0] > 0 else w["prev_rain"]
            _write_era5_month(raw / f"era5land_{y}-{m:02d}.nc", [days[i] for i in idx], mw, rng)
    feats, truth, items = _fields_and_imagery(root, rng, years, weather_days, weather, clusters, fields_per_cluster,
                                              cloud, revisit)
    fields = root / "fields.geojson"
    write_text_atomic(fields, json.dumps({"type": "FeatureCollection", "features": feats}))
    stac = root / "stac" / "items.json"
    write_json_atomic(stac, {"type": "FeatureCollection", "features": items})
    truth_path = root / "truth.csv"
    with atomic_path(truth_path) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(truth[0]))
        wr.writeheader()
        wr.writerows(truth)
    return County(root, fields, stac, raw, truth_path, tuple(years), all_years)


def _fields_and_imagery(root: Path, rng: np.random.Generator, years: tuple[int, ...], wdays: dict[int, list[dt.date]],
                        weather: dict[int, dict[str, np.ndarray]], clusters: int, per: int, cloud: float,
                        revisit: int) -> tuple[list[dict], list[dict], list[dict]]:
    import rasterio.transform

    ncol = 5
    nrow = -(-per // ncol)
    h, w = nrow * (FIELD_PX + GAP_PX) + GAP_PX, ncol * (FIELD_PX + GAP_PX) + GAP_PX
    feats: list[dict] = []
    truth: list[dict] = []
    items: list[dict] = []
    for k in range(clusters):
        # cluster k centred on ERA5 point column 1 + 1.5k-ish, alternating rows: several weather cells
        x0 = LON0 + ERA5_STEP * (1 + (k * (ERA5_W - 2)) // max(clusters, 1)) - w * S2_STEP / 2
        y1 = LAT1 - ERA5_STEP * (1 + k % 3) + h * S2_STEP / 2
        tf = rasterio.transform.from_origin(x0, y1, S2_STEP, S2_STEP)
        county = "Buzau" if k < (clusters + 1) // 2 else "Braila"
        tile = f"35T{'LKMNPQ'[k % 6]}K"
        for y in years:
            days = wdays[y]
            cover = np.zeros((len(days), h, w))  # canopy fraction per day and pixel
            for j in range(per):
                r0 = GAP_PX + (j // ncol) * (FIELD_PX + GAP_PX)
                c0 = GAP_PX + (j % ncol) * (FIELD_PX + GAP_PX)
                fid = f"F{y}_{k:02d}{j:03d}"
                planting = dt.date(y, 4, 10) + dt.timedelta(days=int(rng.integers(0, 36)))
                lon_c = x0 + (c0 + FIELD_PX / 2) * S2_STEP
                lat_c = y1 - (r0 + FIELD_PX / 2) * S2_STEP
                er = int(round((LAT1 - lat_c) / ERA5_STEP))
                ec = int(round((lon_c - LON0) / ERA5_STEP))
                emerg = _emergence(planting, days, weather[y]["t2m"][:, er, ec])
                bad_rows = int(round(FIELD_PX * (rng.uniform(0.3, 0.6) if rng.random() < 0.35 else rng.uniform(0, 0.15))))
                tday = np.array([(d - emerg).days for d in days], float)
                amp = rng.uniform(0.75, 0.95)
                lg = 1 / (1 + np.exp(-(tday - 15.0) / 4.0))
                f = np.clip((lg - 1 / (1 + np.exp(15.0 / 4.0))) / (1 - 1 / (1 + np.exp(15.0 / 4.0))), 0, None) * amp
                cover[:, r0 + bad_rows:r0 + FIELD_PX, c0:c0 + FIELD_PX] = f[:, None, None]
                x_a, x_b = x0 + c0 * S2_STEP, x0 + (c0 + FIELD_PX) * S2_STEP
                y_a, y_b = y1 - (r0 + FIELD_PX) * S2_STEP, y1 - r0 * S2_STEP
                ring = [[x_a, y_a], [x_b, y_a], [x_b, y_b], [x_a, y_b], [x_a, y_a]]
                feats.append({"type": "Feature", "properties": {"field_id": fid, "county": county, "year": y},
                              "geometry": {"type": "Polygon", "coordinates": [ring]}})
                sev = float(weather[y]["sev"][er, ec])
                truth.append({"field_id": fid, "year": y, "county": county, "planting_date": planting.isoformat(),
                              "emergence_date": emerg.isoformat(), "not_emerged_share": round(bad_rows / FIELD_PX, 4),
                              "claim_true": bad_rows / FIELD_PX >= 0.3, "drought_severity": round(sev, 3),
                              "drought_true": sev > 0.5, "lon": lon_c, "lat": lat_c})
            soil = SOIL[:, None, None] * rng.uniform(0.9, 1.1, (1, h, w))
            for i, d in enumerate(days):
                if d.month < 4 or d > dt.date(y, 7, 15) or (d - days[0]).days % revisit:
                    continue
                items.append(_acquisition(root, rng, tile, d, tf, cover[i], soil, cloud, x0, y1, w, h))
    return feats, truth, items


def _acquisition(root: Path, rng: np.random.Generator, tile: str, d: dt.date, tf: object, cover: np.ndarray,
                 soil: np.ndarray, cloud: float, x0: float, y1: float, w: int, h: int) -> dict:
    """One S2 L2A acquisition: B02/B04/B08 DN and SCL, clouds on 8 px cells, and its STAC item."""
    refl = (1 - cover)[None] * soil + cover[None] * VEG[:, None, None] + rng.normal(0, 0.004, (3, h, w))
    cells = rng.random((-(-h // 8), -(-w // 8))) < cloud
    cl = np.kron(cells, np.ones((8, 8), bool))[:h, :w]
    shadow = np.roll(cl, 3, axis=1) & ~cl
    scl = np.where(cover > 0.3, 4, 5).astype(np.uint16)
    scl[cl], scl[shadow] = 9, 3
    refl[:, cl] = np.array([0.38, 0.40, 0.45])[:, None] + rng.normal(0, 0.02, (3, int(cl.sum())))
    refl[:, shadow] *= 0.35
    new = d >= BASELINE_04_FROM
    dn = np.clip(np.rint(refl * 10000) + (1000 if new else 0), 1, 65535)
    folder = root / "s2" / tile / d.isoformat()
    assets = {}
    for b, (key, data) in enumerate((("blue", dn[0]), ("red", dn[1]), ("nir", dn[2]), ("scl", scl))):
        name = ("B02", "B04", "B08", "SCL")[b]
        _write_tif(folder / f"{name}.tif", data, tf, "uint16", 0, cog=True)
        assets[key] = {"href": f"../s2/{tile}/{d.isoformat()}/{name}.tif", "eo:bands": [{"name": name}],
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"]}
    x1, y0 = x0 + w * S2_STEP, y1 - h * S2_STEP
    return {"type": "Feature", "stac_version": "1.0.0", "id": f"S2B_{tile}_{d:%Y%m%d}_0_L2A",
            "collection": "sentinel-2-l2a", "bbox": [x0, y0, x1, y1],
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "properties": {"datetime": f"{d.isoformat()}T09:30:00Z", "s2:processing_baseline": "04.00" if new else "02.09",
                           "earthsearch:boa_offset_applied": False, "eo:cloud_cover": round(100 * float(cl.mean()), 1),
                           "s2:mgrs_tile": tile},
            "assets": assets, "links": []}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc synth-sure2", description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write the county into")
    p.add_argument("--clusters", type=int, default=4)
    p.add_argument("--fields-per-cluster", type=int, default=10)
    p.add_argument("--cloud", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    def _run() -> None:
        c = make_county(a.out, clusters=a.clusters, fields_per_cluster=a.fields_per_cluster, cloud=a.cloud, seed=a.seed)
        print(json.dumps({k: str(v) for k, v in c.__dict__.items()}))

    return run_cli(_run, "geohpc synth-sure2")


if __name__ == "__main__":
    raise SystemExit(main())
