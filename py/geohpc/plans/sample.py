"""sample: embedding values at labelled points -> one Parquet table (reads grouped by raster block)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.util import verify_table


def _manifest(ctx: StageContext) -> list[str]:
    for key in ("POINTS", "RASTERS"):
        if not ctx.param(key):
            raise ConfigError(f"stage sample needs {key}=: POINTS=<points file> RASTERS=<raster|dir|glob|list.txt>")
    ctx.path_param("POINTS")
    return [ctx.param("NAME")]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{item}.parquet"


def _done(item: str, ctx: StageContext) -> bool:
    # done means a readable table with rows (its footer and last row group decode), never mere existence
    return verify_table(_output(item, ctx)) is None


STAGE = Stage(
    name="sample",
    summary="sample embedding rasters at labelled points into a Parquet table (block-grouped reads)",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("scene",),
    defaults={"LABEL_COL": "label", "MEM_BUDGET": "512M", "NAME": "samples", "ALLOW_EMPTY": "0"},
    paths=("POINTS", "RASTERS"),
)
