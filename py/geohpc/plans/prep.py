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


def _done(item: str, ctx: StageContext) -> bool:
    # done means meta.json (written last) is whole and every part it lists has the size it records
    import json

    meta_path = _output(item, ctx)
    try:
        parts = json.loads(meta_path.read_text())["parts"]
        return all((meta_path.parent / name).stat().st_size == size for name, size in parts.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


STAGE = Stage(
    name="prep",
    summary="embedding rasters + label raster -> sharded training chips, channel stats, class frequencies",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    defaults={"CHIP": "256", "BLOCK_CHIPS": "4"},
    paths=("EMBEDDINGS", "LABELS"),
)
