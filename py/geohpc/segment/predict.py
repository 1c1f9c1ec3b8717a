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
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.segment.items import output_name, parse_item  # noqa: F401 - re-exported
from geohpc.util import atomic_path, redact

NODATA = 255


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
                   device: str = "auto", preview: bool = False, allow_empty: bool = False) -> Path:
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
    preview : bool
        Also write the PNG quicklook ``<out>.png`` (renamed just before the map; removed if the map fails).
    allow_empty : bool
        Write a map with no valid pixel (every embedding pixel nodata) instead of raising :class:`InputError`.
    """
    try:
        import rasterio
        from rasterio.windows import Window
    except ImportError as exc:  # the GPU container may lack GDAL: point at the deps venv
        raise ConfigError("rasterio is not importable in this runtime: set CONTAINER_PYTHONPATH in the site file "
                          "to a deps venv made with the container's python (RUNBOOK: deps venv)") from exc

    from geohpc.raster_io import check_georeferenced, open_raster, verify_raster
    from geohpc.segment.fit.ckpt import load_model
    from geohpc.segment.fit.model import UNET_LEVELS

    if overlap < 0 or overlap >= tile:
        raise ConfigError(f"--overlap {overlap} must be >= 0 and smaller than --tile {tile}")
    if fmt not in ("cog", "gtiff"):
        raise ConfigError(f"--format {fmt!r}: choose cog or gtiff")
    i, n = shard
    out = Path(out_dir) / output_name(raster, i, n)
    png = out.with_suffix(".png")
    # outputs are named after the raster: its folder may not be the output folder; the model may not be an output
    refuse_overwrite([raster], [out, png], folders=[out_dir], fix="give --out a folder of its own")
    refuse_overwrite([model_path], [out, png], fix="give --out a folder of its own")
    if out.is_dir():
        raise InputError(f"{out}: the output is a directory; remove it or give another --out")
    for target in (out, png):
        sweep_temporaries(target)
    dev = _device(device)
    model, info = load_model(model_path, dev)
    kw = info["model_kwargs"]
    mult = 2**UNET_LEVELS if kw["arch"] == "unet" else 1
    new_png = False
    with open_raster(raster) as src:
        check_georeferenced(src)
        if src.count != kw["in_ch"]:
            raise InputError(f"{raster}: has {src.count} bands but the model {model_path} expects {kw['in_ch']}; "
                             "predict with a model trained on the same embeddings")
        h, w = src.height, src.width
        r0, r1 = (i * h) // n, ((i + 1) * h) // n
        if r1 <= r0:
            raise ConfigError(f"{raster}: {h} rows cannot make {n} strips; use fewer shards")
        stride = tile - overlap
        ys = [y for y in tile_starts(h, tile, stride) if y < r1 and y + tile > r0]
        xs = tile_starts(w, tile, stride)
        wt = blend_weights(tile, overlap, blend)
        t_pad = int(math.ceil(tile / mult) * mult)
        prof: dict[str, Any] = {"driver": "GTiff", "width": w, "height": r1 - r0, "count": 1, "dtype": "uint8",
                                "crs": src.crs, "transform": src.window_transform(Window(0, r0, w, r1 - r0)),
                                "nodata": NODATA, "tiled": True, "blockxsize": 256, "blockysize": 256,
                                "compress": "deflate"}
        try:
            with _written(out, fmt) as tmp:
                with rasterio.open(tmp, "w", **prof) as dst:
                    dst.write_colormap(1, _colormap(info["classes"]))
                    strip = _Strip(dst, int(kw["n_classes"]), tile, w, r0, r1)
                    for y in progress(ys, total=len(ys), desc=redact(f"predict {Path(raster).name} strip {i}/{n}")):
                        strip.flush(y)
                        for b in range(0, len(xs), batch):
                            cols = xs[b:b + batch]
                            xb, vb = _read_tiles(src, y, cols, tile, t_pad)
                            prob = _probabilities(model, dev, xb, tile)
                            for j, x0 in enumerate(cols):
                                strip.add(prob[j] * wt, vb[j], y, x0, h)
                    strip.flush(r1)
                if strip.n_valid == 0 and not allow_empty:
                    raise InputError(f"{raster}: strip {i}/{n} has no valid embedding pixel (all nodata), so its class map "
                                     "would be empty; check the raster's nodata, or pass --allow-empty")
                if (why := verify_raster(tmp)) is not None:  # GDAL reports some write errors only on reading back
                    raise InputError(f"{out}: the written class map does not read back ({why}); check the free space")
                if preview:
                    write_preview(tmp, png=png)
                    new_png = True
        except BaseException:
            if new_png:  # this run's quicklook of a map that was never completed
                png.unlink(missing_ok=True)
            raise
    return out


def _device(device: str):  # noqa: ANN202 - a torch.device
    """``auto`` -> cuda when present; under torchrun each rank takes its own GPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))


