"""cog: one GeoTIFF -> one validated Cloud Optimized GeoTIFF per manifest line.

Parameters: ``INPUT_DIR=<folder>`` (its *.tif / *.tiff, sorted) or ``ITEMS=<file>`` (one input path a
line); optional ``OUT_DIR``, ``BLOCKSIZE`` (512), ``COG_MEM`` (1G). Output: ``<out_dir>/<stem>.tif``.
"""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext, read_manifest
from geohpc.errors import ConfigError, InputError
from geohpc.util import parse_size

TEMP_FACTOR = 2.1  # make_cog's fast path: compressed level files + the COG copied from them (build.FAST_OVERHEAD)


def _manifest(ctx: StageContext) -> list[str]:
    if ctx.param("ITEMS"):
        items = read_manifest(ctx.path_param("ITEMS"))
    elif ctx.param("INPUT_DIR"):
        folder = ctx.path_param("INPUT_DIR")
        if not folder.is_dir():
            raise InputError(f"{folder}: INPUT_DIR is not a folder (give the folder holding the GeoTIFFs)")
        items = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
        if not items:
            raise InputError(f"{folder}: no *.tif or *.tiff files in INPUT_DIR (check the path)")
    else:
        raise ConfigError("stage cog needs INPUT_DIR=<folder of GeoTIFFs> or ITEMS=<file with one path a line>")
    seen: dict[str, str] = {}
    for item in items:
        stem = Path(item).stem
        if stem in seen:
            raise InputError(f"{item} and {seen[stem]} would both write {stem}.tif; rename one or run them apart")
        seen[stem] = item
    return items


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{Path(item).stem}.tif"


def _done(item: str, ctx: StageContext) -> bool:
    out = _output(item, ctx)
    if not out.is_file():
        return False
    from geohpc.products.cog.layout import validate_cog  # lazy: planning imports the standard library only
    from geohpc.raster_io import verify_raster

    return not validate_cog(out) and verify_raster(out) is None


def _output_bytes(item: str, ctx: StageContext) -> int:
    """Peak disk use while building: level files plus the COG, about 2.1x the input's size."""
    try:
        return int(Path(item).stat().st_size * TEMP_FACTOR)
    except OSError:
        return 0


def memory_bytes(item: str, ctx: StageContext) -> int:
    """Per-task peak memory: the COG_MEM budget (default 1G) plus ~0.5 GB of interpreter and GDAL."""
    return parse_size(ctx.param("COG_MEM")) + (512 << 20)


STAGE = Stage(
    name="cog",
    summary="convert GeoTIFFs (striped, many-band) into validated Cloud Optimized GeoTIFFs",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    output_bytes=_output_bytes,
    defaults={"BLOCKSIZE": "512", "COG_MEM": "1G"},
    paths=("INPUT_DIR",),
)
