"""mosaic: many rasters on one grid -> ``<out_dir>/<NAME>.vrt`` and the COG ``<out_dir>/<NAME>.tif``.

Parameters: ``INPUT_DIR=<folder of *.tif>`` or ``LIST=<file with one raster path a line>``;
``NAME`` (default ``mosaic``; the single manifest item); ``COG=no`` for the VRT alone;
``REPROJECT=yes`` to warp inputs on another grid instead of refusing them; ``NODATA=v``.
"""

from __future__ import annotations

import re
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _manifest(ctx: StageContext) -> list[str]:
    if not (ctx.param("INPUT_DIR") or ctx.param("LIST")):
        raise ConfigError("stage mosaic needs INPUT_DIR=<folder of GeoTIFFs> or LIST=<file with one path a line>")
    name = ctx.param("NAME")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"NAME={name!r}: use letters, digits, '_', '-' or '.' (it names the output files)")
    return [name]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / (f"{item}.vrt" if ctx.param("COG") == "no" else f"{item}.tif")


def _done(item: str, ctx: StageContext) -> bool:
    out = _output(item, ctx)
    if not out.is_file():
        return False
    from geohpc.raster_io import verify_raster  # lazy: planning imports the standard library only

    if out.suffix == ".vrt":
        return verify_raster(out) is None
    from geohpc.products.cog.layout import validate_cog

    return not validate_cog(out) and verify_raster(out) is None


STAGE = Stage(
    name="mosaic",
    summary="mosaic many rasters on one grid into a VRT and one validated COG",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("cog",),
    defaults={"COG_MEM": "1G", "BLOCKSIZE": "512", "COG": "yes", "REPROJECT": "no", "NAME": "mosaic"},
    paths=("INPUT_DIR", "LIST"),
)
