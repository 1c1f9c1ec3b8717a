"""The index.html viewer, driven in headless Chromium as a user would: real clicks, real servers.

Chromium runs with ``--remote-debugging-pipe`` (the DevTools protocol over two pipes, no extra
package): the tests open the page over a loopback http server (Range requests, for the PMTiles
archive), from ``file://``, click the map and the opacity slider with real mouse events, read the DOM
and take screenshots. The base map is a loopback tile server that answers (online) or a closed port
(offline).
"""

from __future__ import annotations

import base64
import fcntl
import http.server
import io
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from geohpc.products.tiles import build
from geohpc.products.tiles.serve import serve
from geohpc.products.tiles.viewer import ASSETS, colour_bars, find_assets, legend
from PIL import Image
from tiles_helpers import write_raster

COLOURS = {1: (230, 25, 75, 255), 2: (60, 180, 75, 255), 3: (0, 130, 200, 255)}
NAMES = {1: "wheat", 2: "forest", 3: "open water"}
BACKGROUND = (220, 220, 220)  # #dcdcdc in the page's CSS
BASEMAP = (255, 0, 255)  # the loopback base map's one colour


# ---------------------------------------------------------------- Chromium over the DevTools pipe

class Chromium:
    """Headless Chromium driven through ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies)."""

    def __init__(self, profile: Path) -> None:
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe, "no chromium on PATH: apt-get install chromium (make test installs it)"
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        cmd_r, out_w = (self._high_fd(cmd_r), self._high_fd(out_w))  # never 3 or 4 themselves
        self.log = profile.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-', exe, "--headless",
                 "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--remote-debugging-pipe",
                 f"--user-data-dir={profile}", "--window-size=900,700", "about:blank"],
                pass_fds=(cmd_r, out_w), stdout=log, stderr=log)
        os.close(cmd_r)
        os.close(out_w)
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=900, height=700, deviceScaleFactor=1, mobile=False,
                  session=True)

    @staticmethod
    def _high_fd(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._out_r, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                buf += chunk
                *msgs, buf = buf.split(b"\0")
                for m in msgs:
                    msg = json.loads(m)
                    if "id" in msg:
                        self._replies.put(msg)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            try:
                reply = self._replies.get(timeout=30)
            except queue.Empty:
                raise AssertionError(f"chromium did not answer {method}: {self.log.read_text()[-2000:]}") from None
            if reply["id"] == self._id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    def js(self, expr: str) -> Any:  # noqa: ANN401 - whatever the expression returns
        res = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def wait(self, expr: str, timeout: float = 20.0) -> Any:  # noqa: ANN401
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expr)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expr}; page said: {self.js('document.body.innerText')}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait("document.readyState === 'complete' && !!window.geohpcMap")
        self.wait("document.body.dataset.tiles === 'loaded' && [...document.querySelectorAll('img.leaflet-tile')]"
                  ".every(i => i.complete && (i.naturalWidth > 0 || i.style.display === 'none'))")
        time.sleep(0.6)  # Leaflet fades tiles in over 0.2 s

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y, button="left",
                      clickCount=0 if kind == "mouseMoved" else 1)

    def click_at(self, lat: float, lon: float) -> None:
        p = self.js(f"(p => [p.x, p.y])(geohpcMap.latLngToContainerPoint([{lat}, {lon}]))")
        self.click(*p)

    def screenshot(self, keep: Path | None = None) -> np.ndarray:
        png = base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])
        if keep is not None:
            keep.write_bytes(png)  # for people to look at
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    def close(self) -> None:
        os.close(self._cmd_w)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    b = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield b
    b.close()


# ---------------------------------------------------------------- servers and tile sets

class BaseMapTiles(http.server.BaseHTTPRequestHandler):
    """A stand-in for an online base map: every z/x/y is one magenta tile."""

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), BASEMAP).save(buf, "PNG")
    tile = buf.getvalue()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.tile)))
        self.end_headers()
        self.wfile.write(self.tile)

    def log_message(self, *args: Any) -> None:  # noqa: ANN401
        pass


