"""``index.html`` next to the tiles: a Leaflet map of the layer over a plain background, no CDN.

Leaflet comes from the npm registry (``viewer/package.json`` at the repository root, installed by
``make setup`` with ``npm ci --prefix viewer``); its ``leaflet.js`` and ``leaflet.css`` are copied
next to the tiles, because compute nodes and many users' laptops on a cluster have no internet.
The page works from ``file://`` and from any static web server.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
from pathlib import Path

from geohpc.products.tiles.core import Settings, make_readable
from geohpc.util import REPO, write_text_atomic

ASSETS = ("leaflet.js", "leaflet.css")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="leaflet.css">
<script src="leaflet.js"></script>
<style>
  html, body {{ margin: 0; height: 100%; font-family: sans-serif; }}
  #map {{ position: absolute; inset: 0; background: #dcdcdc; }}
  #info {{ position: absolute; top: 10px; left: 50px; z-index: 1000; background: rgba(255,255,255,0.9);
          padding: 4px 10px; border-radius: 4px; font-size: 14px; }}
</style>
</head>
<body>
<div id="map"></div>
<div id="info"><b id="layer-name">{title}</b> &middot; zoom <span id="zoom">?</span></div>
<script>
var CONFIG = {config};
var map = L.map("map", {{ minZoom: 0, maxZoom: CONFIG.maxzoom + 2, zoomSnap: 1 }});
L.tileLayer("{{z}}/{{x}}/{{y}}." + CONFIG.format, {{
  minZoom: 0, maxZoom: CONFIG.maxzoom + 2, minNativeZoom: CONFIG.minzoom, maxNativeZoom: CONFIG.maxzoom,
  bounds: L.latLngBounds(CONFIG.bounds), noWrap: true, attribution: CONFIG.name
}}).addTo(map);
function showZoom() {{ document.getElementById("zoom").textContent = map.getZoom(); }}
map.on("zoomend", showZoom);
map.fitBounds(CONFIG.bounds);
map.setMinZoom(Math.min(CONFIG.minzoom, map.getZoom()));
showZoom();
</script>
</body>
</html>
"""


def asset_dir() -> Path | None:
    """Where Leaflet's built files are: ``$GEOHPC_VIEWER_ASSETS``, else ``<repo>/viewer/node_modules``."""
    candidates = []
    if os.environ.get("GEOHPC_VIEWER_ASSETS"):
        candidates.append(Path(os.environ["GEOHPC_VIEWER_ASSETS"]))
    if os.environ.get("GEOHPC_REPO"):
        candidates.append(Path(os.environ["GEOHPC_REPO"]) / "viewer/node_modules/leaflet/dist")
    candidates.append(REPO / "viewer/node_modules/leaflet/dist")
    for c in candidates:
        if all((c / a).is_file() for a in ASSETS):
            return c
    return None


def write_viewer(out_dir: Path, settings: Settings) -> Path:
    """Write ``index.html`` (and copy Leaflet) into ``out_dir``; returns the page's path.

    When Leaflet is not installed the page is still written and a warning names the fix
    (``make setup``), since the tiles themselves are the product.
    """
    w, s, e, n = settings.bounds
    config = {"name": settings.name, "format": settings.fmt, "minzoom": settings.minzoom,
              "maxzoom": settings.maxzoom, "bounds": [[s, w], [n, e]]}
    src = asset_dir()
    if src is None:
        print("geohpc.tiles: warning: Leaflet not found (viewer/node_modules/leaflet/dist); run 'make setup' "
              "(npm ci --prefix viewer) and rerun with --finalize to get a working index.html", file=sys.stderr)
    else:
        for a in ASSETS:
            dst = out_dir / a
            tmp = out_dir / f".{a}.{os.getpid()}.tmp"
            shutil.copyfile(src / a, tmp)
            os.replace(tmp, dst)
    page = out_dir / "index.html"
    write_text_atomic(page, PAGE.format(title=html.escape(settings.name), config=json.dumps(config).replace("<", "\\u003c")))
    make_readable(page)
    return page
