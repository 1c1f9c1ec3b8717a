"""Small inputs for the hostile walk of the products and embedding programs (built per test session).

Products: a class map (colour table, class legend tag, nodata 0), a 3-band float raster, an all-nodata
raster, and damaged copies (tile data garbage behind a good header, truncated, 0 bytes).
Embedding chain: a synthetic S1/S2 series downloaded, stacked and cut into patches, fake patch
embeddings for stitch, and the demo model for infer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from testutil import write_raster

CLASSES = '{"1": "wheat", "2": "maize", "3": "rape"}'
COLOURS = {0: (0, 0, 0, 0), 1: (230, 200, 40, 255), 2: (40, 160, 60, 255), 3: (200, 60, 60, 255)}
SIG = "sig=SuperSecretSignature123"


def class_map(path: Path, size: int = 300, seed: int = 0, origin: tuple[float, float] = (500000.0, 5000000.0)) -> Path:
    """A tiled uint8 class map with a colour table and the class legend tag."""
    import rasterio

    rng = np.random.default_rng(seed)
    data = rng.integers(1, 4, (1, size, size)).astype(np.uint8)
    write_raster(path, data, nodata=0, origin=origin, tiled=True, blockxsize=128, blockysize=128, compress="deflate")
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, COLOURS)
        ds.update_tags(GEOHPC_CLASSES=CLASSES)
    return path


def float_raster(path: Path, size: int = 300, bands: int = 3, seed: int = 1, **kw: object) -> Path:
    """A tiled float32 raster of smooth-ish random values."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1, (bands, size, size)).astype(np.float32)
    prof: dict[str, object] = {"tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate"}
    prof.update(kw)
    return write_raster(path, data, **prof)


def nodata_raster(path: Path, size: int = 200) -> Path:
    """Every pixel equal to the nodata value."""
    return write_raster(path, np.zeros((1, size, size), np.uint8), nodata=0, tiled=True, blockxsize=128,
                        blockysize=128)


def corrupt_body(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose header is intact and whose tile data is garbage."""
    from geohpc.raster_io import _tiff_parts

    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for offs, cnts in _tiff_parts(dst)[:1]:
            for o, c in zip(offs, cnts, strict=True):
                f.seek(o)
                f.write(bytes((i * 37 + 11) % 256 for i in range(c)))
    return dst


def truncated(src: Path, dst: Path) -> Path:
    """The first half of ``src``."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def products(root: Path) -> dict[str, Path]:
    """Every products input under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    cls = class_map(root / "cls.tif")
    cont = float_raster(root / "cont.tif")
    out = {"cls": cls, "cls2": class_map(root / "cls2.tif", seed=5, origin=(503000.0, 5000000.0)),
           "cont": cont, "nodata": nodata_raster(root / "nodata.tif"),
           "corrupt": corrupt_body(cls, root / "corrupt.tif"), "truncated": truncated(cls, root / "truncated.tif"),
           "empty": root / "empty.tif"}
    out["empty"].write_bytes(b"")
    return out


def chain(root: Path, size: int = 32) -> dict[str, Any]:
    """download -> stack -> retile (block 32, patch 16) of a small synthetic series, fake embeddings, a model."""
    from geohpc.embed import download, retile, stack
    from geohpc.embed import model as tm
    from geohpc.embed.layout import EMBED_DIM, grid_from_bbox, iter_patches, parse_bbox
    from geohpc.synth import s12
    from geohpc.util import write_json_atomic

    coll = s12.make_series(root / "synth", size=size, s2_dates=2, s1_dates=1, seed=1)
    write_json_atomic(root / "items.json", coll)
    bbox = ",".join(str(v) for v in s12.aoi_bbox(size))
    grid = grid_from_bbox(parse_bbox(bbox), "EPSG:32635", 10)
    download.download(root / "items.json", grid, root / "download", backoff=0.01)
    stack.build_stack(root / "download", root / "stack", block=16)
    retile.retile_all(root / "stack", root / "retile", block=32, patch=16)
    rng = np.random.default_rng(3)
    for b, p, _r, _c, h, w in iter_patches(grid.height, grid.width, 32, 16):
        (root / "emb" / b).mkdir(parents=True, exist_ok=True)
        np.save(root / "emb" / b / f"{p}.npy", rng.normal(0, 1, (h, w, EMBED_DIM)).astype(np.float32))
    tm.save_checkpoint(tm.build("demo", seed=0), str(root / "demo.pt"))
    first = (root / "retile" / "patches.txt").read_text().split()[0]
    return {"root": root, "items": root / "items.json", "bbox": bbox, "download": root / "download",
            "stack": root / "stack", "retile": root / "retile", "emb": root / "emb", "model": root / "demo.pt",
            "block": first.split("/")[0], "patch": first}
