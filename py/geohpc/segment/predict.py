"""predict: a trained geohpc.fit model over embedding rasters -> uint8 class COG with a colour table.

Tiles of ``--tile`` pixels overlap by ``--overlap``; each tile's class probabilities are weighted
by a ramp (linear or cosine) that falls toward the tile's edges and summed, so seams vanish. Rows
are finished and written as soon as no later tile touches them: memory is one tile row of
accumulators (classes x tile x width x 4 bytes), never the whole raster.

Sharding: a work item ``RASTER::i/n`` predicts horizontal strip i of n (``RASTER`` alone = the
whole raster). The tile grid is global, so strips join without seams. Under torchrun each rank
takes its own sub-strip (strip ``i*W + rank`` of ``n*W``). Output nodata (255) marks pixels whose
embedding is invalid (NaN/inf or the raster's nodata in every band).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.progress import progress
from geohpc.util import atomic_path

NODATA = 255


def parse_item(item: str) -> tuple[str, int, int]:
    """``"a.tif::2/4"`` -> ``("a.tif", 2, 4)``; ``"a.tif"`` -> ``("a.tif", 0, 1)``."""
    path, sep, shard = item.rpartition("::")
    if not sep:
        return item, 0, 1
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise ConfigError(f"work item {item!r}: shard must look like RASTER::i/n (e.g. scene.tif::0/4)") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"work item {item!r}: shard index must satisfy 0 <= i < n")
    return path, i, n


def output_name(raster: str, i: int, n: int) -> str:
    """The output file name for strip ``i`` of ``n`` of ``raster``."""
    stem = Path(raster).name.rsplit(".", 1)[0]
    return f"{stem}.tif" if n == 1 else f"{stem}.part{i:03d}of{n:03d}.tif"


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``size`` pixels; the last tile is pulled back to end at the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def blend_weights(tile: int, overlap: int, kind: str = "cosine") -> np.ndarray:
    """A (tile, tile) weight: 1 in the middle, ramping down over ``overlap`` pixels toward every edge."""
    d = np.minimum(np.arange(tile), np.arange(tile)[::-1]).astype(np.float64)
    ramp = np.clip((d + 0.5) / max(1, overlap), 1e-3, 1.0)
    if kind == "cosine":
        ramp = np.sin(ramp * np.pi / 2) ** 2
    elif kind != "linear":
        raise ConfigError(f"--blend {kind!r}: choose linear or cosine")
    return np.outer(ramp, ramp).astype(np.float32).clip(1e-6)


def _valid_mask(x: np.ndarray, nodata: float | None) -> np.ndarray:
    valid = np.isfinite(x).all(axis=0)
    if nodata is not None:
        valid &= ~(x == nodata).all(axis=0)
    return valid


def predict_raster(model_path: str | Path, raster: str, out_dir: str | Path, *, shard: tuple[int, int] = (0, 1),
                   tile: int = 256, overlap: int = 64, batch: int = 8, blend: str = "cosine", fmt: str = "cog",
                   device: str = "auto") -> Path:
    """Predict strip ``shard`` of ``raster`` with the model in ``model_path``; return the output path.

    Parameters
    ----------
    model_path : path
        ``model.pt`` (or ``last.pt``) from ``geohpc.fit``; it carries its architecture, classes and
        channel normalisation.
    raster : str
        Embedding GeoTIFF with the model's band count.
    out_dir : path
        Output folder; the file is written to a temporary name and renamed when complete.
    shard : (i, n)
        Horizontal strip ``i`` of ``n``.
    tile, overlap, batch : int
        Tile size, overlap between neighbouring tiles, tiles per forward pass.
    blend : {"cosine", "linear"}
        Ramp shape of the blending weights.
    fmt : {"cog", "gtiff"}
        Cloud-optimised GeoTIFF (:func:`geohpc.cog.make_cog`: overviews by mode, validated) or a plain
        tiled GeoTIFF.
    device : {"auto", "cuda", "cpu"}
    """
    try:
        import rasterio
        from rasterio.windows import Window
    except ImportError as exc:  # the GPU container may lack GDAL: point at the deps venv
        raise ConfigError("rasterio is not importable in this runtime: set CONTAINER_PYTHONPATH in the site file "
                          "to a deps venv made with the container's python (RUNBOOK: deps venv)") from exc
    import torch

    from geohpc.raster_io import check_georeferenced, open_raster
    from geohpc.segment.fit.ckpt import load_model
    from geohpc.segment.fit.model import UNET_LEVELS

    if overlap < 0 or overlap >= tile:
        raise ConfigError(f"--overlap {overlap} must be >= 0 and smaller than --tile {tile}")
    if fmt not in ("cog", "gtiff"):
        raise ConfigError(f"--format {fmt!r}: choose cog or gtiff")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # under torchrun each rank takes its own GPU
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())) \
        if device == "cuda" else torch.device("cpu")
    model, info = load_model(model_path, dev)
    kw = info["model_kwargs"]
    k = int(kw["n_classes"])
    mult = 2**UNET_LEVELS if kw["arch"] == "unet" else 1
    i, n = shard
    out = Path(out_dir) / output_name(raster, i, n)
    with open_raster(raster) as src:
        check_georeferenced(src)
        if src.count != kw["in_ch"]:
            raise InputError(f"{raster}: has {src.count} bands but the model {model_path} expects {kw['in_ch']}; "
                             "predict with a model trained on the same embeddings")
        h, w = src.height, src.width
        r0, r1 = (i * h) // n, ((i + 1) * h) // n
        if r1 <= r0:
            raise ConfigError(f"{raster}: {h} rows cannot make {n} strips; use fewer shards")
        t_pad = int(math.ceil(tile / mult) * mult)
        stride = tile - overlap
        ys = [y for y in tile_starts(h, tile, stride) if y < r1 and y + tile > r0]
        xs = tile_starts(w, tile, stride)
        wt = blend_weights(tile, overlap, blend)
        cmap = {c["index"]: tuple(c["color"]) + (255,) for c in info["classes"]}
        cmap.update({j: (0, 0, 0, 0) for j in range(256) if j not in cmap})
        prof: dict[str, Any] = {"driver": "GTiff", "width": w, "height": r1 - r0, "count": 1, "dtype": "uint8",
                                "crs": src.crs, "transform": src.window_transform(Window(0, r0, w, r1 - r0)),
                                "nodata": NODATA, "tiled": True, "blockxsize": 256, "blockysize": 256,
                                "compress": "deflate"}
        acc = np.zeros((k, tile, w), np.float32)
        valid_buf = np.zeros((tile, w), bool)
        top = r0  # first output row not yet written; acc row 0 is raster row ``top``
        with _written(out, fmt) as tmp, rasterio.open(tmp, "w", **prof) as dst:
            dst.write_colormap(1, cmap)

            def flush(upto: int) -> None:
                nonlocal top, acc, valid_buf
                rows = min(upto, r1) - top
                if rows <= 0:
                    return
                cls = acc[:, :rows].argmax(0).astype(np.uint8)
                cls[~valid_buf[:rows]] = NODATA
                dst.write(cls, 1, window=Window(0, top - r0, w, rows))
                acc = np.concatenate([acc[:, rows:], np.zeros((k, rows, w), np.float32)], axis=1)
                valid_buf = np.concatenate([valid_buf[rows:], np.zeros((rows, w), bool)])
                top += rows

            for y in progress(ys, total=len(ys), desc=f"predict {Path(raster).name} strip {i}/{n}"):
                if y > top:
                    flush(y)
                for b in range(0, len(xs), batch):
                    cols = xs[b:b + batch]
                    xb = np.zeros((len(cols), src.count, t_pad, t_pad), np.float32)
                    vb = np.zeros((len(cols), tile, tile), bool)
                    for j, x0 in enumerate(cols):
                        x = src.read(window=Window(x0, y, min(tile, w - x0), min(tile, h - y)), out_dtype="float32")
                        v = _valid_mask(x, src.nodata)
                        x[:, ~v] = 0.0
                        xb[j, :, : x.shape[1], : x.shape[2]] = x
                        vb[j, : v.shape[0], : v.shape[1]] = v
                    with torch.inference_mode():
                        xt = torch.from_numpy(xb).to(dev)
                        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                            logits = model(xt)
                        prob = torch.softmax(logits.float(), 1)[:, :, :tile, :tile].cpu().numpy()
                    lo = max(y, top)  # rows above ``top`` belong to the previous strip
                    hi = min(y + tile, h, r1)
                    for j, x0 in enumerate(cols):
                        cw = min(tile, w - x0)
                        acc[:, lo - top:hi - top, x0:x0 + cw] += (prob[j] * wt)[:, lo - y:hi - y, :cw]
                        valid_buf[lo - top:hi - top, x0:x0 + cw] |= vb[j, lo - y:hi - y, :cw]
            flush(r1)
    return out


@contextlib.contextmanager
def _written(out: Path, fmt: str) -> Iterator[Path]:
    """Yield where to write the tiled strip; on success it becomes ``out`` (via a COG copy for fmt="cog")."""
    if fmt == "gtiff":
        with atomic_path(out) as tmp:
            yield tmp
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    strip = out.parent / f".{out.name}.{os.getpid()}.strip.tmp.tif"
    try:
        yield strip
        from geohpc.products.cog import (
            make_cog,  # lossless, atomic, validated; class maps get "mode" overviews
        )

        make_cog(strip, out, blocksize=256, force=True)
    finally:
        strip.unlink(missing_ok=True)


def write_preview(tif: str | Path, max_px: int = 1024) -> Path:
    """A PNG quicklook of a class GeoTIFF (its colour table, nodata transparent), at most ``max_px`` a side."""
    import rasterio
    from PIL import Image

    tif = Path(tif)
    png = tif.with_suffix(".png")
    with rasterio.open(tif) as ds:
        scale = max(1, math.ceil(max(ds.width, ds.height) / max_px))
        cls = ds.read(1, out_shape=(max(1, ds.height // scale), max(1, ds.width // scale)))  # nearest
        lut = np.zeros((256, 4), np.uint8)
        for k, rgba in ds.colormap(1).items():
            lut[k] = rgba
    lut[NODATA] = (0, 0, 0, 0)
    with atomic_path(png) as tmp:
        Image.fromarray(lut[cls], "RGBA").save(tmp, format="PNG")
    return png


def _predict_dir_strip(item: str) -> tuple[str, int, int]:
    """Apply torchrun's rank to an item's shard: strip ``i*W + rank`` of ``n*W``."""
    raster, i, n = parse_item(item)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return raster, i * world + rank, n * world


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc predict --model model.pt --item RASTER[::i/n] --out DIR``."""
    p = argparse.ArgumentParser(prog="python -m geohpc predict", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model.pt from geohpc.fit")
    p.add_argument("--item", required=True, nargs="+", help="RASTER or RASTER::i/n (strip i of n)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch", type=int, default=8, help="tiles per forward pass")
    p.add_argument("--blend", choices=["cosine", "linear"], default="cosine")
    p.add_argument("--format", dest="fmt", choices=["cog", "gtiff"], default="cog")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--no-preview", dest="preview", action="store_false", help="skip the PNG quicklook beside each map")
    a = p.parse_args(argv)

    def work() -> int:
        for item in a.item:
            raster, i, n = _predict_dir_strip(item)
            path = predict_raster(a.model, raster, a.out, shard=(i, n), tile=a.tile, overlap=a.overlap,
                                  batch=a.batch, blend=a.blend, fmt=a.fmt, device=a.device)
            print(path)
            if a.preview:
                print(f"predict: preview {write_preview(path)}", file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.predict")


if __name__ == "__main__":
    sys.exit(main())
