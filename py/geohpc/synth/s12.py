"""Small synthetic Sentinel-1/2 time series: per-date COGs and the STAC ItemCollection that lists them.

The scene is a grid of rectangular "fields" of six crop classes (wheat, maize, sunflower, rapeseed,
soybean, sugar beet), each with its own seasonal curve and peak spectrum in Sentinel-2 reflectance and
its own Sentinel-1 backscatter, plus moving clouds (flagged in SCL) and a corner that is cloudy on every
date. Items are larger than the AOI and 20 m bands are written at 20 m, so ``geohpc.download`` has to
read a window and resample. The ItemCollection lists items newest first, as STAC searches do, so
``geohpc.stack`` has to sort them. ``truth.tif`` holds the class of each AOI pixel (1..6, named in its
GEOHPC_CLASSES tag); ``train_points.geojson`` (WGS84 lon/lat) and ``val_points.geojson`` (EPSG:32635)
are labelled points with string labels drawn from it, never sharing a pixel, for the classification demo.

Usage::

    python -m geohpc synth-s12 --out DIR [--size 64] [--s2-dates 8] [--s1-dates 4]
                               [--train-points 600] [--val-points 300]
                               [--upload s3://bucket/prefix [--upload-if-up]] [--endpoint-url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geohpc.embed.layout import S2_BANDS
from geohpc.errors import ConfigError, ServiceError, run_cli
from geohpc.guards import one_line_errors, sweep_temporaries
from geohpc.synth.fields import square_grid, stratified_points, write_points_geojson
from geohpc.util import atomic_path, redact, write_json_atomic

CRS = "EPSG:32635"
ORIGIN = (600000.0, 5000000.0)  # upper-left of the AOI (UTM 35N)
MARGIN = 8  # 10 m pixels of item footprint around the AOI on each side
BANDS_20M = {"B05", "B06", "B07", "B8A", "B11", "B12", "SCL"}
CLASS_NAMES = ("wheat", "maize", "sunflower", "rapeseed", "soybean", "sugar_beet")
# Mean reflectance (x10000) per class for each band (B04 B02 B03 B08 B8A B05 B06 B07 B11 B12) at peak
# season, and at bare soil; each class has its own peak day of year and season width.
_PEAK = np.array([[300, 500, 600, 4200, 4000, 1200, 2800, 3600, 2200, 1200],
                  [500, 450, 650, 3200, 3100, 1400, 2500, 3000, 2600, 1600],
                  [350, 400, 550, 4800, 4600, 1100, 3200, 4200, 2000, 1000],
                  [900, 700, 1400, 3000, 3100, 1900, 2600, 2900, 2400, 1500],
                  [400, 350, 700, 3800, 3600, 1000, 2400, 3300, 1700, 900],
                  [250, 300, 500, 5200, 5000, 900, 3600, 4600, 1600, 700]], dtype=np.float32)
_BARE = np.array([1100, 800, 950, 1900, 2000, 1300, 1700, 1850, 3000, 2500], dtype=np.float32)
_PEAK_DOY = np.array([140.0, 215.0, 195.0, 120.0, 230.0, 205.0])
_WIDTH = np.array([30.0, 40.0, 28.0, 25.0, 28.0, 60.0])
_VV_BASE = np.array([0.08, 0.12, 0.10, 0.06, 0.07, 0.15], np.float32)
N_CLASSES = len(CLASS_NAMES)


def truth_map(size: int, seed: int = 0) -> np.ndarray:
    """Class raster (size, size) uint8 in 1..6: a grid of square fields, every class on some field."""
    return square_grid(size, max(4, size // 8), N_CLASSES, np.random.default_rng(seed))


def _season(doy: float) -> np.ndarray:
    return np.exp(-0.5 * ((doy - _PEAK_DOY) / _WIDTH) ** 2).astype(np.float32)  # (classes,)


def _write_cog(path: Path, data: np.ndarray, res: float, x0: float, y0: float, nodata: float | None) -> None:
    prof: dict[str, Any] = {"driver": "COG", "height": data.shape[0], "width": data.shape[1], "count": 1,
                            "dtype": data.dtype.name, "crs": CRS, "transform": from_origin(x0, y0, res, res),
                            "blocksize": 32, "compress": "deflate", "overviews": "none"}
    if nodata is not None:
        prof["nodata"] = nodata
    sweep_temporaries(path)  # a killed earlier run's temporary of this very file
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(data, 1)


def _footprint(size: int) -> tuple[float, float, int]:
    """Upper-left x, y and pixel count (10 m) of every item's footprint."""
    return ORIGIN[0] - MARGIN * 10, ORIGIN[1] + MARGIN * 10, size + 2 * MARGIN


