"""classify: wall-to-wall class maps from embedding rasters, one array task per shard of block rows."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from geohpc.core.stages import Stage, StageContext

SEP = "::"


def parse_item(item: str) -> tuple[str, int, int]:
    """``'<raster>::i/n'`` -> ``(raster, i, n)``; a bare raster path is shard 0 of 1."""
    raster, _, shard = item.rpartition(SEP) if SEP in item else (item, "", "0/1")
    i, _, n = shard.partition("/")
    if not (i.isdigit() and n.isdigit()) or int(n) < 1 or int(i) >= int(n):
        raise ValueError(f"bad classify item {item!r}: expected <raster>::i/n with 0 <= i < n")
    return raster, int(i), int(n)


def shard_name(raster: str, i: int, n: int) -> str:
    """Output file name of shard ``i`` of ``n`` for ``raster`` (same grid as the input, so a VRT joins them)."""
    stem = Path(raster).stem
    return f"{stem}.tif" if n == 1 else f"{stem}_shard{i:03d}of{n:03d}.tif"


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
    n = int(ctx.param("SHARDS", "1"))
    return [f"{r}{SEP}{i}/{n}" for r in _rasters(ctx) for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    raster, i, n = parse_item(item)
    return ctx.out_dir / shard_name(raster, i, n)


def _done(item: str, ctx: StageContext) -> bool:
    out = _output(item, ctx)
    return out.exists() or out.with_suffix(".empty").exists()


STAGE = Stage(
    name="classify",
    summary="predict a uint8 class COG (colour table, optional confidence) per raster shard with the trained model",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("train",),
)
