"""validate: accuracy, kappa, per-class F1 and mapped area of a class map; confusion PNG and HTML report."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.util import verify_html, verify_json


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("POINTS") and not ctx.param("TRUTH"):
        raise ConfigError("stage validate needs POINTS=<held-out points> and/or TRUTH=<class raster> (and MAP=, default outputs/classify)")
    return [ctx.param("NAME")]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / "report.html"


def _done(item: str, ctx: StageContext) -> bool:
    # done means the report is whole (written last, it ends with </html>) and metrics.json parses
    report = _output(item, ctx)
    return verify_html(report) is None and verify_json(report.parent / "metrics.json") is None


STAGE = Stage(
    name="validate",
    summary="validate a class map against held-out points or a truth raster: OA, kappa, F1, area, HTML report",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("classify",),
    defaults={"MAP": "outputs/classify", "LABEL_COL": "label", "NAME": "report", "ALLOW_EMPTY": "0"},
    paths=("MAP", "POINTS", "TRUTH"),
)
