"""stack: per-date rasters -> TESSERA bands/masks/doys and S1 arrays per orbit (one item: the AOI)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.embed.layout import STACK_JSON
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / STACK_JSON


STAGE = Stage(
    name="stack",
    summary="stack downloaded dates into bands (T,H,W,10) uint16, masks, doys and S1 (T',H,W,2) per orbit",
    build_manifest=lambda ctx: ["aoi"],
    output_for=_output,
    after=("download",),
    defaults={**_embed.DEFAULTS, "STACK_BLOCK": "1024"},
    paths=_embed.PATHS,
)
