"""Sentinel-2 L2A for Sure2: STAC items, the baseline 04.00 offset, SCL masking, EVI per field pixel.

Reflectance = (DN + BOA_ADD_OFFSET) / 10000, with offset -1000 for processing baseline >= 04.00
(from 2022-01-25) unless the item says the offset was already applied (``earthsearch:boa_offset_applied``;
SURE2-NOTES: some catalogues misreport it, so the item's own words are used, never the date alone).
SCL classes dropped (hard mask, SURE2-NOTES): 0 no data, 1 saturated, 3 cloud shadow, 8-10 cloud/cirrus,
11 snow. EVI = 2.5 (NIR - Red) / (NIR + 6 Red - 7.5 Blue + 1).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geohpc.errors import InputError
from geohpc.sure2.fields import Field

MASKED_SCL = (0, 1, 3, 8, 9, 10, 11)
BAND_KEYS = {"B02": ("blue", "B02"), "B04": ("red", "B04"), "B08": ("nir", "B08"), "SCL": ("scl", "SCL")}


@dataclass(frozen=True)
class Item:
    """One acquisition: its date, the DN offset to add, the band hrefs (GDAL paths) and bbox."""

    id: str
    date: dt.date
    offset: int
    hrefs: dict[str, str]
    bbox: tuple[float, float, float, float]


def _gdal_path(href: str, base: Path) -> str:
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    if href.startswith(("/", "/vsi")):
        return href
    return str((base / href).resolve())


def dn_offset(props: dict) -> int:
    """The DN offset to add before /10000: -1000 from baseline 04.00 unless already applied."""
    baseline = str(props.get("s2:processing_baseline", "")) or "00.00"
    try:
        new = float(baseline) >= 4.0
    except ValueError:
        new = False
    if not new:
        day = str(props.get("datetime", ""))[:10]
        new = bool(day) and day >= "2022-01-25" and "s2:processing_baseline" not in props
    applied = bool(props.get("earthsearch:boa_offset_applied", False))
    return -1000 if new and not applied else 0


def load_items(stac: str | Path) -> list[Item]:
    """A STAC ItemCollection (file path) -> items sorted by date; relative hrefs are taken from its folder."""
    p = Path(stac)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the STAC ItemCollection ({exc})") from exc
    items = []
    for feat in doc.get("features", []):
        assets = feat.get("assets", {})
        hrefs = {}
        for band, keys in BAND_KEYS.items():
            key = next((k for k in keys if k in assets), None)
            if key is None:
                raise InputError(f"{p}: item {feat.get('id')} has no {band} asset (keys {'/'.join(keys)})")
            hrefs[band] = _gdal_path(assets[key]["href"], p.parent)
        props = feat.get("properties", {})
        items.append(Item(str(feat.get("id")), dt.date.fromisoformat(props["datetime"][:10]), dn_offset(props),
                          hrefs, tuple(feat["bbox"])))  # type: ignore[arg-type]
    if not items:
        raise InputError(f"{p}: no items in the STAC ItemCollection")
    return sorted(items, key=lambda i: (i.date, i.id))


def evi(blue: np.ndarray, red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """EVI from reflectances (float), NaN where the denominator vanishes."""
    den = nir + 6 * red - 7.5 * blue + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(den) > 1e-6, 2.5 * (nir - red) / den, np.nan)


OPEN_MAX = 128  # datasets kept open per process: fields of one tile share their acquisitions' files
_OPEN: OrderedDict[str, object] = OrderedDict()


def _open(href: str):  # type: ignore[no-untyped-def]
    """A per-process cache of open datasets (one process per worker: never shared between threads, bug 3)."""
    import rasterio

    ds = _OPEN.pop(href, None)
    if ds is None:
        try:
            ds = rasterio.open(href)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{href}: cannot read ({exc})") from exc
        while len(_OPEN) >= OPEN_MAX:
            _OPEN.popitem(last=False)[1].close()  # type: ignore[attr-defined]
    _OPEN[href] = ds
    return ds


@dataclass
class FieldStack:
    """Per-pixel EVI of one field over its acquisitions: dates (T,), evi (T,P), clear (T,P)."""

    dates: list[dt.date]
    evi: np.ndarray
    clear: np.ndarray

    def field_series(self, min_clear: float = 0.5) -> tuple[list[dt.date], np.ndarray]:
        """Dates with at least ``min_clear`` of the field clear, and the mean EVI of the clear pixels."""
        share = self.clear.mean(axis=1) if self.clear.size else np.zeros(len(self.dates))
        keep = np.flatnonzero(share >= min_clear)
        vals = np.array([np.nanmean(np.where(self.clear[t], self.evi[t], np.nan)) for t in keep])
        return [self.dates[t] for t in keep], vals


def read_field(field: Field, items: list[Item], start: dt.date | None = None, end: dt.date | None = None) -> FieldStack:
    """Read B02/B04/B08/SCL inside the field polygon from every item covering it in [start, end]."""
    import rasterio.enums
    import rasterio.features
    import rasterio.windows

    x0, y0, x1, y1 = field.bounds
    dates, evis, clears = [], [], []
    mask = None
    for it in items:
        if (start and it.date < start) or (end and it.date > end):
            continue
        if not (it.bbox[0] <= x0 and it.bbox[1] <= y0 and it.bbox[2] >= x1 and it.bbox[3] >= y1):
            continue
        bands: dict[str, np.ndarray] = {}
        ref = _open(it.hrefs["B04"])  # 10 m; SCL (20 m in real L2A) is read onto the same pixels
        win = rasterio.windows.from_bounds(x0, y0, x1, y1, ref.transform).round_offsets().round_lengths()
        win = win.intersection(rasterio.windows.Window(0, 0, ref.width, ref.height))
        area = rasterio.windows.bounds(win, ref.transform)
        for band in ("B04", "B02", "B08", "SCL"):
            ds = _open(it.hrefs[band])
            bwin = win if ds.transform == ref.transform else rasterio.windows.from_bounds(*area, ds.transform)
            try:
                bands[band] = ds.read(1, window=bwin, out_shape=(int(win.height), int(win.width)),
                                      resampling=rasterio.enums.Resampling.nearest)
            except rasterio.errors.RasterioIOError as exc:
                raise InputError(f"{it.hrefs[band]}: cannot read ({exc})") from exc
        if mask is None or mask.shape != bands["B04"].shape:
            mask = ~rasterio.features.geometry_mask([field.geometry], bands["B04"].shape,
                                                    ref.window_transform(win), all_touched=False)
        assert mask is not None
        scl = bands["SCL"][mask]
        refl = {b: (bands[b][mask].astype(np.float32) + it.offset) / 10000.0 for b in ("B02", "B04", "B08")}
        ok = ~np.isin(scl, MASKED_SCL) & (bands["B04"][mask] > 0)
        dates.append(it.date)
        evis.append(evi(refl["B02"], refl["B04"], refl["B08"]))
        clears.append(ok)
    if not dates:
        return FieldStack([], np.zeros((0, 0)), np.zeros((0, 0), bool))
    return FieldStack(dates, np.stack(evis), np.stack(clears))
