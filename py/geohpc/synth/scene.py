"""scene: a synthetic crop scene for the demo and the tests.

Rectangular fields of several crop classes, each class with its own 128-band signature plus per-field
and per-pixel noise, written as an embedding GeoTIFF in UTM zone 35N (EPSG:32635, tiled, pixel-interleaved),
a ground-truth class raster, training points (GeoJSON, WGS84 lon/lat, string labels) and held-out
validation points (GeoJSON in EPSG:32635). ``scene.json`` is written last and marks the scene complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

from geohpc.classify.classes import CLASSES_TAG, classes_tag, colormap
from geohpc.embed.rasters import work_path
from geohpc.errors import InputError, run_cli
from geohpc.guards import one_line_errors, sweep_temporaries
from geohpc.progress import progress
from geohpc.raster_io import iter_block_windows, n_blocks
from geohpc.synth.fields import field_map, points_geojson, stratified_points
from geohpc.util import atomic_path, redact

CROPS = ["wheat", "maize", "barley", "rapeseed", "sunflower", "soybean", "sugar_beet", "potato", "oats", "alfalfa"]
CRS = "EPSG:32635"
ORIGIN = (520000.0, 5150000.0)  # upper-left corner, UTM 35N (north-east Romania)


def make_scene(out_dir: Path, *, size: int = 512, bands: int = 128, n_classes: int = 6, seed: int = 0,
               train_points: int = 800, val_points: int = 400, block: int = 256, res: float = 10.0,
               dtype: str = "float32", noise: float = 0.9, separation: float = 0.5, compress: str = "none") -> dict[str, object]:
    """Write a synthetic scene into ``out_dir`` and return its description (also saved as ``scene.json``)."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    if not 2 <= n_classes <= len(CROPS):
        raise InputError(f"--classes {n_classes}: give 2..{len(CROPS)} classes")
    if size < 64 or size % 16:
        raise InputError(f"--size {size}: give a multiple of 16, at least 64")
    if block % 16 or block < 16:
        raise InputError(f"--block {block}: give a multiple of 16")
    rng = np.random.default_rng(seed)
    fields, codes = field_map(size, n_classes, rng, min_field=max(8, size // 20))
    base = rng.normal(0, separation, (n_classes, bands)).astype(np.float32)
    base[2 % n_classes] = 0.5 * base[0] + 0.5 * base[2 % n_classes]  # barley close to wheat, as in reality
    field_off = rng.normal(0, 0.15, (int(fields.max()) + 1, bands)).astype(np.float32)
    names = {k + 1: CROPS[k] for k in range(n_classes)}
    transform = from_origin(ORIGIN[0], ORIGIN[1], res, res)
    out_dir.mkdir(parents=True, exist_ok=True)
    emb_path, truth_path = out_dir / "embedding.tif", out_dir / "truth.tif"
    prof = dict(driver="GTiff", width=size, height=size, count=bands, crs=CRS, transform=transform, tiled=True,
                blockxsize=block, blockysize=block, interleave="pixel", BIGTIFF="IF_SAFER")
    if compress != "none":
        prof["compress"] = compress
    if dtype == "int8":
        prof.update(dtype="int8", nodata=-128)
    else:
        prof.update(dtype="float32", nodata=float("nan"))
    scale_path = out_dir / "embedding_scale.tif"
    names_out = [out_dir / n for n in OUTPUTS]
    for target in names_out:
        sweep_temporaries(target)
    # every file goes to its temporary; they are renamed together at the end (scene.json last), so a failed
    # or killed run leaves no output under a final name
    with contextlib.ExitStack() as outs:
        t_json, t_val, t_train, t_truth = (outs.enter_context(atomic_path(out_dir / n)) for n in OUTPUTS[:4])
        _write_scene_rasters(outs, emb_path, scale_path, t_truth, prof, fields, codes, base, field_off, names,
                             rng, size, block, bands, noise, dtype, transform)
        picked = np.zeros(size * size, dtype=bool)
        flat = codes.ravel()
        tr = stratified_points(flat, train_points, n_classes, picked, rng)
        va = stratified_points(flat, val_points, n_classes, picked, rng)
        to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

        def coords(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows, cols = idx // size, idx % size
            return ORIGIN[0] + (cols + 0.5) * res, ORIGIN[1] - (rows + 0.5) * res

        x, y = coords(tr)
        lon, lat = to_ll.transform(x, y)
        t_train.write_text(points_geojson(lon, lat, [names[int(flat[i])] for i in tr], None, start=1))
        x, y = coords(va)
        t_val.write_text(points_geojson(x, y, [names[int(flat[i])] for i in va], CRS, start=100001))
        desc = {"embedding": str(emb_path), "truth": str(truth_path), "train_points": str(out_dir / "train_points.geojson"),
                "val_points": str(out_dir / "val_points.geojson"), "classes": names, "crs": CRS, "size": size,
                "bands": bands, "dtype": dtype, "seed": seed, "res": res}
        t_json.write_text(json.dumps(desc, indent=2, sort_keys=True, default=str) + "\n")
    if dtype != "int8":
        scale_path.unlink(missing_ok=True)
    return desc


OUTPUTS = ("scene.json", "val_points.geojson", "train_points.geojson", "truth.tif", "embedding.tif", "embedding_scale.tif")


def _write_scene_rasters(outs: contextlib.ExitStack, emb_path: Path, scale_path: Path, t_truth: Path, prof: dict,
                         fields: np.ndarray, codes: np.ndarray, base: np.ndarray, field_off: np.ndarray,
                         names: dict[int, str], rng: np.random.Generator, size: int, block: int, bands: int,
                         noise: float, dtype: str, transform: object) -> None:
    import rasterio

    with contextlib.ExitStack() as stack:
        tmp = outs.enter_context(atomic_path(emb_path))
        sdst = None
        if dtype == "int8":
            stmp = outs.enter_context(atomic_path(scale_path))
            sdst = stack.enter_context(rasterio.open(stmp, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                                                     crs=CRS, transform=transform, tiled=True, blockxsize=block, blockysize=block))
        with rasterio.open(tmp, "w", **prof) as dst:
            for win in progress(iter_block_windows(size, size, block), total=n_blocks(size, size, block), desc="scene blocks"):
                r, c = int(win.row_off), int(win.col_off)
                h, w = int(win.height), int(win.width)
                k = codes[r:r + h, c:c + w].astype(int) - 1
                f = fields[r:r + h, c:c + w]
                vals = base[k] + field_off[f] + rng.normal(0, noise, (h, w, bands)).astype(np.float32)
                vals = np.moveaxis(vals, -1, 0)
                if sdst is not None:
                    scale = np.abs(vals).max(axis=0) / 127.0
                    dst.write(np.clip(np.round(vals / scale), -127, 127).astype(np.int8), window=win)
                    sdst.write(scale.astype(np.float32)[None], window=win)
                else:
                    dst.write(vals, window=win)
        if sdst is not None:
            sdst.close()
    with rasterio.open(t_truth, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8", nodata=0, crs=CRS,
                       transform=transform, tiled=True, blockxsize=block, blockysize=block, compress="deflate") as dst:
        dst.write(codes[None])
        dst.write_colormap(1, colormap(list(names)))
        dst.update_tags(**{CLASSES_TAG: classes_tag(names)})


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc scene --out-dir DIR [--size 512]``."""
    ap = argparse.ArgumentParser(prog="geohpc.scene", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--size", type=int, default=512, help="pixels per side (multiple of 16)")
    ap.add_argument("--bands", type=int, default=128)
    ap.add_argument("--classes", type=int, default=6, help=f"number of crop classes (2..{len(CROPS)})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-points", type=int, default=800)
    ap.add_argument("--val-points", type=int, default=400)
    ap.add_argument("--block", type=int, default=256, help="GeoTIFF tile size")
    ap.add_argument("--dtype", choices=("float32", "int8"), default="float32", help="int8 writes a per-pixel scale sidecar")
    ap.add_argument("--noise", type=float, default=0.9, help="per-pixel noise (standard deviation)")
    ap.add_argument("--separation", type=float, default=0.5, help="spread of the class signatures (smaller = harder)")
    ap.add_argument("--compress", default="none", help="GeoTIFF compression: none, deflate, zstd")
    args = ap.parse_args(argv)

    def work() -> int:
        out = work_path(args.out_dir)
        with one_line_errors(out, fix="check --out-dir (writable, free space)", fresh_dirs=[out]):
            if out.exists() and not out.is_dir():
                raise InputError(f"{out}: --out-dir is a file; give a folder for the scene")
            desc = make_scene(out, size=args.size, bands=args.bands, n_classes=args.classes, seed=args.seed,
                              train_points=args.train_points, val_points=args.val_points, block=args.block, dtype=args.dtype,
                              noise=args.noise, separation=args.separation, compress=args.compress)
        print(redact(json.dumps(desc)))
        return 0

    return run_cli(work, "geohpc.scene")


if __name__ == "__main__":
    sys.exit(main())
