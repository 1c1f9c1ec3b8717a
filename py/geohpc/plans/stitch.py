"""stitch: patch embeddings -> one tiled, compressed 128-band GeoTIFF on the AOI grid (one item)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "embeddings.tif"


def _done(item: str, ctx: StageContext) -> bool:
    """Done means valid: the map (and the int8 scale file) opens and its last tile reads."""
    out = _output(item, ctx)
    if ctx.param("EMB_DTYPE") == "int8" and not _embed.valid_raster(out.with_name(out.stem + "_scale.tif")):
        return False
    return _embed.valid_raster(out)


def _bytes(item: str, ctx: StageContext) -> int:
    g = _embed.grid(ctx)
    per_px = 128 + 4 if ctx.param("EMB_DTYPE") == "int8" else 128 * 4
    return g.width * g.height * per_px  # uncompressed upper bound


STAGE = Stage(
    name="stitch",
    summary="stitch patch embeddings into one tiled ZSTD 128-band GeoTIFF (float32 or int8 + scale)",
    build_manifest=lambda ctx: ["embeddings"],
    output_for=_output,
    is_done=_done,
    after=("infer",),
    output_bytes=_bytes,
    defaults={**_embed.DEFAULTS, "EMB_DTYPE": "float32", "STITCH_TILE": "512"},
    paths=_embed.PATHS,
)
