"""scene: build the synthetic crop scene (embedding raster, truth raster, training and validation points)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext


def _manifest(ctx: StageContext) -> list[str]:
    return [ctx.param("NAME")]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / "scene.json"


STAGE = Stage(
    name="scene",
    summary="make the synthetic crop scene: 128-band embedding (EPSG:32635), truth raster, labelled points",
    build_manifest=_manifest,
    output_for=_output,
    defaults={"SIZE": "512", "SEED": "0", "CLASSES": "6", "NAME": "demo"},
)
