"""Benchmark the embedding stages on CPU: infer pixels/s (demo and ~7M-parameter models), stitch peak memory.

Usage::

    PYTHONPATH=py python bench/bench_infer.py [--px 64] [--sizes 512,1024] [--work bench/out/embed]

Infer: pixels/s of ``geohpc.infer.embed_patch`` (sampling + gather + batched model) on one synthetic
patch, beside the time its forward passes alone take (the ceiling) and a straightforward per-pixel implementation
(``np.random.choice`` sampling pixel by pixel, then the same batched model) -- the ratio is what the
vectorised, seed-stable sampling buys (little: the forward pass dominates). Stitch: peak RSS and time of ``geohpc.stitch`` (windowed, tiled
ZSTD) beside the whole-map approach of TESSERA's stitcher (a float32 map in RAM, then a striped
uncompressed GeoTIFF), each in a fresh subprocess, for two map sizes.
"""

from __future__ import annotations

import argparse
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


def _patch(px: int, t: int, t1: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"bands": rng.integers(100, 6000, (t, px, px, 10)).astype(np.uint16),
            "masks": (rng.random((t, px, px)) > 0.3).astype(np.uint8),
            "doys": np.sort(rng.choice(np.arange(1, 366), t, replace=False)).astype(np.int16),
            "sar_ascending": rng.normal(-12, 3, (t1, px, px, 2)).astype(np.float32),
            "sar_ascending_doy": np.sort(rng.choice(np.arange(1, 366), t1, replace=False)).astype(np.int16),
            "sar_descending": rng.normal(-13, 3, (t1, px, px, 2)).astype(np.float32),
            "sar_descending_doy": np.sort(rng.choice(np.arange(1, 366), t1, replace=False)).astype(np.int16)}


def _naive(model, cfg, a: dict[str, np.ndarray], batch: int) -> np.ndarray:
    """Per-pixel sampling with np.random.choice (what a first implementation does), then batched forward."""
    import torch

    T, h, w, _ = a["bands"].shape
    rng = np.random.default_rng(0)
    sar = np.concatenate([a["sar_ascending"], a["sar_descending"]])
    sdoy = np.concatenate([a["sar_ascending_doy"], a["sar_descending_doy"]])
    rows = []
    for y in range(h):
        for x in range(w):
            v = np.flatnonzero(a["masks"][:, y, x])
            i2 = np.sort(rng.choice(v, min(cfg.n_obs_s2, len(v)), replace=False))
            i2 = np.pad(i2, (0, cfg.n_obs_s2 - len(i2)), constant_values=-1)
            i1 = np.sort(rng.choice(len(sdoy), min(cfg.n_obs_s1, len(sdoy)), replace=False))
            i1 = np.pad(i1, (0, cfg.n_obs_s1 - len(i1)), constant_values=-1)
            rows.append((a["bands"][np.maximum(i2, 0), y, x], a["doys"][np.maximum(i2, 0)], i2 >= 0,
                         sar[np.maximum(i1, 0), y, x], sdoy[np.maximum(i1, 0)], i1 >= 0))
    out = []
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        tens = [torch.from_numpy(np.stack([r[k] for r in chunk]).astype(np.float32 if k in (0, 1, 3, 4) else bool))
                for k in range(6)]
        with torch.no_grad():
            out.append(model(*tens).numpy())
    return np.concatenate(out)


class _Timed:
    """Wraps the model to time the forward passes inside embed_patch (the rest is sampling + I/O)."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self.model, self.seconds = model, 0.0

    def __call__(self, *args):  # noqa: ANN002, ANN204
        t0 = time.perf_counter()
        y = self.model(*args)
        self.seconds += time.perf_counter() - t0
        return y


def bench_infer(px: int, threads: int, reps: int = 3) -> list[dict[str, object]]:
    """Pixels/s of our patch embedding, the bare model, and the naive baseline, per preset."""
    import torch
    from geohpc.embed import infer
    from geohpc.embed import model as tm

    torch.set_num_threads(threads)
    rows = []
    for preset in ("demo", "small7m"):
        model = tm.build(preset)
        cfg = model.cfg
        n = px if preset == "demo" else max(16, px // 2)
        a = _patch(n, 40, 30)
        infer.embed_patch(model, cfg, {k: v[:, :4, :4] if v.ndim > 1 else v for k, v in a.items()}, "warm")
        batch = 4096 if preset == "demo" else 1024
        timed = _Timed(model)
        ours = bare = naive = 0.0
        for _ in range(reps):  # best of reps: the machine is shared
            timed.seconds = 0.0
            t0 = time.perf_counter()
            infer.embed_patch(timed, cfg, a, "b/p", batch=batch)
            ours = max(ours, n * n / (time.perf_counter() - t0))
            bare = max(bare, n * n / timed.seconds)
            t0 = time.perf_counter()
            _naive(model, cfg, a, batch)
            naive = max(naive, n * n / (time.perf_counter() - t0))
        rows.append({"model": preset, "params": tm.n_parameters(model), "pixels": n * n, "ours_px_s": ours,
                     "model_only_px_s": bare, "naive_px_s": naive})
    return rows


_STITCH_CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
mode, patches, emb, out = sys.argv[2].split("-")[0], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
t0 = time.perf_counter()
if mode == "ours":
    from geohpc.embed import stitch
    stitch.stitch(patches, emb, out, tile=int(sys.argv[6]), dtype=sys.argv[7])
else:  # whole-map: the float32 map in RAM, then one striped, uncompressed GeoTIFF
    import rasterio
    from rasterio.transform import Affine
    from geohpc.embed.layout import iter_patches
    g = json.loads((patches / "grid.json").read_text())
    G = g["grid"]
    full = np.full((128, G["height"], G["width"]), np.nan, np.float32)
    for b, p, r, c, h, w in iter_patches(G["height"], G["width"], g["block"], g["patch"]):
        full[:, r:r + h, c:c + w] = np.moveaxis(np.load(emb / b / f"{p}.npy"), -1, 0)
    prof = dict(driver="GTiff", width=G["width"], height=G["height"], count=128, dtype="float32", crs=G["crs"],
                transform=Affine(G["res"], 0, G["x0"], 0, -G["res"], G["y0"]))
    with rasterio.open(out, "w", **prof) as dst:
        dst.write(full)
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"s": time.perf_counter() - t0, "rss_mb": hwm / 1024}))
"""


