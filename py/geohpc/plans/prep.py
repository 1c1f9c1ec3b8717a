"""prep: embedding rasters + label raster -> sharded chips (one task; it resumes shard by shard)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _manifest(ctx: StageContext) -> list[str]:
    for key in ("EMBEDDINGS", "LABELS", "CLASSES"):
        if not ctx.param(key):
            raise ConfigError(f"stage prep needs {key}=... on the make line "
                              "(EMBEDDINGS='<glob>' LABELS=<raster> CLASSES=1:corn,5:soy)")
    return ["prep"]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "meta.json"


STAGE = Stage(
    name="prep",
    summary="embedding rasters + label raster -> sharded training chips, channel stats, class frequencies",
    build_manifest=_manifest,
    output_for=_output,
    defaults={"CHIP": "256", "BLOCK_CHIPS": "4"},
    paths=("EMBEDDINGS", "LABELS"),
)
