"""Shared planning for the embedding chain (download -> stack -> retile -> infer -> stitch); stdlib only.

Each stage reads its input from the previous stage's output folder, ``<SCRATCH>/outputs/<stage>``
unless the make line names it: DOWNLOAD_DIR, STACK_DIR, PATCH_DIR, EMB_DIR. The AOI grid comes from
BBOX (minx,miny,maxx,maxy), AOI_CRS (default EPSG:32635) and RES (default 10), or from the stack's
``stack.json`` once it exists, so the retile and infer arrays can be planned before the stack ran.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

from geohpc.core.stages import StageContext
from geohpc.embed.layout import STACK_JSON, Grid, grid_from_bbox, iter_blocks, iter_patches, parse_bbox
from geohpc.errors import ConfigError

DIR_PARAMS = {"download": "DOWNLOAD_DIR", "stack": "STACK_DIR", "retile": "PATCH_DIR", "infer": "EMB_DIR",
              "stitch": "STITCH_DIR"}
# the chain's parameter defaults (one home: plans and job.env read them from here)
DEFAULTS = {"AOI_CRS": "EPSG:32635", "RES": "10", "BLOCK": "2000", "PATCH": "500",
            **{key: f"outputs/{stage}" for stage, key in DIR_PARAMS.items()}}
PATHS = tuple(DIR_PARAMS.values())


def valid_raster(path: Path) -> bool:
    """Done means valid: the raster opens and its last block reads (lazy import: plans stay stdlib-only)."""
    if not path.is_file():
        return False
    from geohpc.raster_io import verify_raster

    return verify_raster(path) is None


def valid_json(path: Path) -> dict[str, object] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def npy_whole(path: Path, shape: tuple[int, ...] | None = None) -> bool:
    """True when ``path`` is a .npy file whose header reads (of ``shape`` when given) and whose data is all
    on disk (the size the header implies: the last row was written). Standard library only."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if head[:6] != b"\x93NUMPY":
                return False
            major = head[6]
            if major == 1:
                hlen, start = int.from_bytes(head[8:10], "little"), 10
            else:
                hlen, start = int.from_bytes(head[8:10] + f.read(2), "little"), 12
            header = ast.literal_eval(f.read(hlen).decode("latin1"))
        got = tuple(int(v) for v in header["shape"])
        descr = str(header["descr"])
        itemsize = int(re.sub(r"^[<>|=]?[a-zA-Z]", "", descr) or 0)
        size = path.stat().st_size
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return False
    if shape is not None and got != tuple(shape):
        return False
    return itemsize > 0 and size == start + hlen + math.prod(got) * itemsize


def stage_dir(ctx: StageContext, stage: str) -> Path:
    """Output folder of ``stage`` as seen from ``ctx`` (its own out_dir for the current stage)."""
    if stage == ctx.stage:
        return ctx.out_dir
    key = DIR_PARAMS[stage]
    return ctx.path_param(key, DEFAULTS[key])


def grid(ctx: StageContext) -> Grid:
    """The AOI grid: from the stack's stack.json when present, else from BBOX/AOI_CRS/RES."""
    meta = stage_dir(ctx, "stack") / STACK_JSON
    if meta.exists() and not ctx.param("BBOX"):
        return Grid(**json.loads(meta.read_text())["grid"])
    bbox = ctx.param("BBOX")
    if not bbox:
        raise ConfigError(f"stage {ctx.stage} needs BBOX=minx,miny,maxx,maxy (AOI in AOI_CRS, default EPSG:32635)")
    try:
        return grid_from_bbox(parse_bbox(bbox), ctx.param("AOI_CRS", DEFAULTS["AOI_CRS"]), float(ctx.param("RES", DEFAULTS["RES"])))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def sizes(ctx: StageContext) -> tuple[int, int]:
    """(BLOCK, PATCH) from the make line, else :data:`DEFAULTS`."""
    try:
        block, patch = int(ctx.param("BLOCK", DEFAULTS["BLOCK"])), int(ctx.param("PATCH", DEFAULTS["PATCH"]))
    except ValueError:
        raise ConfigError("BLOCK and PATCH must be whole numbers of pixels") from None
    if not 0 < patch <= block:
        raise ConfigError(f"PATCH={patch} BLOCK={block}: need 0 < PATCH <= BLOCK")
    return block, patch


def blocks(ctx: StageContext) -> list[str]:
    """Block names of the AOI: the manifest of retile and infer."""
    g = grid(ctx)
    return [b for b, *_ in iter_blocks(g.height, g.width, sizes(ctx)[0])]


def patches_of(ctx: StageContext, block: str) -> list[tuple[str, int, int]]:
    """(``<block>/<patch>``, h, w) of every patch of ``block``."""
    g = grid(ctx)
    b_sz, p_sz = sizes(ctx)
    return [(f"{b}/{p}", h, w) for b, p, _, _, h, w in iter_patches(g.height, g.width, b_sz, p_sz) if b == block]
