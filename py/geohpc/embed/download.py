"""Fetch Sentinel-1/2 items of a STAC ItemCollection onto a fixed AOI grid, reading only the AOI window.

For each item (one manifest line = one item id) every needed band is read through a WarpedVRT on the
AOI grid (so GDAL fetches only the blocks that cover the AOI, from http(s), ``s3://`` through
``/vsis3/`` with boto3's credentials, or a local file), written as a tiled GeoTIFF, re-opened and
checked; then ``_DONE.json`` marks the item done, so a rerun fetches only what is missing.

Sentinel-2 items give B04 B02 B03 B08 B8A B05 B06 B07 B11 B12 (TESSERA's order) and SCL; asset keys
may be band names (Planetary Computer) or common names (earth-search: red, blue, ..., scl).
Sentinel-1 items give VV and VH; their orbit direction comes from ``sat:orbit_state``.
An item missing a band is an error, or with ``--on-missing skip`` a reported skip (``_SKIPPED.json``).
Reads are retried with exponential backoff on top of GDAL's own HTTP retries; hrefs are redacted in
every message (signed URLs and SAS tokens never reach a log).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT

from geohpc.embed.layout import (
    DONE_MARKER,
    S1_BANDS,
    S2_BANDS,
    S2_MASK_BAND,
    SKIP_MARKER,
    Grid,
    grid_from_bbox,
    parse_bbox,
)
from geohpc.errors import ConfigError, InputError, ServiceError, run_cli
from geohpc.guards import io_error, one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.raster_io import check_written as raster_written
from geohpc.raster_io import iter_block_windows, verify_raster
from geohpc.util import atomic_path, redact, write_json_atomic

# Common-name aliases (earth-search) of the Sentinel-2 L2A bands, and lower-case S1 keys.
S2_ALIASES = {"B04": "red", "B02": "blue", "B03": "green", "B08": "nir", "B8A": "nir08", "B05": "rededge1",
              "B06": "rededge2", "B07": "rededge3", "B11": "swir16", "B12": "swir22", "SCL": "scl"}
GDAL_HTTP = {"GDAL_HTTP_TIMEOUT": "30", "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "2",
             "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF",
             "GDAL_HTTP_MULTIRANGE": "YES", "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES"}


def install_log_redaction() -> None:
    """Redact every log record of this process (GDAL's warnings quote the full URL, signature included)."""
    old = logging.getLogRecordFactory()
    if getattr(old, "_geohpc_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old(*args, **kwargs)
        try:
            record.msg = redact(record.getMessage())
            record.args = None
        except Exception:  # noqa: BLE001 - a log record must never break the download
            pass
        return record

    factory._geohpc_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def item_kind(item: dict[str, Any]) -> str:
    """``"s2"`` or ``"s1"`` from the collection name or the asset keys; InputError otherwise."""
    coll = str(item.get("collection", "")).lower()
    keys = {k.lower() for k in item.get("assets", {})}
    if coll.startswith("sentinel-2") or {"b04", "red"} & keys:
        return "s2"
    if coll.startswith("sentinel-1") or {"vv", "vh"} & keys:
        return "s1"
    raise InputError(f"item {item.get('id')!r}: neither Sentinel-2 nor Sentinel-1 (collection {coll!r}); "
                     "remove it from the ItemCollection")


def band_hrefs(item: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Map each needed band to its asset href; also the list of bands the item lacks."""
    assets = {k.lower(): v for k, v in item.get("assets", {}).items()}
    kind = item_kind(item)
    wanted = [*S2_BANDS, S2_MASK_BAND] if kind == "s2" else list(S1_BANDS)
    found: dict[str, str] = {}
    missing: list[str] = []
    for band in wanted:
        asset = assets.get(band.lower()) or assets.get(S2_ALIASES.get(band, "~"))
        if asset and asset.get("href"):
            found[band] = str(asset["href"])
        else:
            missing.append(band)
    return found, missing


def gdal_path(href: str) -> str:
    """The path GDAL opens: ``s3://b/k`` -> ``/vsis3/b/k``; http(s) -> ``/vsicurl/``; files unchanged."""
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("file://"):
        return href[7:]
    return href


def export_boto3_credentials() -> None:
    """Put boto3's resolved credentials (env, ~/.aws, instance role) where GDAL's /vsis3/ looks.

    rasterio.Env refuses AWS options, so they go to ``os.environ``; values already set win. With no
    credentials anywhere nothing is set: for a public bucket export AWS_NO_SIGN_REQUEST=YES yourself.
    """
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return
    try:
        import boto3

        creds = boto3.Session().get_credentials()
    except Exception:  # noqa: BLE001 - no boto3 config at all: GDAL may still read public buckets
        creds = None
    if creds is None:
        return
    frozen = creds.get_frozen_credentials()
    os.environ["AWS_ACCESS_KEY_ID"] = frozen.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
    if frozen.token:
        os.environ["AWS_SESSION_TOKEN"] = frozen.token


def _read_to(href: str, band: str, grid: Grid, out: Path, block: int) -> bool:
    """Read ``href`` onto ``grid`` window by window into a tiled GeoTIFF at ``out`` (atomic); True when
    the band has any data pixel on the AOI."""
    resampling = Resampling.nearest if band == S2_MASK_BAND else Resampling.bilinear
    transform = Affine(*grid.transform)
    with rasterio.open(gdal_path(href)) as src:
        if src.crs is None:
            raise InputError(f"{redact(href)}: no CRS; it cannot be placed on the AOI grid")
        nodata = src.nodata if src.nodata is not None else (0 if src.dtypes[0] != "float32" else float("nan"))
        with WarpedVRT(src, crs=grid.crs, transform=transform, width=grid.width, height=grid.height,
                       resampling=resampling, src_nodata=nodata, nodata=nodata) as vrt:
            prof = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
                    "dtype": src.dtypes[0], "crs": grid.crs, "transform": transform, "nodata": nodata,
                    "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
            sweep_temporaries(out)  # a killed earlier attempt of this band
            with atomic_path(out) as tmp:
                with rasterio.open(tmp, "w", **prof) as dst:
                    for win in iter_block_windows(grid.height, grid.width, block):
                        dst.write(vrt.read(1, window=win), 1, window=win)
                raster_written(tmp, out)  # a full disk shows only at close
                return check_written(tmp, grid, prof["dtype"])


def check_written(path: Path, grid: Grid, dtype: str) -> bool:
    """Re-open a written band and check its grid, type and that every block decodes; True when any pixel
    holds data (not nodata)."""
    data = False
    with rasterio.open(path) as ds:
        if (ds.width, ds.height, ds.dtypes[0]) != (grid.width, grid.height, dtype):
            raise ServiceError(f"{path}: written file has the wrong shape/type; disk full? rerun the item")
        if not np.allclose(tuple(ds.transform)[:6], Affine(*grid.transform)[:6]):
            raise ServiceError(f"{path}: written file is off the AOI grid; rerun the item")
        for _, win in ds.block_windows(1):
            a = ds.read(1, window=win, masked=True)
            data = data or bool(a.count())
    return data


def fetch_band(href: str, band: str, grid: Grid, out: Path, retries: int = 4, backoff: float = 2.0,
               block: int = 1024) -> tuple[int, bool]:
    """Fetch one band with retries and exponential backoff; return (attempts used, any data on the AOI).

    Raises
    ------
    ServiceError
        After ``retries`` failed attempts (404, timeout, unreadable), naming the redacted href.
    """
    last = ""
    for attempt in range(1, retries + 1):
        try:
            return attempt, _read_to(href, band, grid, out, block)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EISDIR, errno.ENOTDIR):
                raise io_error(exc, out, "check the output folder") from None  # retrying cannot help
            last = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except RasterioError as exc:
            last = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if attempt < retries:
            delay = backoff * 2 ** (attempt - 1)
            print(f"geohpc.download: {band} attempt {attempt}/{retries} failed ({last}); retry in {delay:.1f}s",
                  file=sys.stderr, flush=True)
            time.sleep(delay)
    raise ServiceError(f"{redact(href)}: band {band} failed after {retries} attempts ({last}); "
                       "check the URL/credentials (an expired signature or SAS token gives 403/404) and rerun")


def load_items(path: Path) -> dict[str, dict[str, Any]]:
    """Items of a STAC ItemCollection JSON file (or a plain list of items) by id."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: ItemCollection not found (save the STAC search result there)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); save the STAC search as JSON") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); save the STAC search result as a JSON text file") from None
    feats = data.get("features") if isinstance(data, dict) else data
    if not isinstance(feats, list) or not feats:
        raise InputError(f"{path}: no items (expected a FeatureCollection with features)")
    items: dict[str, dict[str, Any]] = {}
    for f in feats:
        if not isinstance(f, dict) or "id" not in f:
            raise InputError(f"{path}: a feature has no id; is this a STAC ItemCollection?")
        items[str(f["id"])] = f
    return items


def _finished(dest: Path) -> bool:
    """True when ``dest``'s done marker reads and every band it lists is a whole raster (else refetch)."""
    try:
        bands = json.loads((dest / DONE_MARKER).read_text())["bands"]
        return bool(bands) and all(verify_raster(dest / b["file"]) is None for b in bands.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def download_item(item: dict[str, Any], grid: Grid, out_dir: Path, *, on_missing: str = "error",
                  retries: int = 4, backoff: float = 2.0, allow_empty: bool = False) -> str:
    """Download one item's bands into ``out_dir/<id>/``; return ``"done"``, ``"skipped"`` or ``"exists"``."""
    item_id = str(item["id"])
    if "/" in item_id or item_id.startswith("."):
        raise InputError(f"item id {item_id!r} is not a safe folder name")
    dest = out_dir / item_id
    if (dest / DONE_MARKER).exists() and _finished(dest):
        return "exists"
    hrefs, missing = band_hrefs(item)
    kind = item_kind(item)
    meta: dict[str, Any] = {"id": item_id, "kind": kind, "datetime": item.get("properties", {}).get("datetime"),
                            "grid": grid.to_json()}
    if kind == "s1":
        orbit = str(item.get("properties", {}).get("sat:orbit_state", "")).lower()
        if orbit not in ("ascending", "descending"):
            raise InputError(f"item {item_id}: sat:orbit_state is {orbit!r}, need ascending or descending")
        meta["orbit"] = orbit
    if not meta["datetime"]:
        raise InputError(f"item {item_id}: no properties.datetime; the stack needs each item's date")
    if missing:
        msg = f"item {item_id}: missing band(s) {', '.join(missing)}"
        if on_missing != "skip":
            raise InputError(f"{msg}; drop the item or pass --on-missing skip")
        write_json_atomic(dest / SKIP_MARKER, {**meta, "reason": msg})
        print(f"geohpc.download: SKIP {msg}", file=sys.stderr, flush=True)
        return "skipped"
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    meta["bands"] = {}
    written: list[Path] = []
    any_data = False
    try:
        for band, href in hrefs.items():
            target = dest / f"{band}.tif"
            attempts, data = fetch_band(href, band, grid, target, retries, backoff)
            written.append(target)
            any_data = any_data or data
            meta["bands"][band] = {"file": target.name, "source": redact(href), "attempts": attempts}
        if not any_data and not allow_empty:
            msg = f"item {item_id}: no band has a single data pixel on the AOI (the item does not cover it)"
            if on_missing != "skip":
                raise InputError(f"{msg}; drop the item, pass --on-missing skip, or --allow-empty to keep it")
            for p in written:
                p.unlink(missing_ok=True)
            write_json_atomic(dest / SKIP_MARKER, {**{k: v for k, v in meta.items() if k != "bands"}, "reason": msg})
            print(f"geohpc.download: SKIP {msg}", file=sys.stderr, flush=True)
            return "skipped"
        sweep_temporaries(dest / DONE_MARKER)
        write_json_atomic(dest / DONE_MARKER, meta)
    except BaseException:
        # an item is all its bands or nothing: the rerun fetches it whole again anyway
        for p in written:
            p.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise
    return "done"


def download(items_json: Path, grid: Grid, out_dir: Path, ids: list[str] | None = None, *,
             on_missing: str = "error", retries: int = 4, backoff: float = 2.0,
             http_timeout: int = 30, allow_empty: bool = False) -> dict[str, str]:
    """Download ``ids`` (all items when None) of ``items_json`` onto ``grid``; return id -> status."""
    refuse_overwrite([items_json], [out_dir], fix="give another output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file, not a folder; give the output folder for the items")
    items = load_items(items_json)
    chosen = list(items) if not ids else ids
    for i in chosen:
        if i not in items:
            raise InputError(f"{items_json}: no item {i!r}; rebuild the manifest from this ItemCollection")
    export_boto3_credentials()
    install_log_redaction()
    env = {**GDAL_HTTP, "GDAL_HTTP_TIMEOUT": str(http_timeout), "GDAL_HTTP_MAX_RETRY": str(max(0, retries - 1))}
    result: dict[str, str] = {}
    with rasterio.Env(**env):
        for i in chosen:
            result[i] = download_item(items[i], grid, out_dir, on_missing=on_missing, retries=retries,
                                      backoff=backoff, allow_empty=allow_empty)
            print(f"geohpc.download: {i} {result[i]}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc download --items items.json --bbox ... --out DIR [--item ID ...]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc download", description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=Path, required=True, help="STAC ItemCollection JSON")
    ap.add_argument("--bbox", required=True, help="AOI minx,miny,maxx,maxy in --crs")
    ap.add_argument("--crs", default="EPSG:32635", help="AOI CRS (default EPSG:32635)")
    ap.add_argument("--res", type=float, default=10.0, help="pixel size in CRS units (default 10)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per item)")
    ap.add_argument("--item", action="append", default=[], help="item id (repeatable; default: all items)")
    ap.add_argument("--on-missing", choices=("error", "skip"), default="error",
                    help="an item lacking a band: error (default) or a reported skip")
    ap.add_argument("--retries", type=int, default=4, help="attempts per band (default 4)")
    ap.add_argument("--backoff", type=float, default=2.0, help="first retry delay in s, doubled each time")
    ap.add_argument("--allow-empty", action="store_true",
                    help="keep an item with no data pixel on the AOI (default: error, or a skip with --on-missing skip)")
    ap.add_argument("--http-timeout", type=int, default=30, help="GDAL_HTTP_TIMEOUT in s (default 30)")
    args = ap.parse_args(argv)

    def work() -> int:
        try:
            grid = grid_from_bbox(parse_bbox(args.bbox), args.crs, args.res)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        with one_line_errors(args.out, fix="check the output folder and free space"):
            res = download(args.items, grid, args.out, args.item or None, on_missing=args.on_missing,
                           retries=max(1, args.retries), backoff=args.backoff, http_timeout=args.http_timeout,
                           allow_empty=args.allow_empty)
        print(json.dumps(res))
        return 0

    return run_cli(work, "geohpc.download")


if __name__ == "__main__":
    sys.exit(main())
