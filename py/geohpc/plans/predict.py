"""predict: a fit model over embedding rasters -> class COGs; items are RASTER or RASTER::i/n strips."""

from __future__ import annotations

import glob
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _rasters(ctx: StageContext) -> list[str]:
    pattern = str(ctx.path_param("EMBEDDINGS"))
    hits = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    if not hits:
        raise ConfigError(f"EMBEDDINGS={pattern!r} matches no file")
    return hits


def _manifest(ctx: StageContext) -> list[str]:
    shards = ctx.param("SHARDS", "1")
    if not shards.isdigit() or int(shards) < 1:
        raise ConfigError(f"SHARDS={shards!r}: give the number of strips per raster (1 or more)")
    n = int(shards)
    return [r if n == 1 else f"{r}::{i}/{n}" for r in _rasters(ctx) for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    # the same naming as geohpc.predict.output_name (kept here: plans import only the standard library)
    path, sep, shard = item.rpartition("::")
    raster = path if sep else item
    stem = Path(raster).name.rsplit(".", 1)[0]
    if not sep:
        return ctx.out_dir / f"{stem}.tif"
    i, n = (int(v) for v in shard.split("/"))
    return ctx.out_dir / f"{stem}.part{i:03d}of{n:03d}.tif"


STAGE = Stage(
    name="predict",
    summary="run a fit model over embedding rasters (tiled, overlap-blended) -> uint8 class COGs",
    build_manifest=_manifest,
    output_for=_output,
    gpu=True,
    runtime="container",
    after=("fit",),
    # one strip per task needs one GPU, not the whole node (render.gpus_for honours gpus_per_node)
    extra={"gpus_per_node": "1", "container_needs": "rasterio"},
)