def running(server: http.server.ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    online = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BaseMapTiles)
    closed = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BaseMapTiles)
    closed_port = closed.server_port
    closed.server_close()  # nothing listens there: the base map is "offline"
    yield {"online": running(online) + "/{z}/{x}/{y}.png", "offline": f"http://127.0.0.1:{closed_port}/{{z}}/{{x}}/{{y}}.png"}
    online.shutdown()


def class_raster(tmp_path: Path) -> Path:
    y, x = np.mgrid[0:200, 0:300]
    cls = (1 + (x // 100)).astype(np.uint8)
    cls[:20, :20] = 0
    src = write_raster(tmp_path / "landcover.tif", cls, nodata=0)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, COLOURS)
        ds.update_tags(GEOHPC_CLASSES=json.dumps({str(k): v for k, v in NAMES.items()}))
    return src


def class_tiles(tmp_path: Path, basemap: str) -> Path:
    out = tmp_path / "tiles"
    build(str(class_raster(tmp_path)), out, zoom=(10, 15), processes=1, name="Land cover 2026", make_pmtiles=True,
          basemap=basemap)
    return out


def column_centre(out: Path, cls: int) -> tuple[float, float]:
    """Lat/lon of the middle of the column of class ``cls`` (columns 100 px wide, 10 m pixels)."""
    (e,), (n,) = [500000.0 + 10 * (100 * (cls - 1) + 50)], [5000000.0 - 10 * 120]
    (lon,), (lat,) = rasterio.warp.transform("EPSG:32635", "EPSG:4326", [e], [n])
    return lat, lon


def share(img: np.ndarray, rgb: tuple[int, ...], tol: int = 6) -> float:
    return float((np.abs(img - np.array(rgb[:3])).sum(axis=-1) <= tol).mean())


# ---------------------------------------------------------------- the page and its legend data

def test_page_is_self_contained_with_legend_data(tmp_path: Path) -> None:
    assert find_assets() is not None, "viewer assets missing: run make setup (npm ci --prefix viewer)"
    out = class_tiles(tmp_path, "")
    page = (out / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN
    for name in ASSETS:
        assert (out / name).stat().st_size > 1000, name
    assert (out / "leaflet.js").stat().st_size > 100_000 and "leafletRasterLayer" in (out / "pmtiles.js").read_text()
    config = json.loads(re.search(r"window.GEOHPC_TILES = (.*);</script>", page).group(1))
    assert config["name"] == "Land cover 2026" and config["maxzoom"] == 15 and config["basemap"] is None
    assert config["pmtiles"] == "Land cover 2026.pmtiles" and (out / config["pmtiles"]).is_file()
    assert [(r["value"], r["name"], tuple(r["color"])) for r in config["legend"]] == \
        [(k, NAMES[k], COLOURS[k]) for k in sorted(NAMES)]


def test_legend_without_tag_and_colour_bars() -> None:
    colors = {str(i): [0, 0, 0, 255] for i in range(256)}  # GDAL pads the table with opaque black
    colors.update({"0": [0, 0, 0, 0], "4": [10, 20, 30, 255], "7": [200, 100, 0, 255], "255": [1, 2, 3, 255]})
    rows = legend({"mode": "classes", "colors": colors, "mask": {"kind": "nodata", "value": 255.0}})
    assert [(r["value"], r["name"]) for r in rows] == [(4, "class 4"), (7, "class 7")]  # no padding, no nodata
    grey = colour_bars({"mode": "percentile", "bands": [2], "lo": [10.0], "hi": [90.0], "percentiles": [2, 98]})
    assert grey == [{"channel": "grey", "label": "band 2, p2-p98", "lo": 10.0, "hi": 90.0, "clipped": True}]
    pca = colour_bars({"mode": "pca", "bands": list(range(1, 9)), "lo": [0, 1, 2], "hi": [3, 4, 5],
                       "explained": [0.5, 0.3, 0.1]})
    assert [b["channel"] for b in pca] == ["red", "green", "blue"] and pca[0]["label"].startswith("PC1 of 8 bands (50%")
    assert colour_bars({"mode": "rgb", "bands": [1, 2, 3]})[2] == \
        {"channel": "blue", "label": "band 3", "lo": 0.0, "hi": 255.0, "clipped": False}


def test_range_server_answers_byte_ranges(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from geohpc.products.tiles.serve import main

    data = bytes(range(256)) * 40
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.pmtiles").write_bytes(data)
    (tmp_path / "secret.txt").write_text("not served")
    server = serve(tmp_path / "site")
    base = running(server)

    def get(rng: str | None, path: str = "/a.pmtiles") -> tuple[int, bytes, str]:
        req = urllib.request.Request(base + path, headers={"Range": rng} if rng else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers.get("Content-Range") or ""
        except urllib.error.HTTPError as e:
            return e.code, b"", e.headers.get("Content-Range") or ""

    try:
        assert get("bytes=10-19") == (206, data[10:20], f"bytes 10-19/{len(data)}")
        assert get("bytes=10000-") == (206, data[10000:], f"bytes 10000-{len(data) - 1}/{len(data)}")
        assert get("bytes=-5") == (206, data[-5:], f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}")
        assert get("bytes=0-99999")[1] == data  # clipped to the file
        assert get(f"bytes={len(data)}-")[:1] == (416,)
        assert get(None)[:2] == (200, data)
        assert get("bytes=0-3", "/../secret.txt")[0] == 404 and get(None, "/%2e%2e/secret.txt")[0] == 404
    finally:
        server.shutdown()
    assert main([str(tmp_path / "missing")]) == 2  # one line, exit 2


# ---------------------------------------------------------------- in the browser

@pytest.mark.browser
def test_http_base_map_legend_and_click(tmp_path: Path, browser: Chromium, servers: dict[str, Any]) -> None:
    out = class_tiles(tmp_path, servers["online"])
    server = serve(out)
    try:
        browser.open(running(server) + "/index.html")
        browser.wait("document.body.dataset.basemap === 'online'")
        time.sleep(0.6)
        img = browser.screenshot(out / "viewer-screenshot.png")
        for value, colour in COLOURS.items():
            assert share(img, colour) > 0.02, f"class {value} colour {colour} not drawn"
        assert share(img, BASEMAP) > 0.1  # the base map around the layer
        rows = browser.js("[...document.querySelectorAll('.legend-row')].map(r => [r.dataset.value, r.innerText,"
                          " getComputedStyle(r.querySelector('.swatch')).backgroundColor])")
        assert rows == [[str(k), NAMES[k], "rgb({}, {}, {})".format(*COLOURS[k][:3])] for k in sorted(NAMES)]
        browser.click_at(*column_centre(out, 2))
        text = browser.wait("(t => t.includes('class 2') && t)(document.getElementById('value').innerText)")
        assert "forest" in text and "wheat" not in text
        assert "forest" in browser.js("document.querySelector('.leaflet-popup-content').innerText")
    finally:
        server.shutdown()


@pytest.mark.browser
def test_offline_background_and_opacity_slider(tmp_path: Path, browser: Chromium, servers: dict[str, Any]) -> None:
    out = class_tiles(tmp_path, servers["offline"])
    server = serve(out)
    try:
        browser.open(running(server) + "/index.html")
        browser.wait("document.body.dataset.basemap === 'offline'")
        assert "offline" in browser.js("document.getElementById('status').innerText")
        img = browser.screenshot()
        assert share(img, BACKGROUND) > 0.05 and share(img, BASEMAP) == 0  # the plain background
        assert share(img, COLOURS[1]) > 0.02
        r = browser.js("(r => [r.left, r.top, r.width, r.height])(document.getElementById('opacity').getBoundingClientRect())")
        browser.click(r[0] + 0.3 * r[2], r[1] + r[3] / 2)  # a real click on the slider, 30% along
        pct = int(browser.wait("document.getElementById('opacity').valueAsNumber < 100 && "
                               "document.getElementById('opacity').valueAsNumber"))
        assert 20 <= pct <= 40
        time.sleep(0.4)
        img = browser.screenshot(out / "viewer-opacity.png")
        a = pct / 100
        blended = tuple(round(a * c + (1 - a) * b) for c, b in zip(COLOURS[1][:3], BACKGROUND, strict=True))
        assert share(img, COLOURS[1]) < 0.002, "layer still opaque after moving the slider"
        assert share(img, blended, tol=12) > 0.02, f"no {blended} (class 1 at {pct}% over the background)"
    finally:
        server.shutdown()


@pytest.mark.browser
def test_pmtiles_archive_alone_renders_and_clicks(tmp_path: Path, browser: Chromium, servers: dict[str, Any]) -> None:
    out = class_tiles(tmp_path, servers["offline"])
    site = tmp_path / "site"  # only the page, its assets and the archive: no z/x/y folders
    site.mkdir()
    for p in out.iterdir():
        if p.is_file():
            shutil.copy(p, site / p.name)
    assert not list(site.glob("*/*/*.png"))
    server = serve(site)
    try:
        browser.open(running(server) + "/index.html?pmtiles")
        assert browser.js("document.getElementById('source').innerText") == "tiles: Land cover 2026.pmtiles"
        assert browser.js("document.getElementById('switch').innerText") == "use the z/x/y folder"
        img = browser.screenshot(out / "viewer-pmtiles.png")
        for value, colour in COLOURS.items():
            assert share(img, colour) > 0.02, f"class {value} colour {colour} not drawn from the archive"
        browser.click_at(*column_centre(out, 3))
        text = browser.wait("(t => t.includes('class 3') && t)(document.getElementById('value').innerText)")
        assert "open water" in text
    finally:
        server.shutdown()


@pytest.mark.browser
def test_file_url_draws_tiles_and_says_how_to_get_values(tmp_path: Path, browser: Chromium,
                                                         servers: dict[str, Any]) -> None:
    out = class_tiles(tmp_path, servers["offline"])
    browser.open((out / "index.html").as_uri())
    img = browser.screenshot()
    for value, colour in COLOURS.items():
        assert share(img, colour) > 0.02, f"class {value} colour {colour} not drawn from file://"
    assert browser.js("document.querySelectorAll('.legend-row').length") == 3
    browser.click_at(*column_centre(out, 1))
    text = browser.wait("(t => t.includes('http') && t)(document.getElementById('value').innerText)")
    assert "geohpc tiles-serve" in text
    browser.open((out / "index.html").as_uri() + "?pmtiles")  # the archive cannot be read from file://
    assert "Range requests" in browser.js("document.getElementById('note').innerText")
    assert browser.js("document.getElementById('source').innerText") == "tiles: z/x/y folder"  # still drawn


@pytest.mark.browser
def test_colour_bar_and_value_of_a_continuous_layer(tmp_path: Path, browser: Chromium,
                                                    servers: dict[str, Any]) -> None:
    y, x = np.mgrid[0:150, 0:200]
    data = (1000.0 + 20.0 * x).astype(np.float32)  # 1000..4980 west to east
    src = write_raster(tmp_path / "ramp.tif", data, crs="EPSG:4326", origin=(25.0, 45.0), res=0.0001)
    out = tmp_path / "ramp"
    build(str(src), out, zoom=(14, 16), processes=1, basemap=servers["offline"])
    server = serve(out)
    try:
        browser.open(running(server) + "/index.html")
        bar = browser.js("[...document.querySelectorAll('.bar')].map(b => [b.dataset.channel, b.innerText])")
        assert len(bar) == 1 and bar[0][0] == "grey" and "band 1" in bar[0][1]
        col = 120  # value 1000 + 20 * 120 = 3400
        browser.click_at(45.0 - 0.0001 * 75, 25.0 + 0.0001 * (col + 0.5))
        text = browser.wait("(t => t.includes('≈') && t)(document.getElementById('value').innerText)")
        browser.screenshot(out / "viewer-value.png")  # colour bar and popup, for people to look at
        value = float(re.search(r"≈ ([0-9.e+]+)", text).group(1))
        assert abs(value - (1000 + 20 * col)) < 60, text  # one grey step is ~15, bilinear warp ~20
    finally:
        server.shutdown()
