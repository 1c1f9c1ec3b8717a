#!/usr/bin/env python3
"""Benchmark: which COG layout for 128-band int8 embeddings, measured on the three ways the file is used.

For each layout (interleave band|pixel x tile 256|512 x ZSTD|DEFLATE, all int8 + predictor 2 like stitch and
cog write them, as COGs with overviews) and on the same data, times, locally and over HTTP range requests
(``/vsicurl/`` against the project's range server, geohpc.products.tiles.serve, on loopback):
  1. sample: ``geohpc.sample`` of --points random points (locally the tile decoder, remotely GDAL windows);
  2. preview: bands 1-3 of the whole map at 1/8 resolution (what the viewer / a quicklook reads);
  3. classify: all bands of one 512x512 window (what classify reads per window).
Remote runs also count requests and bytes the server sent; the header column is the bytes of the tile
offset and byte-count tables (what a remote reader fetches before any pixel). ``--remote s3`` reads the same
files through ``/vsis3/`` from an S3 server (moto, in this process, on loopback) instead: signed requests,
no HEAD, the key listing GDAL does unless told not to. Writes bench/RESULTS-layout.md (``--section TITLE``:
as a section of its own, replacing the one of that title, leaving the main table).

Each file is built by the project's own ``make_cog`` (tiled copy, overviews, GTiff copy with COPY_SRC_OVERVIEWS and
an explicit interleave) and its interleave / tile / codec / predictor are asserted before it is timed.

Usage: python bench/bench_layout.py [--size 1024 2048] [--points 500] [--repeat 3] [--keep] [--remote http|s3]
                                    [--latency S] [--section TITLE]
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
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc import tiff  # noqa: E402
from geohpc.classify.points import Points  # noqa: E402
from geohpc.classify.sample import read_cells  # noqa: E402
from geohpc.products.cog.build import make_cog  # noqa: E402
from geohpc.products.tiles.serve import RangeHandler, RangeServer  # noqa: E402
from geohpc.raster_io import DEFAULT_MEM_BUDGET, gdal_env  # noqa: E402
from geohpc.util import cpu_threads  # noqa: E402

ORIGIN, RES, SCALE = (500000.0, 5200000.0), 10.0, 0.0078125
LAYOUTS = [(il, blk, codec) for il in ("band", "pixel") for blk in (512, 256) for codec in ("zstd", "deflate")]
SENT = {"requests": 0, "bytes": 0}
LATENCY = [0.0]  # seconds the server waits before each answer (--latency)
RUN = [0]  # a new URL per remote open: GDAL's /vsicurl/ cache starts empty
BUILD: dict[str, tuple[float, float]] = {}  # file name -> (wall s, CPU s) of its make_cog


class CountingHandler(RangeHandler):
    """The project's range server, counting requests and body bytes, quiet."""

    def send_head(self) -> object:
        """Answer after LATENCY seconds (a simulated round trip; parallel requests overlap, as on a network)."""
        if LATENCY[0]:
            time.sleep(LATENCY[0])
        return super().send_head()

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length" and self.command == "GET":  # a HEAD announces the size, sends no body
            SENT["requests"] += 1
            SENT["bytes"] += int(value)
        super().send_header(keyword, value)

    def log_message(self, *args: object) -> None:
        pass


BUCKET = "layout"


