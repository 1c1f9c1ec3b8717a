"""raster_orientation: bottom-up rasters (``transform.e > 0``) fed to a stage that assumes north-up.

AEF COGs are south-up (positive Y pixel size); ``rasterio.windows.from_bounds`` then reads the wrong rows
(emb-errors.md, "AEF COG bottom-up orientation"). These stages window by bounds and assume north-up:
validate (classify/validate.py), tiles (products/tiles/pyramid.py), prep (segment/prep/plan.py); a stage
may also declare ``extra={"north_up": "yes"}``. Only raster headers are read.
"""

from __future__ import annotations

from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "raster_orientation"
DESCRIPTION = "south-up rasters (transform.e > 0) given to stages that window by bounds assuming north-up"
STAGES = "all"
NORTH_UP_STAGES = ("validate", "tiles", "prep")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
MAX_FILES = 200


def _assumes_north_up(stage: str | None) -> bool:
    if not stage:
        return False
    if stage in NORTH_UP_STAGES:
        return True
    from geohpc.core.stages import get_stage

    return str(get_stage(stage).extra.get("north_up", "")).lower() == "yes"


def rasters(ctx: PreflightContext) -> list[Path]:
    """Raster files the stage reads: manifest items, raster-valued parameters, rasters in input folders."""
    found: list[Path] = []
    cands = [Path(v) for v in [*ctx.items, *ctx.params.values()] if v and Path(v).suffix.lower() in RASTER_SUFFIXES]
    found += [p if p.is_absolute() else ctx.work / p for p in cands]
    for d in ctx.inputs:
        if d.is_dir():
            found += sorted(p for p in d.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)[:MAX_FILES]
    return [p for p in dict.fromkeys(found) if p.is_file()][:MAX_FILES]


def check(ctx: PreflightContext) -> Result:
    """Fail when a raster the north-up stage reads has a positive Y pixel size."""
    if not _assumes_north_up(ctx.stage):
        return ok(f"stage {ctx.stage} does not window by bounds" if ctx.stage else "no stage given")
    files = rasters(ctx)
    if not files:
        return ok(f"stage {ctx.stage}: no input rasters on this machine to look at")
    try:
        from geohpc.raster_io import open_raster
    except ImportError:
        return warn("rasterio is not importable here: cannot read raster headers", "run make preflight in the venv")
    south_up = []
    for p in files:
        with open_raster(p) as ds:
            if ds.transform.e > 0:
                south_up.append((p, ds.transform.e))
    if south_up:
        p, e = south_up[0]
        return fail(f"{len(south_up)} of {len(files)} input rasters are south-up (transform.e = {e:g} > 0), e.g. {p}: "
                    f"stage {ctx.stage} windows by bounds and would read the wrong rows or a flipped image",
                    f"flip them north-up first: gdalwarp -overwrite {p.name} {p.stem}_northup.tif (a warp writes "
                    "north-up), or read by pixel with src.index() as emb-errors.md shows")
    return ok(f"{len(files)} input rasters are north-up (transform.e < 0)")
