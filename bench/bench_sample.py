#!/usr/bin/env python3
"""Benchmark: geohpc.sample against rasterio.sample and against the floor, for every embedding layout.

Builds (once, under build/bench/) 128-band rasters of --size x --size pixels, 512x512 tiles, in every layout
users hold: pixel- and band-interleaved x uncompressed / DEFLATE / ZSTD x int8 (the pipeline's embedding dtype)
and float32. Then, per layout, on the same random points and in one run:
  1. ours in-process (``sample()``, --method auto) and as a whole process (``python -m geohpc sample``,
     python start-up and imports included, peak RSS from wait4);
  2. ``rasterio.sample`` point by point, as a whole process that also reports its in-process time;
  3. the floor: one GDAL windowed read of every touched block (what any reader of the file must decode),
     and the decode floor: one pread + decompress (+ predictor) of every touched block, same threads as ours;
  4. ours through GDAL windows (--method block), the method of before;
  5. ours on --big-points points, in-process and whole process.
Checks that ours returns exactly rasterio.sample's values and writes bench/RESULTS-classify.md.

Usage: python bench/bench_sample.py [--size 2048] [--points 500] [--big-points 100000] [--layouts pixel-deflate-int8,...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc.classify.points import Points  # noqa: E402
from geohpc.classify.sample import read_cells, read_cells_block, sample  # noqa: E402
from geohpc.classify.tilecells import decode_block, tiff_layout  # noqa: E402
from geohpc.raster_io import DEFAULT_MEM_BUDGET, gdal_env  # noqa: E402
from geohpc.util import cpu_threads  # noqa: E402

ORIGIN = (500000.0, 5200000.0)
RES = 10.0
SCALE = 0.0078125  # int8 -> value; a power of two, so ours (dequantised) and rasterio's raw values compare exactly
LAYOUTS = [f"{il}-{c}-{d}" for il in ("pixel", "band") for c in ("none", "deflate", "zstd") for d in ("int8", "float32")]
RASTERIO_SAMPLE = """
import sys, time, json, numpy as np, pandas as pd, rasterio
pts = pd.read_csv(sys.argv[2])
t0 = time.perf_counter()
with rasterio.open(sys.argv[1]) as ds:
    vals = np.array(list(ds.sample(zip(pts.x, pts.y))))
