"""``index.html`` next to the tiles: a Leaflet map of the layer with legend, opacity, base map and values, no CDN.

Leaflet and the PMTiles reader come from the npm registry (``viewer/package.json`` at the repository
root, installed by ``make setup`` with ``npm ci --prefix viewer``); the page's own script and style
are ``viewer/geohpc-viewer.{js,css}``. All of them are copied next to the tiles, because compute
nodes and many users' laptops on a cluster have no internet.

The page works from ``file://`` and from any static web server: the ``z/x/y`` tiles, a legend (class
names and colours from the colour table and the ``GEOHPC_CLASSES`` tag) or colour bars (continuous
modes), an opacity slider, and a base map when one answers (else the plain background). Two things
need the page served over http, because browsers refuse ``fetch`` on ``file://``: the PMTiles archive
(``index.html?pmtiles``, which also needs Range requests: ``python -m geohpc tiles-serve``)
and the value under a click (read from the base-zoom tile's pixel, whatever its PNG mode).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from geohpc.guards import sweep_temporaries
from geohpc.products.tiles.core import Settings, make_readable
from geohpc.util import REPO, write_text_atomic

# name next to the tiles -> path under <repo>/viewer
ASSETS = {
    "leaflet.js": "node_modules/leaflet/dist/leaflet.js",
    "leaflet.css": "node_modules/leaflet/dist/leaflet.css",
    "pmtiles.js": "node_modules/pmtiles/dist/pmtiles.js",
    "geohpc-viewer.js": "geohpc-viewer.js",
    "geohpc-viewer.css": "geohpc-viewer.css",
}
DEFAULT_BASEMAP = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
MAX_LEGEND = 256
PADDING = (0, 0, 0, 255)  # GDAL fills unset colour-table entries with opaque black

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="leaflet.css">
<link rel="stylesheet" href="geohpc-viewer.css">
<script src="leaflet.js"></script>
<script src="pmtiles.js"></script>
</head>
<body>
<div id="map"></div>
<div id="panel">
  <div id="layer-name">{title}</div>
  <div class="small">zoom <span id="zoom">?</span> &middot; <span id="source"></span></div>
  <div class="small" id="status"></div>
  <div class="small" id="note"></div>
  <label class="row" for="opacity">opacity <input type="range" id="opacity" min="0" max="100" value="100">
    <span id="opacity-value"></span></label>
  <label class="row"><input type="checkbox" id="basemap" disabled> base map</label>
  <div id="legend"></div>
  <div id="value" class="small">click the map for the class or value under the pointer</div>
</div>
<script>window.GEOHPC_TILES = {config};</script>
<script src="geohpc-viewer.js"></script>
</body>
</html>
"""


def _viewer_roots() -> list[Path]:
    roots = []
    if os.environ.get("GEOHPC_VIEWER_ASSETS"):  # a folder holding the files flat, as copied next to tiles
        roots.append(Path(os.environ["GEOHPC_VIEWER_ASSETS"]))
    if os.environ.get("GEOHPC_REPO"):
        roots.append(Path(os.environ["GEOHPC_REPO"]) / "viewer")
    roots.append(REPO / "viewer")
    return roots


def find_assets() -> dict[str, Path] | None:
    """The viewer's files (name next to the tiles -> source path), or None when any is missing."""
    for root in _viewer_roots():
        flat = {a: root / a for a in ASSETS}
        if all(p.is_file() for p in flat.values()):
            return flat
        nested = {a: root / rel for a, rel in ASSETS.items()}
        if all(p.is_file() for p in nested.values()):
            return nested
    return None


