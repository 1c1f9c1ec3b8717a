#!/usr/bin/env python3
"""Benchmark: striped many-band GeoTIFF -> COG, ours vs `gdal_translate -of COG` vs `rio cogeo create`.

Usage: PYTHONPATH=py python bench/bench_cog.py [--size 2048] [--bands 128] [--out bench/out] [--repeat 3]
       [--source-compress DEFLATE]

Builds (or reuses) a striped (ROWSPERSTRIP=1), pixel-interleaved float32 GeoTIFF like TESSERA's
converter writes, then runs each tool with its defaults as a subprocess, one after the other, ``--repeat``
rounds (default 3, the order reversed each round, the median reported), each from the same memory state
(dirty pages synced, the page cache emptied when run as root, the input read back: :func:`warm`). Peak RSS comes
from /usr/bin/time -v (or psutil polling). Every output is checked with rio-cogeo's validator and
ours, and compared pixel for pixel with the input window by window. Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc.products.cog import validate_cog  # noqa: E402
from geohpc.products.cog.build import DEFAULT_ZSTD_LEVEL  # noqa: E402
from geohpc.util import cpu_threads  # noqa: E402


def make_input(path: Path, size: int, bands: int) -> Path:
    """A striped pixel-interleaved float32 raster of smooth fields plus noise (embedding-like)."""
    if path.exists():
        return path
    prof = dict(driver="GTiff", width=size, height=size, count=bands, dtype="float32", crs="EPSG:32635",
                transform=from_origin(500000, 5000000, 10, 10), tiled=False, blockysize=1, interleave="pixel")
    rng = np.random.default_rng(0)
    fx, ph = rng.uniform(0.002, 0.02, (bands, 2)), rng.uniform(0, 6.3, (bands, 2))
    scale = rng.uniform(0.01, 0.05, bands).astype("float32")
    tmp = path.with_suffix(".partial.tif")
    cols = np.arange(size)
    print(f"building {path} ({size}x{size}x{bands} float32, striped)", file=sys.stderr)
    with rasterio.open(tmp, "w", **prof) as dst:
        for r in range(0, size, 64):
            rows = np.arange(r, min(size, r + 64))[:, None]
            a = np.empty((bands, len(rows), size), "float32")
            for b in range(bands):
                a[b] = (np.sin(rows * fx[b, 0] + ph[b, 0]) + np.cos(cols * fx[b, 1] + ph[b, 1])
                        + rng.normal(0, 0.05, (len(rows), size))) * scale[b]
            dst.write(a, window=Window(0, r, size, len(rows)))
    tmp.rename(path)
    return path


def compressed_copy(src: Path, codec: str) -> Path:
    """``src`` rewritten striped and pixel-interleaved with ``codec`` (GDAL's default layout for a multi-band
    ``-co COMPRESS=...`` file), built once beside it."""
    path = src.with_name(f"{src.stem}_{codec.lower()}.tif")
    if path.exists():
        return path
    tmp = path.with_suffix(".partial.tif")
    print(f"building {path} ({codec}, striped, pixel-interleaved)", file=sys.stderr)
    with rasterio.open(src) as ds:
        prof = dict(ds.profile, compress=codec, interleave="pixel", tiled=False, blockysize=1, num_threads=cpu_threads(),
                    predictor=3 if ds.dtypes[0].startswith("float") else 2)
        with rasterio.open(tmp, "w", **prof) as out:
            for r in range(0, ds.height, 256):
                w = Window(0, r, ds.width, min(256, ds.height - r))
                out.write(ds.read(window=w), window=w)
    tmp.rename(path)
    return path


FLOOR = """
import sys, numpy as np, rasterio
from rasterio.windows import Window
src, dst, threads, level = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with rasterio.Env(GDAL_CACHEMAX=256 << 20, GDAL_NUM_THREADS=threads), rasterio.open(src) as ds:
    prof = dict(driver="GTiff", width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0], crs=ds.crs,
                transform=ds.transform, tiled=True, blockxsize=512, blockysize=512, interleave="band", compress="zstd",
                zstd_level=level, predictor=3 if ds.dtypes[0].startswith("float") else 2, num_threads=threads, bigtiff="IF_SAFER")
    with rasterio.open(dst, "w", **prof) as out:
        for r in range(0, ds.height, 512):
            w = Window(0, r, ds.width, min(512, ds.height - r))
            out.write(ds.read(window=w), window=w)