def bench_stitch(sizes: list[int], work: Path, tile: int) -> list[dict[str, object]]:
    """Peak RSS and time of our stitch and of the whole-map approach, per map size."""
    from geohpc.embed.layout import iter_patches

    rows = []
    for size in sizes:
        root = work / f"stitch{size}"
        patches, emb = root / "patches", root / "emb"
        patches.mkdir(parents=True, exist_ok=True)
        grid = {"crs": "EPSG:32635", "x0": 600000.0, "y0": 5000000.0, "res": 10.0, "width": size, "height": size}
        (patches / "grid.json").write_text(json.dumps({"grid": grid, "block": 512, "patch": 256}))
        rng = np.random.default_rng(0)
        for b, p, _, _, h, w in iter_patches(size, size, 512, 256):
            (emb / b).mkdir(parents=True, exist_ok=True)
            if not (emb / b / f"{p}.npy").exists():
                np.save(emb / b / f"{p}.npy", rng.standard_normal((h, w, 128), dtype=np.float32))
        row: dict[str, object] = {"size": size, "map_mb": size * size * 128 * 4 / 2**20}
        base = None
        for mode in ("baseline", "ours", "ours-int8"):
            out = root / f"{mode}.tif"
            out.unlink(missing_ok=True)
            out.with_name(f"{out.stem}_scale.tif").unlink(missing_ok=True)
            r = subprocess.run([sys.executable, "-c", _STITCH_CHILD, str(REPO / "py"), mode, str(patches), str(emb),
                                str(out), str(tile), "int8" if mode.endswith("int8") else "float32"],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.splitlines()[-1])
            if base is None:  # import-only RSS, to subtract
                code = ("import numpy, rasterio, geohpc.embed.stitch;print(next(int(ln.split()[1]) for ln in "
                        "open('/proc/self/status') if ln.startswith('VmHWM:')) / 1024)")
                base = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                            env={**os.environ, "PYTHONPATH": str(REPO / "py")}).stdout)
            row[f"{mode}_rss_mb"] = res["rss_mb"]
            row[f"{mode}_s"] = res["s"]
            row[f"{mode}_file_mb"] = out.stat().st_size / 2**20
        row["import_rss_mb"] = base
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=64, help="patch side for the demo model (half for 7M)")
    ap.add_argument("--sizes", default="512,1024", help="stitch map sizes in pixels")
    ap.add_argument("--tile", type=int, default=512, help="stitch tile/window (default 512, stitch's default)")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "bench" / "embed")
    ap.add_argument("--stitch-only", action="store_true", help="skip the infer part")
    args = ap.parse_args(argv)
    import torch
    from geohpc.util import cpu_threads

    threads = cpu_threads()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (using {threads} threads), "
          f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    if not args.stitch_only:
        print("\n| model | params | pixels | geohpc.infer px/s | its forward passes alone px/s | naive per-pixel sampling px/s | ours/naive |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in bench_infer(args.px, threads):
            print(f"| {r['model']} | {r['params']:,} | {r['pixels']} | {r['ours_px_s']:.0f} | {r['model_only_px_s']:.0f} "
                  f"| {r['naive_px_s']:.0f} | {r['ours_px_s'] / r['naive_px_s']:.2f}x |")
    print(f"\n| map | float32 map | whole-map peak RSS | geohpc.stitch (tile {args.tile}) peak RSS float32 / int8 | RSS ratio "
          "| whole-map s | stitch s float32 / int8 | whole-map file | stitch file float32 / int8 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in bench_stitch([int(s) for s in args.sizes.split(",")], args.work, args.tile):
        print(f"| {r['size']}x{r['size']}x128 | {r['map_mb']:.0f} MB | {r['baseline_rss_mb']:.0f} MB "
              f"| {r['ours_rss_mb']:.0f} / {r['ours-int8_rss_mb']:.0f} MB | {r['baseline_rss_mb'] / r['ours_rss_mb']:.1f}x "
              f"| {r['baseline_s']:.1f} | {r['ours_s']:.1f} / {r['ours-int8_s']:.1f} | {r['baseline_file_mb']:.0f} MB "
              f"| {r['ours_file_mb']:.0f} / {r['ours-int8_file_mb']:.0f} MB |")
    print(f"\n(import-only RSS of python+numpy+rasterio: {r['import_rss_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
