"""Shared layout of the embedding chain: the AOI grid, block and patch names, file names.

Standard library only: the plan files, the job-side modules and ``geohpc.infer`` (which runs in a
container with numpy and torch but no GDAL) all import it.

The chain writes, under each stage's output folder::

    download/<item_id>/<BAND>.tif + _DONE.json (or _SKIPPED.json)
    stack/bands.npy masks.npy doys.npy sar_ascending.npy sar_ascending_doy.npy
          sar_descending.npy sar_descending_doy.npy stack.json
    retile/grid.json  retile/<block>/patch_list.txt  retile/<block>/<patch>/{bands,masks,doys,...}.npy
    infer/<block>/<patch>.npy (+ <patch>_scale.npy for int8)
    stitch/embeddings.tif (+ embeddings_scale.tif for int8)

A block is named ``block_r<row0>_c<col0>`` and a patch ``r<row0>_c<col0>`` by the pixel offsets of
their upper-left corner on the AOI grid, so every name says where it goes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

# TESSERA's Sentinel-2 band order. NOT wavelength order: reordering silently corrupts inference.
S2_BANDS: tuple[str, ...] = ("B04", "B02", "B03", "B08", "B8A", "B05", "B06", "B07", "B11", "B12")
S2_MASK_BAND = "SCL"
S1_BANDS: tuple[str, ...] = ("VV", "VH")
ORBITS: tuple[str, ...] = ("ascending", "descending")
DONE_MARKER = "_DONE.json"
SKIP_MARKER = "_SKIPPED.json"
PATCH_LIST = "patch_list.txt"
GRID_JSON = "grid.json"
STACK_JSON = "stack.json"
EMBED_DIM = 128

_BLOCK_RE = re.compile(r"^block_r(\d+)_c(\d+)$")
_PATCH_RE = re.compile(r"^r(\d+)_c(\d+)$")


@dataclass(frozen=True)
class Grid:
    """A north-up grid: ``crs`` (e.g. ``EPSG:32635``), upper-left ``x0, y0``, square pixel ``res``, size."""

    crs: str
    x0: float
    y0: float
    res: float
    width: int
    height: int

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine coefficients (a, b, c, d, e, f) as rasterio's ``Affine`` takes them."""
        return (self.res, 0.0, self.x0, 0.0, -self.res, self.y0)

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict (``Grid(**d)`` reads it back)."""
        return {"crs": self.crs, "x0": self.x0, "y0": self.y0, "res": self.res,
                "width": self.width, "height": self.height}


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``minx,miny,maxx,maxy`` (commas or spaces) into floats; ValueError with the fix otherwise."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if len(parts) != 4:
        raise ValueError(f"BBOX {text!r} needs four numbers: minx,miny,maxx,maxy (in the AOI CRS)")
    minx, miny, maxx, maxy = (float(p) for p in parts)
    if not (maxx > minx and maxy > miny):
        raise ValueError(f"BBOX {text!r} is empty or inverted: it must be minx,miny,maxx,maxy with max > min")
    return minx, miny, maxx, maxy


def grid_from_bbox(bbox: tuple[float, float, float, float], crs: str, res: float = 10.0) -> Grid:
    """The AOI grid: ``bbox`` snapped outwards to multiples of ``res`` (so grids of one CRS line up)."""
    if res <= 0:
        raise ValueError(f"RES must be positive, got {res}")
    minx, miny, maxx, maxy = bbox
    x0 = math.floor(minx / res) * res
    y1 = math.ceil(maxy / res) * res
    x1 = math.ceil(maxx / res) * res
    y0 = math.floor(miny / res) * res
    return Grid(crs=crs, x0=x0, y0=y1, res=res, width=round((x1 - x0) / res), height=round((y1 - y0) / res))


def block_name(row: int, col: int) -> str:
    """Name of the block whose upper-left pixel is (row, col)."""
    return f"block_r{row:06d}_c{col:06d}"


def patch_name(row: int, col: int) -> str:
    """Name of the patch whose upper-left pixel is (row, col)."""
    return f"r{row:06d}_c{col:06d}"


def parse_block(name: str) -> tuple[int, int]:
    """(row, col) of a block name; ValueError for anything else."""
    m = _BLOCK_RE.match(name)
    if not m:
        raise ValueError(f"not a block name: {name!r} (expected block_r<row>_c<col>)")
    return int(m.group(1)), int(m.group(2))


def parse_patch(name: str) -> tuple[int, int]:
    """(row, col) of a patch name (the last path component of a manifest line)."""
    m = _PATCH_RE.match(name.rsplit("/", 1)[-1])
    if not m:
        raise ValueError(f"not a patch name: {name!r} (expected [block_.../]r<row>_c<col>)")
    return int(m.group(1)), int(m.group(2))


def iter_blocks(height: int, width: int, block: int) -> Iterator[tuple[str, int, int, int, int]]:
    """``(name, row, col, h, w)`` of every block of a ``height`` x ``width`` grid, row-major."""
    if block <= 0:
        raise ValueError(f"block size must be positive, got {block}")
    for r in range(0, height, block):
        for c in range(0, width, block):
            yield block_name(r, c), r, c, min(block, height - r), min(block, width - c)


def iter_patches(height: int, width: int, block: int, patch: int) -> Iterator[tuple[str, str, int, int, int, int]]:
    """``(block, patch, row, col, h, w)`` of every patch: P x P tiles inside each block (edges smaller)."""
    if patch <= 0:
        raise ValueError(f"patch size must be positive, got {patch}")
    for bname, br, bc, bh, bw in iter_blocks(height, width, block):
        for r in range(br, br + bh, patch):
            for c in range(bc, bc + bw, patch):
                yield bname, patch_name(r, c), r, c, min(patch, br + bh - r), min(patch, bc + bw - c)


def block_patches(height: int, width: int, block: int, patch: int, name: str) -> list[str]:
    """Manifest lines ``<block>/<patch>`` of one block."""
    return [f"{b}/{p}" for b, p, *_ in iter_patches(height, width, block, patch) if b == name]