def s3_server(latency: list[float]) -> tuple[object, str]:
    """moto's S3 app on loopback in this process, behind a WSGI layer that counts GETs and body bytes.

    Returns the server (``shutdown()`` it) and its ``host:port``. Requests wait ``latency[0]`` s like
    :class:`CountingHandler`'s.
    """
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    app = DomainDispatcherApplication(create_backend_app)

    def counting(environ: dict, start_response: object) -> object:
        if latency[0]:
            time.sleep(latency[0])

        def start(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
            if environ["REQUEST_METHOD"] == "GET":
                SENT["requests"] += 1
                SENT["bytes"] += int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
            return start_response(status, headers, exc_info)  # type: ignore[operator]

        return app(environ, start)

    srv = make_server("127.0.0.1", 0, counting, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"127.0.0.1:{srv.server_port}"


def clear_network_cache() -> None:
    """Empty GDAL's /vsicurl/ + /vsis3/ cache (``VSICurlClearCache`` of the libgdal rasterio has loaded)."""
    import ctypes

    import rasterio  # noqa: F401  (loads libgdal)

    libs = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgdal" in line}
    if not libs:
        raise SystemExit("bench_layout: error: libgdal not found in /proc/self/maps; cannot empty GDAL's network cache")
    ctypes.CDLL(sorted(libs)[0]).VSICurlClearCache()


def s3_env(endpoint: str) -> dict[str, str]:
    """What GDAL's /vsis3/ needs for the loopback server (path-style, plain HTTP, dummy keys): for os.environ."""
    return {"AWS_S3_ENDPOINT": endpoint, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def s3_upload(endpoint: str, files: list[Path]) -> None:
    """Put ``files`` into the bench bucket (not counted: only reads are)."""
    import boto3

    n0, b0 = SENT["requests"], SENT["bytes"]
    env = s3_env(endpoint)
    s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    for p in files:
        s3.upload_file(str(p), BUCKET, p.name)
    SENT["requests"], SENT["bytes"] = n0, b0


def build(out: Path, size: int, bands: int) -> dict[tuple[str, int, str], Path]:
    """One int8 source (smooth fields + noise, embedding-like), then one COG per layout."""
    import rasterio
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
        if not p.exists():  # the project's own COG build (tiled copy, overviews, GTiff copy with COPY_SRC_OVERVIEWS)
            t0, c0 = time.perf_counter(), time.process_time()
            make_cog(src, p, blocksize=blk, compress=codec, interleave=il, zstd_level=1, overview_resampling="average")
            BUILD[p.name] = (time.perf_counter() - t0, time.process_time() - c0)
        check_layout(p, il, blk, codec)
        files[(il, blk, codec)] = p
    return files


def check_layout(p: Path, il: str, blk: int, codec: str) -> None:
    """Refuse to bench a file whose layout is not the one it claims (GDAL's COG driver once ignored INTERLEAVE=BAND)."""
    import rasterio

    with rasterio.open(p) as ds:
        prof, st = ds.profile, ds.tags(ns="IMAGE_STRUCTURE")
        got = (prof.get("interleave"), set(ds.block_shapes), str(ds.compression.value).lower() if ds.compression else None,
               st.get("PREDICTOR"), ds.dtypes[0], len(ds.overviews(1)) > 0)
        want = (il, {(blk, blk)}, codec, "2", "int8", max(ds.width, ds.height) > blk)
    if got != want:
        raise SystemExit(f"bench_layout: error: {p}: layout {got} is not the claimed {want} (rebuild: delete it)")


def header_bytes(path: Path) -> int:
    """Bytes of the tile offset and byte-count tables of every directory (full resolution and overviews)."""
    big, dirs = tiff.read_directories(path, (tiff.TILE_OFFSETS, tiff.TILE_COUNTS))
    return sum(len(tags.get(tiff.TILE_OFFSETS, ())) + len(tags.get(tiff.TILE_COUNTS, ())) for _, tags in dirs) * (8 if big else 4)


def points(n: int, size: int) -> Points:
    rng = np.random.default_rng(42)
    cols, rows = rng.integers(0, size, n), rng.integers(0, size, n)
    return Points(np.arange(n), np.array(["c"] * n, dtype=object), ORIGIN[0] + (cols + 0.5) * RES,
                  ORIGIN[1] - (rows + 0.5) * RES, "EPSG:32635", Path("bench-points"))


USES = ("sample", "preview", "classify")


def uses(path: str, size: int, pts: Points) -> dict[str, tuple[float, float, int, int]]:
    """Per use of the file at ``path`` (local path or /vsicurl/ URL): wall s, CPU s, requests, bytes sent.

    Each use opens the file anew in a fresh GDAL cache (a remote one under a new URL, so /vsicurl/'s cache is empty).
    CPU is this process's (remote: GDAL's and the in-process server's threads together).
    """
    import rasterio
    from rasterio.windows import Window

    res = {}
    w0 = 512 if size >= 1024 else 0  # a tile-aligned window
    rows = np.floor((ORIGIN[1] - pts.y) / RES).astype(np.int64)
    cols = np.floor((pts.x - ORIGIN[0]) / RES).astype(np.int64)
    reads = {
        "sample": lambda ds: read_cells(ds, rows, cols, "auto"),  # geohpc.sample (local: the tile decoder; remote: GDAL windows)
        "preview": lambda ds: ds.read([1, 2, 3], out_shape=(3, size // 8, size // 8)),
        "classify": lambda ds: ds.read(window=Window(w0, w0, min(512, size // 2), min(512, size // 2))),
    }
    for name in USES:
        env = gdal_env(DEFAULT_MEM_BUDGET) if name == "sample" else rasterio.Env(GDAL_CACHEMAX=256 << 20,
                                                                                 GDAL_NUM_THREADS=str(cpu_threads()))
        with env:
            RUN[0] += 1
            url = f"{path}?run={RUN[0]}" if path.startswith("/vsicurl/") else path
            if path.startswith("/vsis3/"):  # a key takes no query string: empty GDAL's network cache instead
                clear_network_cache()
            n0, b0 = SENT["requests"], SENT["bytes"]
            t0, c0 = time.perf_counter(), time.process_time()
            with rasterio.open(url) as ds:
                reads[name](ds)
            res[name] = (time.perf_counter() - t0, time.process_time() - c0, SENT["requests"] - n0, SENT["bytes"] - b0)
    return res


def best(runs: list[dict[str, tuple[float, float, int, int]]]) -> dict[str, tuple[float, float, int, int]]:
    """The fastest run of each use (its CPU, requests and bytes with it)."""
    return {k: min((r[k] for r in runs), key=lambda t: t[0]) for k in USES}


def bench_size(args: argparse.Namespace, size: int, base: str) -> list[dict]:
    """Build (or reuse) the layouts at ``size`` and time every use locally and remotely."""
    files = build(args.out_dir, size, args.bands)
    pts = points(args.points, size)
    if base.startswith("/vsis3/"):
        s3_upload(args.s3_endpoint, list(files.values()))
    rows = []
    for key, p in files.items():
        local = best([uses(str(p), size, pts) for _ in range(args.repeat)])
        remote = best([uses(f"{base}/{p.name}", size, pts) for _ in range(args.repeat)])
        rows.append({"size": size, "layout": key, "mb": p.stat().st_size / 1e6, "header_kb": header_bytes(p) / 1e3,
                     "build": BUILD.get(p.name), "local": local, "remote": remote})
        print(rows[-1], file=sys.stderr, flush=True)
    if not args.keep:
        for p in [*files.values(), args.out_dir / f"layout_src_{size}.tif"]:
            p.unlink(missing_ok=True)
    return rows


def table(rows: list[dict]) -> list[str]:
    """The results table, one line per size and layout."""
    out = [
        "| size | interleave | tile | codec | file MB | header KB | build s (CPU) | sample local s (CPU) | sample remote s "
        "/ req / MB | preview local s (CPU) | preview remote s / req / MB | classify local s (CPU) | classify remote s / req / MB |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        il, blk, codec = r["layout"]
        lo, rem = r["local"], r["remote"]
        bld = f"{r['build'][0]:.1f} ({r['build'][1]:.1f})" if r["build"] else "reused"
        cells = [f"{r['size']}", il, f"{blk}", codec, f"{r['mb']:.1f}", f"{r['header_kb']:.2f}", bld]
        for u in USES:
            cells += [f"{lo[u][0]:.3f} ({lo[u][1]:.2f})", f"{rem[u][0]:.3f} / {rem[u][2]} / {rem[u][3] / 1e6:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def merge_results(old: str, text: str, section: str) -> str:
    """The results file with ``text`` in: as the head (sections after it kept), or as ``## section`` in place."""
    parts = ("\n" + old).split("\n## ")
    head, sections = parts[0].lstrip("\n"), ["## " + x for x in parts[1:]]
    if not section:
        return text + "".join("\n" + x for x in sections)
    title = f"## {section}\n"
    new = [text.rstrip("\n") + "\n" if x.startswith(title) else x for x in sections]
    if not any(x.startswith(title) for x in sections):
        new.insert(0, text)
    return head + "".join("\n" + x.rstrip("\n") + "\n" for x in new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--bands", type=int, default=128)
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of each use")
    ap.add_argument("--out-dir", type=Path, default=REPO / "build" / "bench")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS-layout.md")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds the server waits before each answer (a simulated RTT)")
    ap.add_argument("--keep", action="store_true", help="keep the inputs (default: delete them after each size)")
    ap.add_argument("--remote", choices=("http", "s3"), default="http",
                    help="http: /vsicurl/ to the range server; s3: /vsis3/ to an in-process moto S3 server")
    ap.add_argument("--section", default="", help="write the run as '## SECTION' of the results file (main table kept)")
    args = ap.parse_args(argv)
    import rasterio

    args.out_dir.mkdir(parents=True, exist_ok=True)
    LATENCY[0] = args.latency
    env: dict[str, str] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif"}
    if args.remote == "s3":
        server, args.s3_endpoint = s3_server(LATENCY)
        os.environ.update(s3_env(args.s3_endpoint))  # rasterio.Env refuses AWS options (as embed.download does)
        base = f"/vsis3/{BUCKET}"
    else:
        server = RangeServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(args.out_dir)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"/vsicurl/http://127.0.0.1:{server.server_address[1]}"
    load0, t0 = os.getloadavg(), time.perf_counter()
    rows = []
    with rasterio.Env(**env):
        for size in args.size:
            rows += bench_size(args, size, base)
    server.shutdown()  # type: ignore[attr-defined]
    remote = ("`/vsis3/` to an S3 server (moto, in the bench process, path-style, plain HTTP, GDAL_DISABLE_READDIR_ON_OPEN="
              "EMPTY_DIR, GDAL's network cache emptied before each use)" if args.remote == "s3" else
              "`/vsicurl/` to the project's range server (`geohpc.products.tiles.serve`)")
    lines = [
        f"## {args.section}" if args.section else
        "# Benchmark: the COG layout of 128-band int8 embeddings, by the three ways the file is used",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - t0:.0f} s; {os.cpu_count()} cores shared "
        f"with other developers (load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end); {platform.platform()}; Python {platform.python_version()}, rasterio "
        f"{rasterio.__version__} (GDAL {rasterio.__gdal_version__}), numpy {np.__version__}; threads {cpu_threads()}",
        f"- Data: {' and '.join(f'{s}x{s}' for s in args.size)} x {args.bands} int8 (smooth fields + noise, embedding-like), "
        "each layout built by `make_cog` (predictor 2, average overviews, ZSTD level 1) and its interleave, tile, codec "
        "and predictor asserted. Times are the best of "
        f"{args.repeat} (CPU time of that run in brackets); remote = " + remote + " on loopback: no network latency, so the request count is what latency would "
        "cost (x RTT / parallelism); req / MB = requests and body bytes the server sent for that use. Header KB = tile "
        f"offset + byte-count tables of all directories. sample = `read_cells` of {args.points} random points; preview = "
        "bands 1-3 of the whole map at 1/8; classify = all bands of one 512x512 window. "
        f"Command: `python bench/bench_layout.py --size {' '.join(map(str, args.size))} --points {args.points} "
        f"--repeat {args.repeat}" + (f" --latency {args.latency}" if args.latency else "")
        + (f" --remote {args.remote}" if args.remote != "http" else "")
        + (f" --section '{args.section}'" if args.section else "") + "`."
        + (f" The server waits {args.latency * 1e3:.0f} ms before each answer (a simulated round trip)." if args.latency else ""),
        "",
        *table(rows),
    ]
    text = "\n".join(lines) + "\n"
    old = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(merge_results(old, text, args.section))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
