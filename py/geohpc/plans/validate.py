"""validate: accuracy, kappa, per-class F1 and mapped area of a class map; confusion PNG and HTML report."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("POINTS") and not ctx.param("TRUTH"):
        raise ConfigError("stage validate needs POINTS=<held-out points> and/or TRUTH=<class raster> (and MAP=, default outputs/classify)")
    return [ctx.param("NAME")]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / "report.html"


STAGE = Stage(
    name="validate",
    summary="validate a class map against held-out points or a truth raster: OA, kappa, F1, area, HTML report",
    build_manifest=_manifest,
    output_for=_output,
    after=("classify",),
    defaults={"MAP": "outputs/classify", "LABEL_COL": "label", "NAME": "report"},
    paths=("MAP", "POINTS", "TRUTH"),
)
