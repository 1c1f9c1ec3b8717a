"""Stitch per-patch embeddings into one 128-band GeoTIFF on the AOI grid, window by window.

The output is written straight into a tiled (``--tile``, default 512), ZSTD-compressed, band-interleaved
GeoTIFF, one tile-aligned window at a time, so the COG step after it reads tiles (not strips) and peak
memory is one window (``tile**2 * 128 * 4`` bytes, 128 MiB at 512) whatever the map size.

* ``--dtype float32``: ``embeddings.tif`` float32, nodata NaN.
* ``--dtype int8``: ``embeddings.tif`` int8 (nodata -128) plus ``embeddings_scale.tif`` float32 (nodata
  NaN), value = int8 x scale. GeoTIFF bands share one data type, so the scale band is a second file
  on the same grid.

Inputs: ``<patches>/grid.json`` (from retile) and ``<emb>/<block>/<patch>.npy`` (from infer, float32
or int8 + scale). A patch without an embedding is an error, or nodata with ``--allow-missing``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from geohpc.embed.codec import NODATA_INT8, dequantize, open_embedding, quantize
from geohpc.embed.layout import EMBED_DIM, GRID_JSON, iter_patches
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.raster_io import check_written, gdal_env, iter_block_windows, open_raster
from geohpc.util import atomic_path, cpu_threads


def read_grid(patches: Path) -> dict[str, Any]:
    """``grid.json`` written by retile (the AOI grid and the block/patch sizes)."""
    p = patches / GRID_JSON
    if not p.is_file():
        raise InputError(f"{p}: not found; run retile first (it records the AOI grid)")
    try:
        g = json.loads(p.read_text())
        grid = g["grid"]
        for key in ("width", "height", "res", "x0", "y0", "crs"):
            grid[key]  # noqa: B018 - a KeyError names what is missing
        if not (int(g["block"]) > 0 and int(g["patch"]) > 0 and int(grid["width"]) > 0 and int(grid["height"]) > 0):
            raise ValueError("sizes must be positive")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: unreadable ({exc}); rerun retile") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON ({exc.msg} at line {exc.lineno}); rerun retile to rewrite it") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{p}: not a retile grid.json ({type(exc).__name__}: {exc}); rerun retile") from None
    return dict(g)


def _profile(grid: dict[str, Any], dtype: str, count: int, tile: int) -> dict[str, Any]:
    return {"driver": "GTiff", "width": grid["width"], "height": grid["height"], "count": count, "dtype": dtype,
            "crs": grid["crs"], "transform": Affine(grid["res"], 0.0, grid["x0"], 0.0, -grid["res"], grid["y0"]),
            "nodata": NODATA_INT8 if dtype == "int8" else float("nan"), "tiled": True,
            "blockxsize": tile, "blockysize": tile, "compress": "zstd", "zstd_level": 1, "num_threads": str(cpu_threads()),
            "predictor": 3 if dtype == "float32" else 2, "interleave": "band", "bigtiff": "if_safer"}


def stitch(patches: Path, emb: Path, out: Path, dtype: str = "float32", tile: int = 512,
           allow_missing: bool = False, cache_mb: int = 64, allow_empty: bool = False) -> dict[str, Any]:
    """Write the stitched map to ``out`` (and ``<out stem>_scale.tif`` for int8); return a summary.

    Parameters
    ----------
    patches : Path
        Retile output folder (``grid.json``).
    emb : Path
        Infer output folder (``<block>/<patch>.npy``).
    out : Path
        Output GeoTIFF path.
    dtype : {"float32", "int8"}
        Output encoding.
    tile : int
        Tile side (multiple of 16); also the window written at once.
    allow_missing : bool
        Write nodata for patches without an embedding instead of failing.
    cache_mb : int
        GDAL block cache (GDAL_CACHEMAX) in MiB.
    allow_empty : bool
        Write a map without a single valid pixel instead of failing.

    Both files are written to temporaries, checked whole (a full disk shows only at close), and renamed
    scale first, map last (the done marker); a failure leaves neither under its final name.
    """
    if tile % 16 or tile <= 0:
        raise ConfigError(f"--tile {tile}: GeoTIFF tiles must be a positive multiple of 16")
    scale_out = out.with_name(out.stem + "_scale.tif")
    outputs = [out, scale_out] if dtype == "int8" else [out]
    refuse_overwrite([patches / GRID_JSON, patches, emb], outputs, fix="write the map outside the patch and embedding folders")
    for o in outputs:
        if o.is_dir():
            raise InputError(f"{o}: is a folder; give the output GeoTIFF's file path (e.g. {o / 'embeddings.tif'})")
    with one_line_errors(out, fix="check the output folder and free space"):
        return _stitch(patches, emb, out, scale_out, dtype, tile, allow_missing, cache_mb, allow_empty)


def _stitch(patches: Path, emb: Path, out: Path, scale_out: Path, dtype: str, tile: int, allow_missing: bool,
            cache_mb: int, allow_empty: bool) -> dict[str, Any]:
    g = read_grid(patches)
    grid = g["grid"]
    H, W = grid["height"], grid["width"]
    plist = list(iter_patches(H, W, g["block"], g["patch"]))
    missing = [f"{b}/{p}" for b, p, *_ in plist if not (emb / b / f"{p}.npy").exists()]
    if missing and not allow_missing:
        raise InputError(f"{emb}: {len(missing)} patch(es) have no embedding (first {missing[0]}); "
                         "rerun infer for their blocks, or pass --allow-missing to write nodata there")
    windows = list(iter_block_windows(H, W, tile))
    for o in (out, scale_out):
        sweep_temporaries(o)  # what a killed earlier run of this output left (full-map size)
    seen_data = False
    with contextlib.ExitStack() as stack:
        # GDAL keeps written tiles in its block cache (default 5% of RAM): cap it so memory stays flat.
        stack.enter_context(gdal_env(mem_budget=cache_mb << 20))
        tmp = stack.enter_context(atomic_path(out))  # entered first: renamed last, after the scale file
        stmp = stack.enter_context(atomic_path(scale_out)) if dtype == "int8" else None
        with contextlib.ExitStack() as files:
            dst = files.enter_context(rasterio.open(tmp, "w", **_profile(grid, dtype, EMBED_DIM, tile)))
            for i in range(EMBED_DIM):
                dst.set_band_description(i + 1, f"emb_{i:03d}")
            dst.update_tags(source="geohpc.stitch", encoding="value = int8 * scale" if dtype == "int8" else "float32")
            sdst = files.enter_context(rasterio.open(stmp, "w", **_profile(grid, "float32", 1, tile))) if stmp else None
            for win in progress(windows, desc="stitch windows"):
                buf = _fill_window(win, plist, emb)
                seen_data = seen_data or bool(np.isfinite(buf).all(axis=-1).any())
                if sdst is not None:
                    q, scale = quantize(buf)
                    dst.write(np.moveaxis(q, -1, 0), window=win)
                    sdst.write(scale, 1, window=win)
                else:
                    dst.write(np.moveaxis(buf, -1, 0), window=win)
        if not seen_data and not allow_empty:
            raise InputError(f"{emb}: no patch has a valid embedding pixel, the map would be all nodata; "
                             "rerun infer (or pass --allow-empty to write it anyway)")
        check_written(tmp, out)
        if stmp is not None:
            check_written(stmp, scale_out)
    return {"out": str(out), "scale": str(scale_out) if dtype == "int8" else None, "width": W, "height": H,
            "dtype": dtype, "windows": len(windows), "missing_patches": len(missing)}


def _fill_window(win: Window, plist: list[tuple[str, str, int, int, int, int]], emb: Path) -> np.ndarray:
    """(h, w, 128) float32 of one output window from the patches that overlap it (NaN elsewhere)."""
    r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    buf = np.full((h, w, EMBED_DIM), np.nan, np.float32)
    for b, p, pr, pc, ph, pw in plist:
        rr0, rr1 = max(r0, pr), min(r0 + h, pr + ph)
        cc0, cc1 = max(c0, pc), min(c0 + w, pc + pw)
        if rr0 >= rr1 or cc0 >= cc1:
            continue
        path = emb / b / f"{p}.npy"
        if not path.exists():
            continue  # allowed missing: stays NaN
        try:
            arr, scale = open_embedding(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable embedding ({exc}); delete it and rerun infer") from None
        if arr.shape != (ph, pw, EMBED_DIM):
            raise InputError(f"{path}: shape {arr.shape}, expected {(ph, pw, EMBED_DIM)}; delete it and rerun infer")
        sl = (slice(rr0 - pr, rr1 - pr), slice(cc0 - pc, cc1 - pc))
        part = np.asarray(arr[sl], dtype=np.float32) if scale is None else dequantize(arr[sl], np.asarray(scale[sl]))
        buf[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = part
    return buf


def write_preview(tif: Path, png: Path, max_side: int = 1024) -> None:
    """A PNG of embedding dims 1-3 as RGB (2-98 % stretch), read decimated (memory ~ max_side**2)."""
    from PIL import Image

    with open_raster(tif) as ds:
        f = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
        shape = (3, max(1, ds.height // f), max(1, ds.width // f))
        is_int8 = ds.dtypes[0] == "int8"
        rgb = ds.read([1, 2, 3], out_shape=shape, masked=False).astype(np.float32)
    if is_int8:
        rgb[rgb == NODATA_INT8] = np.nan
    img = np.zeros((*shape[1:], 3), np.uint8)
    for i in range(3):
        band = rgb[i]
        ok = np.isfinite(band)
        if ok.any():
            lo, hi = np.percentile(band[ok], [2, 98])
            img[..., i] = np.where(ok, np.clip((band - lo) / max(hi - lo, 1e-9) * 255, 0, 255), 0).astype(np.uint8)
    sweep_temporaries(png)
    with one_line_errors(png, fix="check the output folder and free space"), atomic_path(png) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc stitch --patches DIR --emb DIR --out map.tif [--dtype int8]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc stitch", description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=Path, required=True, help="retile output folder (grid.json)")
    ap.add_argument("--emb", type=Path, required=True, help="infer output folder")
    ap.add_argument("--out", type=Path, required=True, help="output GeoTIFF")
    ap.add_argument("--dtype", choices=("float32", "int8"), default="float32")
    ap.add_argument("--tile", type=int, default=512, help="tile side = window side (default 512)")
    ap.add_argument("--allow-missing", action="store_true", help="nodata for patches without embeddings")
    ap.add_argument("--cache-mb", type=int, default=64, help="GDAL block cache in MiB (default 64)")
    ap.add_argument("--preview", action="store_true", help="also write <out>.png (dims 1-3 as RGB)")
    ap.add_argument("--allow-empty", action="store_true", help="write a map with no valid pixel instead of failing")
    args = ap.parse_args(argv)

    def work() -> int:
        res = stitch(args.patches, args.emb, args.out, args.dtype, args.tile, args.allow_missing, args.cache_mb,
                     args.allow_empty)
        if args.preview:
            write_preview(args.out, args.out.with_suffix(".png"))
            res["preview"] = str(args.out.with_suffix(".png"))
        print(json.dumps(res))
        return 0

    return run_cli(work, "geohpc.stitch")


if __name__ == "__main__":
    sys.exit(main())
