#!/usr/bin/env python3
"""Benchmark: which COG layout for 128-band int8 embeddings, measured on the three ways the file is used.

For each layout (interleave band|pixel x tile 256|512 x ZSTD|DEFLATE, all int8 + predictor 2 like stitch and
cog write them, as COGs with overviews) and on the same data, times, locally and over HTTP range requests
(``/vsicurl/`` against the project's range server, geohpc.products.tiles.serve, on loopback):
  1. sample: ``geohpc.sample`` of --points random points (locally the tile decoder, remotely GDAL windows);
  2. preview: bands 1-3 of the whole map at 1/8 resolution (what the viewer / a quicklook reads);
  3. classify: all bands of one 512x512 window (what classify reads per window).
Remote runs also count requests and bytes the server sent; the header column is the bytes of the tile
offset and byte-count tables (what a remote reader fetches before any pixel). Writes bench/RESULTS-layout.md.

Usage: python bench/bench_layout.py [--size 1024] [--points 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc import tiff  # noqa: E402
from geohpc.classify.points import Points  # noqa: E402
from geohpc.classify.sample import read_cells  # noqa: E402
from geohpc.products.tiles.serve import RangeHandler  # noqa: E402
from geohpc.raster_io import DEFAULT_MEM_BUDGET, gdal_env  # noqa: E402
from geohpc.util import cpu_threads  # noqa: E402

ORIGIN, RES, SCALE = (500000.0, 5200000.0), 10.0, 0.0078125
LAYOUTS = [(il, blk, codec) for il in ("band", "pixel") for blk in (512, 256) for codec in ("zstd", "deflate")]
SENT = {"requests": 0, "bytes": 0}


class CountingHandler(RangeHandler):
    """The project's range server, counting requests and body bytes, quiet."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length" and self.command == "GET":  # a HEAD announces the size, sends no body
            SENT["requests"] += 1
            SENT["bytes"] += int(value)
        super().send_header(keyword, value)

    def log_message(self, *args: object) -> None:
        pass


