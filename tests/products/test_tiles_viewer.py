"""The index.html viewer: Leaflet copied next to the tiles (no CDN), drawn by headless Chromium."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.products.tiles import build
from geohpc.products.tiles.viewer import asset_dir
from PIL import Image
from tiles_helpers import write_raster

COLOURS = {1: (230, 25, 75, 255), 2: (60, 180, 75, 255), 3: (0, 130, 200, 255)}
BACKGROUND = (220, 220, 220)  # #dcdcdc in the page's CSS


def class_tiles(tmp_path: Path) -> Path:
    y, x = np.mgrid[0:200, 0:300]
    cls = (1 + (x // 100)).astype(np.uint8)
    src = write_raster(tmp_path / "landcover.tif", cls, nodata=0)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, COLOURS)
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(10, 15), processes=1, name="Land cover 2026")
    return out


def test_viewer_page_is_self_contained(tmp_path: Path) -> None:
    if asset_dir() is None:
        pytest.skip("Leaflet not installed: run make setup (npm ci --prefix viewer)")
    out = class_tiles(tmp_path)
    page = (out / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN
    assert (out / "leaflet.js").stat().st_size > 100_000 and (out / "leaflet.css").is_file()
    assert "Land cover 2026" in page and "fitBounds" in page and "zoomend" in page
    assert '"maxzoom": 15' in page


@pytest.mark.browser
def test_viewer_draws_tiles_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    if asset_dir() is None:
        pytest.skip("Leaflet not installed: run make setup (npm ci --prefix viewer)")
    out = class_tiles(tmp_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shot = tmp_path / "viewer.png"
    try:
        run = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,700", "--virtual-time-budget=8000",
             f"--screenshot={shot}", f"http://127.0.0.1:{server.server_port}/index.html"],
            capture_output=True, text=True, timeout=90,
        )
    finally:
        server.shutdown()
    assert shot.is_file(), run.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # keep a copy for people to look at
    shutil.copy(shot, tmp_path / "tiles" / "viewer-screenshot.png")

    def share(rgb: tuple[int, ...]) -> float:
        return float((np.abs(img - np.array(rgb[:3])).sum(axis=-1) <= 6).mean())

    for value, colour in COLOURS.items():
        assert share(colour) > 0.02, f"class {value} colour {colour} not drawn"
    assert share(BACKGROUND) > 0.05  # the plain background around the data