np.save(sys.argv[3], vals)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def build(path: Path, size: int, bands: int, block: int, layout: str) -> None:
    """Write one benchmark raster tile by tile (embedding-like values: small integers, or floats at 0.01)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    il, codec, dtype = layout.split("-")
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".partial.tif")
    kw = {} if codec == "none" else {"compress": codec}
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=bands, dtype=dtype, crs="EPSG:32635",
                       transform=from_origin(*ORIGIN, RES, RES), tiled=True, blockxsize=block, blockysize=block,
                       interleave=il, BIGTIFF="YES", **kw) as dst:
        if dtype == "int8":
            dst.update_tags(scale=str(SCALE))
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                if dtype == "int8":
                    a = rng.integers(-20, 20, (bands, h, w)).astype(np.int8)
                else:
                    a = (rng.standard_normal((bands, h, w), dtype=np.float32) * 0.1).round(2)
                dst.write(a, window=Window(c, r, w, h))
    os.replace(tmp, path)


def points(n: int, size: int, seed: int) -> Points:
    """``n`` random pixel-centre points over the raster, in its CRS."""
    rng = np.random.default_rng(seed)
    cols, rows = rng.integers(0, size, n), rng.integers(0, size, n)
    x, y = ORIGIN[0] + (cols + 0.5) * RES, ORIGIN[1] - (rows + 0.5) * RES
    return Points(np.arange(n), np.array(["c"] * n, dtype=object), x, y, "EPSG:32635", Path("bench-points"))


def write_csv(pts: Points, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame({"id": pts.ids, "x": pts.x, "y": pts.y, "label": pts.labels}).to_csv(path, index=False)
    return path


def pixels(pts: Points) -> tuple[np.ndarray, np.ndarray]:
    return (np.floor((ORIGIN[1] - pts.y) / RES).astype(np.int64), np.floor((pts.x - ORIGIN[0]) / RES).astype(np.int64))


def whole_process(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` under /usr/bin/time; (wall seconds, peak RSS in MB, stdout). Fails loudly on a non-zero exit."""
    import tempfile

    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        kb = float(rss.read().split()[-1])
    if proc.returncode:
        sys.exit(f"bench_sample: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return wall, kb / 1024, proc.stdout


def best(fn: object, repeat: int) -> float:
    """Fastest of ``repeat`` timed calls of ``fn()`` (the machine is shared: the minimum is the least disturbed)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def floors(raster: Path, rows: np.ndarray, cols: np.ndarray, repeat: int) -> tuple[float, float]:
    """(GDAL windowed read of every touched block, pread + decode of every touched block) in seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.windows import Window

    with rasterio.open(raster) as ds:
        bh, bw = ds.block_shapes[0]
        width, height = ds.width, ds.height
    keys = sorted(set(zip((rows // bh).tolist(), (cols // bw).tolist(), strict=True)))

    def gdal_reads() -> None:  # a fresh dataset each time: GDAL's block cache must not serve a repeat
        with gdal_env(DEFAULT_MEM_BUDGET), rasterio.open(raster) as ds:
            for r, c in keys:
                ds.read(window=Window(c * bw, r * bh, min(bw, width - c * bw), min(bh, height - r * bh)))

    gdal_s = best(gdal_reads, repeat)
    lay = tiff_layout(raster)
    assert lay is not None
    jobs = [(p, r, c) for r, c in keys for p in range(lay.offsets.shape[0])]
    workers = max(1, min(cpu_threads(), DEFAULT_MEM_BUDGET // (lay.block_bytes() + int(lay.counts.max()))))
    fd = os.open(raster, os.O_RDONLY)

    def one(job: tuple[int, int, int]) -> int:
        p, r, c = job
        return decode_block(lay, os.pread(fd, int(lay.counts[p, r, c]), int(lay.offsets[p, r, c])), bh).nbytes

    def decode_all() -> None:
        with ThreadPoolExecutor(workers) as pool:
            sum(pool.map(one, jobs))

    try:
        return gdal_s, best(decode_all, repeat)
    finally:
        os.close(fd)


def run_layout(layout: str, args: argparse.Namespace, out: Path) -> dict[str, object]:
    import pandas as pd
    import rasterio

    raster = out / f"emb_{args.size}_{layout}.tif"
    if not raster.exists():
        print(f"building {raster.name} ...", file=sys.stderr, flush=True)
        build(raster, args.size, args.bands, args.block, layout)
    res: dict[str, object] = {"layout": layout, "gb": raster.stat().st_size / 1e9, "load": os.getloadavg()[0]}
    pts, big = points(args.points, args.size, 42), points(args.big_points, args.size, 7)
    csv, big_csv = write_csv(pts, out / "pts.csv"), write_csv(big, out / "big.csv")
    with open(raster, "rb") as fh:  # same warm page cache for every reader
        while fh.read(64 << 20):
            pass
    sample(points(1, args.size, 1), [raster], out / "warm.parquet")  # imports and PROJ set-up, not timed
    res["ours"] = best(lambda: sample(pts, [raster], out / "ours.parquet"), args.repeat)
    ours_vals = pd.read_parquet(out / "ours.parquet").sort_values("id").filter(regex=r"^b\d{3}$").to_numpy(np.float32)
    res["floor_gdal"], res["floor_decode"] = floors(raster, *pixels(pts), args.repeat)
    rows, cols = pixels(pts)
    with gdal_env(DEFAULT_MEM_BUDGET), rasterio.open(raster) as ds:
        res["block"] = best(lambda: read_cells_block(ds, rows, cols), 1)
        big_rows, big_cols = pixels(big)
        res["big_read"] = best(lambda: read_cells(ds, big_rows, big_cols), args.repeat)  # the reading part of ours alone
    cmd = [sys.executable, "-m", "geohpc", "sample", "--points", str(csv), "--crs", "EPSG:32635", "--rasters", str(raster)]
    for name, c, n in (("ours_proc", cmd, "p"), ("big_proc", [*cmd[:5], str(big_csv), *cmd[6:]], "b")):
        (out / f"{n}.parquet").unlink(missing_ok=True)
        (out / f"{n}.dropped.csv").unlink(missing_ok=True)
        res[name], res[f"{name}_rss"], _ = whole_process([*c, "--out", str(out / f"{n}.parquet")])
    res["big"] = best(lambda: sample(big, [raster], out / "big.parquet"), args.repeat)
    res["big_floor_gdal"], res["big_floor_decode"] = floors(raster, *pixels(big), args.repeat)
    wall, res["rasterio_rss"], text = whole_process([sys.executable, "-c", RASTERIO_SAMPLE, str(raster), str(csv), str(out / "rio.npy")])
    res["rasterio_proc"], res["rasterio"] = wall, json.loads(text.strip().splitlines()[-1])["seconds"]
    rio = np.load(out / "rio.npy")
    want = rio.astype(np.float32) * np.float32(SCALE) if rio.dtype == np.int8 else rio.astype(np.float32)
    res["identical"] = bool(np.array_equal(ours_vals, want))
    for f in [*out.glob("*.parquet"), *out.glob("*.dropped.csv"), out / "rio.npy"]:
        f.unlink(missing_ok=True)
    print(json.dumps(res), file=sys.stderr, flush=True)
    return res


def table(results: list[dict], args: argparse.Namespace) -> list[str]:
    lines = [
        f"| layout (128 bands, {args.size}², 512² tiles) | GB | ours in-proc / whole proc (RSS) | rasterio.sample in-proc / whole proc "
        "| (a) ours / rasterio (in / whole) | floor: GDAL window per touched block / decode only | (b) ours / floor (GDAL / decode) "
        f"| GDAL windows (before) | {args.big_points:,} pts ours in-proc / whole (RSS) | its reading part | (b) at {args.big_points:,} "
        "(whole call / reading part, vs GDAL floor) | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['layout']} | {r['gb']:.2f} | {r['ours']:.2f} s / {r['ours_proc']:.2f} s ({r['ours_proc_rss']:.0f} MB) "
            f"| {r['rasterio']:.2f} s / {r['rasterio_proc']:.2f} s | {r['ours'] / r['rasterio']:.3f}x / "
            f"{r['ours_proc'] / r['rasterio_proc']:.3f}x | {r['floor_gdal']:.2f} s / {r['floor_decode']:.2f} s "
            f"| **{r['ours'] / r['floor_gdal']:.2f}x** / {r['ours'] / r['floor_decode']:.2f}x | {r['block']:.2f} s "
            f"| {r['big']:.2f} s / {r['big_proc']:.2f} s ({r['big_proc_rss']:.0f} MB) | {r['big_read']:.2f} s "
            f"| {r['big'] / r['big_floor_gdal']:.2f}x / **{r['big_read'] / r['big_floor_gdal']:.2f}x** | {r['identical']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--bands", type=int, default=128)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--big-points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="in-process timings: best of this many runs")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma list of {', '.join(LAYOUTS)}")
    ap.add_argument("--out-dir", default=str(REPO / "build" / "bench"))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS-classify.md"))
    ap.add_argument("--save", default="", help="append each layout's figures (JSON lines) to this file")
    ap.add_argument("--table-from", default="", help="only write the table from a --save file")
    args = ap.parse_args(argv)
    import rasterio

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    saved = Path(args.save) if args.save else None
    if args.table_from:  # render results saved by earlier runs (the last one of each layout, in LAYOUTS order)
        seen = {r["layout"]: r for r in map(json.loads, Path(args.table_from).read_text().splitlines())}
        results = [seen[lay] for lay in LAYOUTS if lay in seen]
    else:
        results = []
        for lay in args.layouts.split(","):
            results.append(run_layout(lay, args, out))
            if saved:
                with saved.open("a") as fh:
                    fh.write(json.dumps(results[-1]) + "\n")
    load1 = os.getloadavg()
    if args.table_from:
        loads = [float(r["load"]) for r in results]
        load0, load1 = (min(loads), 0.0, 0.0), (max(loads), 0.0, 0.0)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    lines = [
        "# Benchmark: point sampling of embedding rasters, every layout, against rasterio.sample and the floor",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores shared with other developers "
        f"(load average {load0[0]:.1f} {'lowest' if args.table_from else 'at the start'}, {load1[0]:.1f} "
        f"{'highest, at the start of each layout' if args.table_from else 'at the end'}); {platform.platform()}",
        f"- Python {platform.python_version()}, rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}), "
        f"numpy {np.__version__}; threads {cpu_threads()}; --mem-budget {DEFAULT_MEM_BUDGET >> 20}M (the default)",
        f"- {args.points} random points (and {args.big_points:,}); command: `python bench/bench_sample.py --size {args.size}`; "
        f"page cache warm for every reader (the file is read once first); in-process times are the best of {args.repeat} runs, "
        "whole-process times (python start-up, imports, reading the points CSV, writing Parquet) one run each.",
        "- floor (GDAL) = one `ds.read(window=block)` of every block that holds a point, the issue's definition; decode floor = "
        "one pread + inflate (+ predictor) of those blocks and nothing else, on as many threads as ours.",
        "",
        *table(results, args),
        "",
    ]
    text = "\n".join(lines)
    marker = "\n## Why\n"
    old = Path(args.results).read_text() if Path(args.results).exists() else ""
    Path(args.results).write_text(text + (old[old.index(marker):] if marker in old else ""))
    print(text)
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