def _item(item_id: str, collection: str, when: dt.datetime, assets: dict[str, str],
          props: dict[str, Any], size: int) -> dict[str, Any]:
    from pyproj import Transformer

    x0, y0, n = _footprint(size)
    x1, y1 = x0 + n * 10, y0 - n * 10
    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    ring = [list(tr.transform(x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "proj:epsg": 32635, **props},
        "assets": {k: {"href": v, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"]} for k, v in assets.items()},
        "links": [],
    }


def make_series(out: Path, size: int = 64, s2_dates: int = 8, s1_dates: int = 4, seed: int = 0,
                year: int = 2024, train_points: int = 0, val_points: int = 0) -> dict[str, Any]:
    """Write the synthetic COGs under ``out/cogs`` and return the ItemCollection (not yet saved).

    Parameters
    ----------
    out : Path
        Output folder; ``cogs/<item_id>/<band>.tif`` and ``truth.tif`` are written there.
    size : int
        AOI side in 10 m pixels (items cover ``size + 16`` pixels around it).
    s2_dates, s1_dates : int
        Sentinel-2 dates, and Sentinel-1 dates per orbit direction.
    seed : int
        Random seed (same seed, same files).
    year : int
        Calendar year of the series.
    train_points, val_points : int
        Labelled points to write (``train_points.geojson``, ``val_points.geojson``); 0 and 0 writes none.

    Returns
    -------
    dict
        A STAC ItemCollection whose asset hrefs are the local file paths.
    """
    if size < 8 or s2_dates < 1 or s1_dates < 1 or min(train_points, val_points) < 0:
        raise ConfigError("synth_s12 needs --size >= 8, --s2-dates >= 1, --s1-dates >= 1 and points >= 0")
    rng = np.random.default_rng(seed)
    x0, y0, n = _footprint(size)
    cls_aoi = truth_map(size, seed)
    cls = np.pad(cls_aoi, MARGIN, mode="edge").astype(np.int64) - 1  # (n, n) in 0..5
    yy, xx = np.mgrid[0:n, 0:n]
    features: list[dict[str, Any]] = []
    start = dt.datetime(year, 4, 1, 9, 30)
    for k in range(s2_dates):
        when = start + dt.timedelta(days=int(k * 150 / max(1, s2_dates - 1)) if s2_dates > 1 else 0)
        doy = when.timetuple().tm_yday
        w = _season(doy)[cls]  # (n, n) growth 0..1
        refl = _BARE[None, None, :] * (1 - w[..., None]) + _PEAK[cls] * w[..., None]
        refl = refl + rng.normal(0, 60, refl.shape)
        # A cloud blob that moves with the date, and a corner that is always cloudy.
        cy, cx = rng.uniform(0, n, 2)
        cloud = ((yy - cy) ** 2 + (xx - cx) ** 2) < (n / 5) ** 2
        cloud |= (yy >= n - MARGIN - 3) & (xx >= n - MARGIN - 3)
        refl[cloud] = 7000 + rng.normal(0, 300, (int(cloud.sum()), 10))
        scl = np.where(cloud, 9, np.where(cls == 3, 5, 4)).astype(np.uint8)
        refl16 = np.clip(refl, 1, 10000).astype(np.uint16)
        item_id = f"S2A_SYN_{when:%Y%m%d}"
        assets = {}
        for b, name in enumerate(S2_BANDS):
            assets[name] = str(_write_band(out, item_id, name, refl16[..., b], x0, y0, name in BANDS_20M, 0))
        assets["SCL"] = str(_write_band(out, item_id, "SCL", scl, x0, y0, True, 0))
        features.append(_item(item_id, "sentinel-2-l2a", when, assets, {"platform": "sentinel-2a",
                                                                         "eo:cloud_cover": 20.0}, size))
    for o, orbit in enumerate(("ascending", "descending")):
        for k in range(s1_dates):
            when = start + dt.timedelta(days=3 + o * 2 + int(k * 150 / max(1, s1_dates - 1)), hours=7 + 9 * o)
            w = _season(when.timetuple().tm_yday)[cls]
            vv = _VV_BASE[cls] * (1 + w) * rng.gamma(8, 1 / 8, (n, n))
            vh = vv * (0.2 + 0.15 * w) * rng.gamma(8, 1 / 8, (n, n))
            item_id = f"S1A_SYN_{when:%Y%m%dT%H%M}_{orbit[:3].upper()}"
            assets = {"vv": str(_write_band(out, item_id, "vv", vv.astype(np.float32), x0, y0, False, None)),
                      "vh": str(_write_band(out, item_id, "vh", vh.astype(np.float32), x0, y0, False, None))}
            features.append(_item(item_id, "sentinel-1-rtc", when, assets,
                                  {"platform": "sentinel-1a", "sat:orbit_state": orbit}, size))
    write_truth(out / "truth.tif", cls_aoi)
    if train_points or val_points:
        write_points(out, cls_aoi, train_points, val_points, seed)
    features.sort(key=lambda f: f["properties"]["datetime"], reverse=True)  # newest first, like STAC APIs
    return {"type": "FeatureCollection", "features": features}


def write_truth(path: Path, cls_aoi: np.ndarray) -> None:
    """The AOI's class raster (uint8, 0 = nodata) with a colour table and the class names as a tag."""
    from geohpc.classify.classes import CLASSES_TAG, classes_tag, colormap

    size = cls_aoi.shape[0]
    names = {k + 1: name for k, name in enumerate(CLASS_NAMES)}
    prof = {"driver": "GTiff", "height": size, "width": size, "count": 1, "dtype": "uint8", "crs": CRS,
            "nodata": 0, "transform": from_origin(ORIGIN[0], ORIGIN[1], 10, 10)}
    sweep_temporaries(path)  # a killed earlier run's temporary of this very file
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(cls_aoi, 1)
        dst.write_colormap(1, colormap(list(names)))
        dst.update_tags(**{CLASSES_TAG: classes_tag(names)})


def write_points(out: Path, cls_aoi: np.ndarray, n_train: int, n_val: int, seed: int = 0) -> dict[str, int]:
    """Labelled points at pixel centres, stratified by class, with string labels (the crop names).

    ``train_points.geojson`` is in WGS84 lon/lat and ``val_points.geojson`` in EPSG:32635, so the
    classification stages reproject. No two points share a pixel, and none falls in the corner that is
    cloudy on every date. A class with fewer free pixels than its share gets what there is.

    Returns
    -------
    dict
        Number of training and of validation points written.
    """
    from pyproj import Transformer

    rng = np.random.default_rng(seed + 1000)
    size = cls_aoi.shape[0]
    flat = cls_aoi.ravel()
    rows, cols = np.divmod(np.arange(flat.size), size)
    picked = (rows >= size - 3) & (cols >= size - 3)  # always cloudy: no Sentinel-2 there

    def coords(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ORIGIN[0] + (idx % size + 0.5) * 10, ORIGIN[1] - (idx // size + 0.5) * 10

    tr = stratified_points(flat, n_train, N_CLASSES, picked, rng)
    va = stratified_points(flat, n_val, N_CLASSES, picked, rng)
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(*coords(tr))
    write_points_geojson(out / "train_points.geojson", np.asarray(lon), np.asarray(lat),
                   [CLASS_NAMES[int(flat[i]) - 1] for i in tr], None, start=1)
    x, y = coords(va)
    write_points_geojson(out / "val_points.geojson", x, y, [CLASS_NAMES[int(flat[i]) - 1] for i in va], CRS,
                   start=100001)
    return {"train_points": len(tr), "val_points": len(va)}


def _write_band(out: Path, item_id: str, band: str, data: np.ndarray, x0: float, y0: float,
                coarse: bool, nodata: float | None) -> Path:
    path = out / "cogs" / item_id / f"{band}.tif"
    if coarse:  # 20 m band: keep every other pixel (nearest) -- the footprint stays the same
        _write_cog(path, np.ascontiguousarray(data[::2, ::2]), 20.0, x0, y0, nodata)
    else:
        _write_cog(path, np.ascontiguousarray(data), 10.0, x0, y0, nodata)
    return path.resolve()


def aoi_bbox(size: int) -> tuple[float, float, float, float]:
    """The AOI bbox (EPSG:32635) that matches :func:`make_series` of the same ``size``."""
    return ORIGIN[0], ORIGIN[1] - size * 10, ORIGIN[0] + size * 10, ORIGIN[1]


def upload(collection: dict[str, Any], out: Path, url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """Upload every asset to ``s3://bucket/prefix`` with boto3 and return the collection with s3:// hrefs."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not url.startswith("s3://"):
        raise ConfigError(f"--upload {url!r}: give s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    endpoint_url = endpoint_url or _endpoint_from_env()
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    try:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        for feat in collection["features"]:
            for asset in feat["assets"].values():
                rel = Path(asset["href"]).relative_to((out / "cogs").resolve())
                key = f"{prefix.strip('/')}/{rel}".lstrip("/")
                s3.upload_file(asset["href"], bucket, key)
                asset["href"] = f"s3://{bucket}/{key}"
    except (BotoCoreError, ClientError) as exc:
        raise ServiceError(f"upload to {url} failed: {exc}; check AWS_S3_ENDPOINT and the AWS keys") from exc
    return collection


def endpoint_up(url: str | None, timeout: float = 2.0) -> bool:
    """True when something accepts a TCP connection at the endpoint URL's host:port."""
    import socket
    from urllib.parse import urlsplit

    if not url:
        return False
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _endpoint_from_env() -> str | None:
    host = os.environ.get("AWS_S3_ENDPOINT", "")
    if not host:
        return None
    if "://" in host:
        return host
    scheme = "http" if os.environ.get("AWS_HTTPS", "YES").upper() in ("NO", "FALSE", "0") else "https"
    return f"{scheme}://{host}"


def main(argv: list[str] | None = None) -> int:
    """CLI: write the synthetic series and ``items.json`` under ``--out``; print the AOI bbox."""
    ap = argparse.ArgumentParser(prog="python -m geohpc synth-s12", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (cogs/, truth.tif, items.json)")
    ap.add_argument("--size", type=int, default=64, help="AOI side in 10 m pixels (default 64)")
    ap.add_argument("--s2-dates", type=int, default=8, help="Sentinel-2 dates (default 8)")
    ap.add_argument("--s1-dates", type=int, default=4, help="Sentinel-1 dates per orbit (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-points", type=int, default=600, help="labelled training points (default 600)")
    ap.add_argument("--val-points", type=int, default=300, help="held-out labelled points (default 300)")
    ap.add_argument("--upload", default="", help="s3://bucket/prefix: upload the COGs, hrefs become s3://")
    ap.add_argument("--upload-if-up", action="store_true",
                    help="upload only when the S3 endpoint answers; else keep file hrefs (the demo's fallback)")
    ap.add_argument("--endpoint-url", default=None, help="S3 endpoint (default from AWS_S3_ENDPOINT)")
    args = ap.parse_args(argv)

    def work() -> int:
        with one_line_errors(args.out, fix="check --out (writable, free space)", fresh_dirs=[args.out]):
            if args.out.exists() and not args.out.is_dir():
                raise ConfigError(f"{args.out}: --out is a file; give a folder for the series")
            for name in ("items.json", "truth.tif", "train_points.geojson", "val_points.geojson"):
                sweep_temporaries(args.out / name)
            coll = make_series(args.out, args.size, args.s2_dates, args.s1_dates, args.seed,
                               train_points=args.train_points, val_points=args.val_points)
            if args.upload and args.upload_if_up and not endpoint_up(args.endpoint_url or _endpoint_from_env()):
                print("geohpc.synth_s12: no S3 endpoint answers (AWS_S3_ENDPOINT); items point at local files",
                      file=sys.stderr)
            elif args.upload:
                coll = upload(coll, args.out, args.upload, args.endpoint_url)
            write_json_atomic(args.out / "items.json", coll)  # last: the series is complete
        bbox = ",".join(f"{v:.0f}" for v in aoi_bbox(args.size))
        print(redact(json.dumps({"items": str(args.out / "items.json"), "bbox": bbox, "crs": CRS,
                          "n_items": len(coll["features"]), "classes": list(CLASS_NAMES),
                          "train_points": str(args.out / "train_points.geojson"),
                          "val_points": str(args.out / "val_points.geojson")})))
        return 0

    return run_cli(work, "geohpc.synth_s12")


if __name__ == "__main__":
    sys.exit(main())