def build(out: Path, size: int, bands: int) -> dict[tuple[str, int, str], Path]:
    """One int8 source (smooth fields + noise, embedding-like), then one COG per layout."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    src = out / f"layout_src_{size}.tif"
    if not src.exists():
        rng = np.random.default_rng(0)
        with rasterio.open(src, "w", driver="GTiff", width=size, height=size, count=bands, dtype="int8", nodata=-128,
                           crs="EPSG:32635", transform=from_origin(*ORIGIN, RES, RES), tiled=True, blockxsize=256,
                           blockysize=256) as dst:
            dst.update_tags(scale=str(SCALE))
            yy, xx = np.mgrid[0:256, 0:256]
            for r in range(0, size, 256):
                for c in range(0, size, 256):
                    f = rng.uniform(0.005, 0.03, (bands, 1, 1))
                    a = 40 * np.sin((yy + r) * f + (xx + c) * f[::-1]) + rng.normal(0, 6, (bands, 256, 256))
                    dst.write(np.clip(a, -127, 127).astype(np.int8), window=Window(c, r, 256, 256))
    files = {}
    for il, blk, codec in LAYOUTS:
        p = out / f"layout_{size}_{il}_{blk}_{codec}.tif"
        if not p.exists():
            opts = {"compress": codec, "blocksize": blk, "interleave": il, "predictor": 2, "overview_resampling": "average",
                    "num_threads": str(cpu_threads()), "bigtiff": "if_safer"}
            if codec == "zstd":
                opts["level"] = 1
            rasterio.shutil.copy(src, p.with_suffix(".partial.tif"), driver="COG", **opts)
            p.with_suffix(".partial.tif").rename(p)
        files[(il, blk, codec)] = p
    return files


def header_bytes(path: Path) -> int:
    """Bytes of the tile offset and byte-count tables of every directory (full resolution and overviews)."""
    big, dirs = tiff.read_directories(path, (tiff.TILE_OFFSETS, tiff.TILE_COUNTS))
    return sum(len(tags.get(tiff.TILE_OFFSETS, ())) + len(tags.get(tiff.TILE_COUNTS, ())) for _, tags in dirs) * (8 if big else 4)


def points(n: int, size: int) -> Points:
    rng = np.random.default_rng(42)
    cols, rows = rng.integers(0, size, n), rng.integers(0, size, n)
    return Points(np.arange(n), np.array(["c"] * n, dtype=object), ORIGIN[0] + (cols + 0.5) * RES,
                  ORIGIN[1] - (rows + 0.5) * RES, "EPSG:32635", Path("bench-points"))


def uses(path: str, size: int, pts: Points) -> dict[str, float]:
    """Seconds of each use of the file at ``path`` (local path or /vsicurl/ URL), each in a fresh GDAL cache."""
    import rasterio
    from rasterio.windows import Window

    res = {}
    w0 = 512 if size >= 1024 else 0  # a tile-aligned window
    rows = np.floor((ORIGIN[1] - pts.y) / RES).astype(np.int64)
    cols = np.floor((pts.x - ORIGIN[0]) / RES).astype(np.int64)
    with gdal_env(DEFAULT_MEM_BUDGET):
        t0 = time.perf_counter()
        with rasterio.open(path) as ds:
            read_cells(ds, rows, cols, "auto")  # what geohpc.sample reads (local: the tile decoder; remote: GDAL windows)
        res["sample"] = time.perf_counter() - t0
    for name, read in (("preview", lambda ds: ds.read([1, 2, 3], out_shape=(3, size // 8, size // 8))),
                       ("classify", lambda ds: ds.read(window=Window(w0, w0, min(512, size // 2), min(512, size // 2))))):
        with rasterio.Env(GDAL_CACHEMAX=256 << 20, GDAL_NUM_THREADS=str(cpu_threads())):
            t0 = time.perf_counter()
            with rasterio.open(path) as ds:
                read(ds)
            res[name] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=128)
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of each use")
    ap.add_argument("--out-dir", type=Path, default=REPO / "build" / "bench")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS-layout.md")
    args = ap.parse_args(argv)
    import rasterio

    args.out_dir.mkdir(parents=True, exist_ok=True)
    files = build(args.out_dir, args.size, args.bands)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(args.out_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"/vsicurl/http://127.0.0.1:{server.server_address[1]}"
    pts = points(args.points, args.size)
    load0 = os.getloadavg()[0]
    rows = []
    run = 0
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tif"):
        for key, p in files.items():
            local = [uses(str(p), args.size, pts) for _ in range(args.repeat)]
            remote, traffic = [], []
            for _ in range(args.repeat):
                run += 1  # a new URL each time: GDAL's /vsicurl/ cache starts empty
                SENT.update(requests=0, bytes=0)
                remote.append(uses(f"{base}/{p.name}?run={run}", args.size, pts))
                traffic.append(dict(SENT))
            best_l = {k: min(r[k] for r in local) for k in local[0]}
            best_r = {k: min(r[k] for r in remote) for k in remote[0]}
            rows.append({"layout": key, "mb": p.stat().st_size / 1e6, "header_kb": header_bytes(p) / 1e3, "local": best_l,
                         "remote": best_r, "requests": traffic[0]["requests"], "remote_mb": traffic[0]["bytes"] / 1e6})
            print(rows[-1], file=sys.stderr, flush=True)
    server.shutdown()
    lines = [
        "# Benchmark: the COG layout of 128-band int8 embeddings, by the three ways the file is used",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores shared with other developers (load average "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end); {platform.platform()}; rasterio {rasterio.__version__} "
        f"(GDAL {rasterio.__gdal_version__}); threads {cpu_threads()}",
        f"- Data: {args.size}x{args.size}x{args.bands} int8 (smooth fields + noise), COG driver, predictor 2, overviews "
        f"(average); ZSTD level 1. Times are the best of {args.repeat}; remote = `/vsicurl/` to the project's range server on "
        "loopback (no network latency: request counts show what latency would cost), a fresh GDAL cache each run; requests and "
        "MB are what the server sent for all three uses together. Command: `python bench/bench_layout.py`.",
        "",
        "| interleave | tile | codec | file MB | header KB (offset tables) | sample local / remote s | preview (3 bands, 1/8) local / remote s "
        "| classify (all bands, 512² window) local / remote s | remote requests | remote MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        il, blk, codec = r["layout"]
        lo, re_ = r["local"], r["remote"]
        lines.append(f"| {il} | {blk} | {codec} | {r['mb']:.1f} | {r['header_kb']:.1f} | {lo['sample']:.2f} / {re_['sample']:.2f} "
                     f"| {lo['preview']:.2f} / {re_['preview']:.2f} | {lo['classify']:.2f} / {re_['classify']:.2f} "
                     f"| {r['requests']} | {r['remote_mb']:.1f} |")
    text = "\n".join(lines) + "\n"
    marker = "\n## Decision\n"
    old = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(text + (old[old.index(marker):] if marker in old else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