"""


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def warm(path: Path) -> None:
    """Every tool starts from the same memory: dirty pages flushed, the page cache emptied (when root), the input
    read back into it.

    Without the emptying, a run's speed depends on what the previous tool left in memory: on this VM (free pages
    reported to the host) ours at 4 GB varied 12.7-18.5 s between rounds, the floor 8.4-9.1 s; with it 12.6-12.8 s.
    """
    os.sync()
    if os.access(DROP_CACHES, os.W_OK):
        DROP_CACHES.write_text("3\n")
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, float]:
    """Run ``cmd``; return (seconds, peak RSS in bytes, exit code, CPU seconds user+system)."""
    if Path("/usr/bin/time").exists():
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
        dt = time.monotonic() - t0
        rss, cpu = 0, 0.0
        for line in p.stderr.splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.split(":")[1]) * 1024
            if "User time (seconds)" in line or "System time (seconds)" in line:
                cpu += float(line.split(":")[1])
        if p.returncode:
            print(p.stderr[-2000:], file=sys.stderr)
        for line in p.stderr.splitlines():
            if line.startswith("[cog]") and "threads" in line:
                print(line, file=sys.stderr)  # ours: seconds and peak RSS of each phase
        return dt, rss, p.returncode, cpu
    import psutil

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps, peak, cpu = psutil.Process(proc.pid), 0, 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]))
            t = ps.cpu_times()
            cpu = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(0.1)
    return time.monotonic() - t0, peak, proc.returncode, cpu


def identical(src: Path, out: Path) -> bool:
    """True when ``out`` holds exactly the pixels of ``src`` (compared in row windows)."""
    with rasterio.open(src) as a, rasterio.open(out) as b:
        if (a.count, a.width, a.height) != (b.count, b.width, b.height) or a.transform != b.transform:
            return False
        for r in range(0, a.height, 256):
            w = Window(0, r, a.width, min(256, a.height - r))
            if not np.array_equal(a.read(window=w), b.read(window=w), equal_nan=True):
                return False
    return True


def plot(results: dict[str, dict], meta: dict[str, str], path: Path) -> Path:
    """Bar charts of wall time, CPU time and peak RSS per tool, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, key, label in zip(axes, ("seconds", "cpu_seconds", "peak_rss_gb"),
                              ("wall time (s)", "CPU user+sys (s)", "peak RSS (GB)"), strict=True):
        vals = [results[n].get(key, 0) for n in names]
        bars = ax.bar(names, vals, color=["#2a7" if n == "ours" else "#888" for n in names])
        ax.bar_label(bars, fmt="%g")
        ax.set_title(label)
        if key == "peak_rss_gb":
            ax.axhline(2, color="r", ls="--", lw=1)
    fig.suptitle(f"COG from {meta.get('input', '')} (striped, 128 bands) - {meta.get('machine', '')}, {meta.get('date', '')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="raster width = height (default 2048)")
    ap.add_argument("--bands", type=int, default=128)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--plot", type=Path, default=None, help="only redraw the PNG from a saved bench_cog_*.json")
    ap.add_argument("--only", choices=["ours", "gdal_translate", "rio-cogeo", "floor"], action="append", help="run only these")
    ap.add_argument("--mem", default=None, help="ours: --mem budget (default: ours' default)")
    ap.add_argument("--source-compress", default=None, metavar="CODEC",
                    help="run on the input rewritten with this codec (e.g. DEFLATE), striped pixel-interleaved")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of every tool, the order reversed each round; the median is reported (default 3)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        saved = json.loads(args.plot.read_text())
        print(plot(saved["results"], saved["meta"], args.plot.with_suffix(".png")))
        return 0
    src = make_input(args.out / f"cog_src_{args.size}x{args.bands}.tif", args.size, args.bands)
    if args.source_compress:
        src = compressed_copy(src, args.source_compress.upper())
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    env.pop("PROJ_DATA", None)
    rio = str(Path(sys.executable).parent / "rio")
    runs = {
        "ours": [sys.executable, "-m", "geohpc", "cog", *(["--mem", args.mem] if args.mem else []), str(src),
                 str(args.out / "cog_ours.tif"), "--force"],
        "gdal_translate": ["gdal_translate", "-q", "-of", "COG", str(src), str(args.out / "cog_gdal.tif")],
        "rio-cogeo": [rio, "cogeo", "create", "-q", str(src), str(args.out / "cog_rio.tif")],
        # the floor: read the input once + compress it once at our codec and level (no overviews, no COG layout)
        "floor": [sys.executable, "-c", FLOOR, str(src), str(args.out / "cog_floor.tif"), str(cpu_threads()), str(DEFAULT_ZSTD_LEVEL)],
    }
    if not shutil.which("gdal_translate"):
        print("gdal_translate not found: skipping it", file=sys.stderr)
        runs.pop("gdal_translate")
    results: dict[str, dict] = {}
    rounds: list[dict[str, float]] = []
    from rio_cogeo.cogeo import cog_validate

    names = [n for n in runs if not args.only or n in args.only]
    for k in range(max(1, args.repeat)):
        # the order is reversed every round: whoever runs second finds the other's freed page cache (on a VM
        # that reports free pages to the host, a never-touched page costs ~2 s/GB), so neither is favoured
        this_round: dict[str, float] = {}
        for name in (names if k % 2 == 0 else names[::-1]):
            cmd = runs[name]
            out = Path(cmd[-2] if name == "ours" else cmd[-3] if name == "floor" else cmd[-1])
            out.unlink(missing_ok=True)
            warm(src)
            print(f"round {k + 1}: running {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
            load = os.getloadavg()[0]
            dt, rss, rc, cpu = timed(cmd, env)
            ok = rc == 0 and out.exists()
            res = {"seconds": round(dt, 1), "cpu_seconds": round(cpu, 1), "load_before": round(load, 1),
                   "peak_rss_gb": round(rss / 2**30, 2), "rc": rc,
                   "size_gb": round(out.stat().st_size / 2**30, 2) if ok else None}
            if name not in results:  # checked once per tool (reading 4 GB back twice costs more than the run)
                res.update({
                    "rio_cogeo_valid": bool(ok and cog_validate(str(out), quiet=True)[0]) if name != "floor" else "-",
                    "our_validator": ((validate_cog(out) or "ok") if ok else "missing") if name != "floor" else "- (not a COG)",
                    "identical_pixels": bool(ok and identical(src, out))})
            results.setdefault(name, {"runs": []})["runs"].append(res)
            this_round[name] = dt
            print(f"{name}: {json.dumps(res)}", file=sys.stderr, flush=True)
        rounds.append(this_round)
    for name, r in results.items():  # the median run by wall time, with the checks of the first
        runs_of = sorted(r["runs"], key=lambda x: x["seconds"])
        median = dict(runs_of[len(runs_of) // 2])
        for key in ("rio_cogeo_valid", "our_validator", "identical_pixels"):
            median[key] = r["runs"][0][key]
        median["all_seconds"] = [x["seconds"] for x in r["runs"]]
        median["peak_rss_gb"] = max(x["peak_rss_gb"] for x in r["runs"])
        results[name] = median
    import rasterio as rio_mod

    meta = {"machine": f"{platform.node()} {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable)",
            "date": time.strftime("%Y-%m-%d %H:%M"), "input": f"{src.name} {src.stat().st_size / 2**30:.2f} GB",
            "rasterio": rio_mod.__version__, "gdal_rasterio": rio_mod.__gdal_version__,
            "gdal_cli": subprocess.run(["gdalinfo", "--version"], capture_output=True, text=True).stdout.strip()
            if shutil.which("gdalinfo") else "absent"}
    print(f"\n{meta}\n")
    print(f"median of {len(rounds)} round(s), every run's wall time in brackets\n")
    print("| tool | wall (s) | CPU user+sys (s) | load before | peak RSS (GB) | output (GB) "
          "| valid (rio-cogeo / ours) | identical pixels |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']} ({', '.join(map(str, r['all_seconds']))}) | {r['cpu_seconds']} | {r['load_before']} "
              f"| {r['peak_rss_gb']} | {r['size_gb']} | {r['rio_cogeo_valid']} / {r['our_validator']} | {r['identical_pixels']} |")
    ours = results.get("ours")
    if ours:
        for peer, target in (("gdal_translate", 0.25), ("rio-cogeo", 0.6), ("floor", 1.5)):
            if peer in results:
                ratio = ours["seconds"] / results[peer]["seconds"]
                cpu_ratio = ours["cpu_seconds"] / max(results[peer]["cpu_seconds"], 1e-9)
                same = [f"{r['ours'] / r[peer]:.2f}x" for r in rounds if "ours" in r and peer in r]
                print(f"ours / {peer} wall time: {ratio:.2f}x (target <= {target}x) {'MET' if ratio <= target else 'MISSED'}"
                      f"; CPU time {cpu_ratio:.2f}x; round by round {', '.join(same)}")
        print(f"ours peak RSS {ours['peak_rss_gb']} GB (target < 2 GB)")
    saved = args.out / f"bench_cog_{args.size}{'_' + args.source_compress.lower() if args.source_compress else ''}.json"
    saved.write_text(json.dumps({"meta": meta, "results": results, "rounds": rounds}, indent=2))
    print(f"chart: {plot(results, meta, saved.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
