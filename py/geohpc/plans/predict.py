"""predict: a fit model over embedding rasters -> class COGs; items are RASTER or RASTER::i/n strips."""

from __future__ import annotations

import glob
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.segment.items import output_name, parse_item


def _rasters(ctx: StageContext) -> list[str]:
    pattern = str(ctx.path_param("EMBEDDINGS"))
    hits = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    if not hits:
        raise ConfigError(f"EMBEDDINGS={pattern!r} matches no file")
    return hits


def _manifest(ctx: StageContext) -> list[str]:
    shards = ctx.param("SHARDS")
    if not shards.isdigit() or int(shards) < 1:
        raise ConfigError(f"SHARDS={shards!r}: give the number of strips per raster (1 or more)")
    n = int(shards)
    return [r if n == 1 else f"{r}::{i}/{n}" for r in _rasters(ctx) for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / output_name(*parse_item(item))


def _done(item: str, ctx: StageContext) -> bool:
    # done means the class COG opens and its last block decodes, never mere existence
    from geohpc.raster_io import verify_raster

    return verify_raster(_output(item, ctx)) is None


def _derived(ctx: StageContext) -> dict[str, str]:
    """MODEL defaults to the fit run RUN's model (``outputs/fit/<RUN>/model.pt``)."""
    return {"MODEL": f"outputs/fit/{ctx.param('RUN')}/model.pt"}


STAGE = Stage(
    name="predict",
    summary="run a fit model over embedding rasters (tiled, overlap-blended) -> uint8 class COGs",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    gpu=True,
    runtime="container",
    after=("fit",),
    # one strip per task needs one GPU, not the whole node (render.gpus_for honours gpus_per_node)
    extra={"gpus_per_node": "1", "container_needs": "rasterio"},
    defaults={"TILE": "256", "OVERLAP": "64", "SHARDS": "1", "RUN": "run1", "ALLOW_EMPTY": "0"},
    paths=("MODEL", "EMBEDDINGS"),
    derived=_derived,
)