def _colormap(classes: list[dict[str, Any]]) -> dict[int, tuple[int, ...]]:
    """The class colours (opaque); every other value transparent."""
    cmap = {c["index"]: tuple(c["color"]) + (255,) for c in classes}
    cmap.update({j: (0, 0, 0, 0) for j in range(256) if j not in cmap})
    return cmap


def _read_tiles(src, y: int, cols: list[int], tile: int, t_pad: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The tiles at row ``y`` and columns ``cols``, zero-padded to ``t_pad``; and where their pixels are valid."""
    from rasterio.windows import Window

    xb = np.zeros((len(cols), src.count, t_pad, t_pad), np.float32)
    vb = np.zeros((len(cols), tile, tile), bool)
    for j, x0 in enumerate(cols):
        x = src.read(window=Window(x0, y, min(tile, src.width - x0), min(tile, src.height - y)), out_dtype="float32")
        v = _valid_mask(x, src.nodata)
        x[:, ~v] = 0.0
        xb[j, :, : x.shape[1], : x.shape[2]] = x
        vb[j, : v.shape[0], : v.shape[1]] = v
    return xb, vb


def _probabilities(model, dev, xb: np.ndarray, tile: int) -> np.ndarray:  # noqa: ANN001
    """Class probabilities (batch, classes, tile, tile); bf16 autocast on GPU."""
    import torch

    with torch.inference_mode():
        xt = torch.from_numpy(xb).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(xt)
        return torch.softmax(logits.float(), 1)[:, :, :tile, :tile].cpu().numpy()


class _Strip:
    """The blended probabilities of one tile row of the strip ``[r0, r1)``; rows are written once final.

    Memory is classes x tile x width float32, never the whole raster.
    """

    def __init__(self, dst, k: int, tile: int, w: int, r0: int, r1: int) -> None:  # noqa: ANN001
        self.dst, self.k, self.w, self.r0, self.r1 = dst, k, w, r0, r1
        self.acc = np.zeros((k, tile, w), np.float32)
        self.valid = np.zeros((tile, w), bool)
        self.top = r0  # first output row not yet written; acc row 0 is raster row ``top``
        self.n_valid = 0  # pixels written with a class (not nodata)

    def add(self, weighted: np.ndarray, valid: np.ndarray, y: int, x0: int, h: int) -> None:
        """Add one tile's weighted probabilities at raster row ``y``, column ``x0``."""
        lo = max(y, self.top)  # rows above ``top`` belong to the previous strip
        hi = min(y + weighted.shape[1], h, self.r1)
        cw = min(weighted.shape[2], self.w - x0)
        self.acc[:, lo - self.top:hi - self.top, x0:x0 + cw] += weighted[:, lo - y:hi - y, :cw]
        self.valid[lo - self.top:hi - self.top, x0:x0 + cw] |= valid[lo - y:hi - y, :cw]

    def flush(self, upto: int) -> None:
        """Write the rows above ``upto`` (no later tile touches them) as classes; nodata where invalid."""
        from rasterio.windows import Window

        rows = min(upto, self.r1) - self.top
        if rows <= 0:
            return
        cls = self.acc[:, :rows].argmax(0).astype(np.uint8)
        cls[~self.valid[:rows]] = NODATA
        self.n_valid += int(self.valid[:rows].sum())
        self.dst.write(cls, 1, window=Window(0, self.top - self.r0, self.w, rows))
        self.acc = np.concatenate([self.acc[:, rows:], np.zeros((self.k, rows, self.w), np.float32)], axis=1)
        self.valid = np.concatenate([self.valid[rows:], np.zeros((rows, self.w), bool)])
        self.top += rows


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


def write_preview(tif: str | Path, max_px: int = 1024, png: Path | None = None) -> Path:
    """A PNG quicklook of a class GeoTIFF (its colour table, nodata transparent), at most ``max_px`` a side.

    Written to ``png`` (default: beside ``tif``, same stem) through a temporary file.
    """
    import rasterio
    from PIL import Image

    tif = Path(tif)
    png = png or tif.with_suffix(".png")
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
    p.add_argument("--allow-empty", action="store_true", help="write a map whose pixels are all nodata instead of failing")
    a = p.parse_args(argv)

    def work() -> int:
        for item in a.item:
            raster, i, n = _predict_dir_strip(item)
            with one_line_errors(Path(a.out), fix="check --out (writable, free space), the model and the raster",
                                 fresh_dirs=[Path(a.out)]):
                path = predict_raster(a.model, raster, a.out, shard=(i, n), tile=a.tile, overlap=a.overlap,
                                      batch=a.batch, blend=a.blend, fmt=a.fmt, device=a.device, preview=a.preview,
                                      allow_empty=a.allow_empty)
            print(redact(str(path)))
            if a.preview:
                print(redact(f"predict: preview {path.with_suffix('.png')}"), file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.predict")


if __name__ == "__main__":
    sys.exit(main())
