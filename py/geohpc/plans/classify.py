"""classify: wall-to-wall class maps from embedding rasters, one array task per shard of block rows."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from geohpc.classify.items import parse_item, shard_name
from geohpc.core.stages import Stage, StageContext

SEP = "::"


def _rasters(ctx: StageContext) -> list[str]:
    spec = ctx.param("RASTERS")
    if not spec:
        from geohpc.errors import ConfigError

        raise ConfigError("stage classify needs RASTERS=<raster|dir|glob|list.txt>[,...] and MODEL=<train output dir>")
    out: list[str] = []
    for part in [s.strip() for s in spec.split(",") if s.strip()]:
        p = Path(part) if os.path.isabs(part) else ctx.work / part
        if any(c in part for c in "*?["):
            out += sorted(glob.glob(str(p)))
        elif p.is_dir():
            out += sorted(str(q) for q in p.iterdir() if q.suffix.lower() in (".tif", ".tiff", ".vrt") and not q.stem.endswith("_scale"))
        elif p.suffix.lower() == ".txt" and p.is_file():
            out += [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        else:
            out.append(str(p))
    return out


def _manifest(ctx: StageContext) -> list[str]:
    n = int(ctx.param("SHARDS"))
    return [f"{r}{SEP}{i}/{n}" for r in _rasters(ctx) for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    raster, i, n = parse_item(item)
    return ctx.out_dir / shard_name(raster, i, n)


def _done(item: str, ctx: StageContext) -> bool:
    # done means the class COG opens and its last block decodes; a shard with no block rows (more shards than
    # rows) leaves an atomically renamed ".empty" note instead, whose presence is the whole record
    from geohpc.raster_io import verify_raster

    out = _output(item, ctx)
    return out.with_suffix(".empty").exists() or verify_raster(out) is None


STAGE = Stage(
    name="classify",
    summary="predict a uint8 class COG (colour table, optional confidence) per raster shard with the trained model",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("train",),
    defaults={"MEM_BUDGET": "512M", "CONFIDENCE": "0", "SHARDS": "1", "ALLOW_EMPTY": "0"},
    paths=("MODEL", "RASTERS"),
)
