"""collect (Sure2): the portfolio (Parquet + CSV), summaries by year and county, report.html with map and charts."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.util import verify_html, verify_table


def _manifest(ctx: StageContext) -> list[str]:
    return ["portfolio"]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "report.html"


def _done(item: str, ctx: StageContext) -> bool:
    """Done when report.html (written last) is whole and the portfolio table reads."""
    report = _output(item, ctx)
    return verify_html(report) is None and verify_table(ctx.out_dir / "portfolio.parquet") is None


STAGE = Stage(
    name="collect",
    summary="Sure2 portfolio: Parquet + CSV, PASS/claim/drought-gate rates and mean D by year and county, HTML report",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("assess",),
    defaults={"ASSESS": "outputs/assess", "TRUTH": ""},
    paths=("ASSESS", "TRUTH"),
)