def legend(render: dict[str, Any]) -> list[dict[str, Any]]:
    """Legend rows ``{"value", "name", "color": [r, g, b, a]}`` of a class map, in code order.

    With a ``GEOHPC_CLASSES`` tag: its codes and names. Without: the colour table's entries, less
    transparent ones, the nodata value and GDAL's opaque-black padding, named ``class <code>``.
    """
    if render.get("mode") != "classes":
        return []
    from geohpc.products.tiles.paint import DEFAULT_PALETTE

    colors = {int(k): tuple(int(c) for c in v) for k, v in (render.get("colors") or {}).items()}
    labels = {int(k): str(v) for k, v in (render.get("labels") or {}).items()}
    mk = render.get("mask") or {}
    nodata = mk.get("value") if mk.get("kind") == "nodata" else None

    def colour(v: int) -> tuple[int, ...]:
        if colors:
            return colors.get(v, (0, 0, 0, 0))
        return (*DEFAULT_PALETTE[v % len(DEFAULT_PALETTE)], 255)

    codes = sorted(labels) if labels else [v for v, c in sorted(colors.items()) if c[3] > 0 and c != PADDING]
    codes = [v for v in codes if nodata is None or v != nodata][:MAX_LEGEND]
    return [{"value": v, "name": labels.get(v, f"class {v}"), "color": list(colour(v))} for v in codes]


def colour_bars(render: dict[str, Any]) -> list[dict[str, Any]]:
    """One bar per drawn channel of a continuous layer: ``{"channel", "label", "lo", "hi", "clipped"}``.

    ``lo``/``hi`` are the data values drawn as 0 and 255 (the fitted percentiles; 0-255 for Byte
    ``rgb``); ``clipped`` says values beyond them were clamped (stretched modes).
    """
    mode, bands = render.get("mode"), render.get("bands") or []
    if mode == "classes" or not bands:
        return []
    grey = mode in ("rgb", "percentile") and len(bands) == 1
    channels = ["grey"] if grey else ["red", "green", "blue"]
    pct = render.get("percentiles") or [2.0, 98.0]
    bars = []
    for i, ch in enumerate(channels):
        if mode == "pca":
            share = (render.get("explained") or [0, 0, 0])[i]
            label = f"PC{i + 1} of {len(bands)} bands ({share:.0%} of variance)"
        else:
            label = f"band {bands[i]}"
        if mode == "rgb":
            bars.append({"channel": ch, "label": label, "lo": 0.0, "hi": 255.0, "clipped": False})
        else:
            label += f", p{pct[0]:g}-p{pct[1]:g}"
            bars.append({"channel": ch, "label": label, "lo": float(render["lo"][i]),
                         "hi": float(render["hi"][i]), "clipped": True})
    return bars


def page_config(out_dir: Path, settings: Settings, basemap: str | None) -> dict[str, Any]:
    """What the page's script reads (``window.GEOHPC_TILES``)."""
    w, s, e, n = settings.bounds
    archive = out_dir / f"{settings.name}.pmtiles"
    base = None
    if basemap:
        attribution = OSM_ATTRIBUTION if "openstreetmap" in basemap else "base map: " + html.escape(basemap)
        base = {"url": basemap, "attribution": attribution}
    return {"name": settings.name, "format": settings.fmt, "minzoom": settings.minzoom,
            "maxzoom": settings.maxzoom, "bounds": [[s, w], [n, e]], "mode": settings.render.get("mode"),
            "legend": legend(settings.render), "bars": colour_bars(settings.render),
            "pmtiles": archive.name if archive.is_file() else None, "basemap": base}


def write_viewer(out_dir: Path, settings: Settings, basemap: str | None = DEFAULT_BASEMAP) -> Path:
    """Write ``index.html`` (and copy its scripts and styles) into ``out_dir``; returns the page's path.

    Parameters
    ----------
    out_dir : Path
        The tile folder.
    settings : Settings
        The job's settings (zooms, bounds, fitted rendering for the legend).
    basemap : str or None
        XYZ URL template of the base map shown under the layer when it answers; None for none.

    When the assets are not installed the page is still written and a warning names the fix
    (``make setup``), since the tiles themselves are the product.
    """
    src = find_assets()
    if src is None:
        print("geohpc.tiles: warning: viewer assets not found (viewer/node_modules: leaflet, pmtiles); run "
              "'make setup' (npm ci --prefix viewer) and rerun with --finalize to get a working index.html",
              file=sys.stderr)
    else:
        for name, path in src.items():
            sweep_temporaries(out_dir / name)
            tmp = out_dir / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, out_dir / name)
            make_readable(out_dir / name)
    config = json.dumps(page_config(out_dir, settings, basemap)).replace("<", "\\u003c")
    page = out_dir / "index.html"
    sweep_temporaries(page)
    write_text_atomic(page, PAGE.format(title=html.escape(settings.name), config=config))
    make_readable(page)
    return page
