"""stack: per-date rasters -> TESSERA bands/masks/doys and S1 arrays per orbit (one item: the AOI)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.embed.layout import STACK_JSON
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / STACK_JSON


def _done(item: str, ctx: StageContext) -> bool:
    """Done means valid: stack.json reads and every array it implies is whole (its last row is on disk)."""
    meta = _embed.valid_json(_output(item, ctx))
    if meta is None or not isinstance(meta.get("grid"), dict) or not isinstance(meta.get("dates"), dict):
        return False
    g, dates = meta["grid"], meta["dates"]
    try:
        h, w = int(g["height"]), int(g["width"])
        n = {k: len(dates[k]) for k in ("s2", "ascending", "descending")}
    except (KeyError, TypeError, ValueError):
        return False
    want = {"bands": (n["s2"], h, w, 10), "masks": (n["s2"], h, w), "doys": (n["s2"],),
            "sar_ascending": (n["ascending"], h, w, 2), "sar_descending": (n["descending"], h, w, 2),
            "sar_ascending_doy": (n["ascending"],), "sar_descending_doy": (n["descending"],)}
    return all(_embed.npy_whole(ctx.out_dir / f"{name}.npy", shape) for name, shape in want.items())


STAGE = Stage(
    name="stack",
    summary="stack downloaded dates into bands (T,H,W,10) uint16, masks, doys and S1 (T',H,W,2) per orbit",
    build_manifest=lambda ctx: ["aoi"],
    output_for=_output,
    is_done=_done,
    after=("download",),
    defaults={**_embed.DEFAULTS, "STACK_BLOCK": "1024"},
    paths=_embed.PATHS,
)
