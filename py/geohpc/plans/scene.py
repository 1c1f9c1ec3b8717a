"""scene: build the synthetic crop scene (embedding raster, truth raster, training and validation points)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext


def _manifest(ctx: StageContext) -> list[str]:
    return [ctx.param("NAME")]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / "scene.json"


def _done(item: str, ctx: StageContext) -> bool:
    # done means scene.json (renamed last) is whole and the rasters it names open and decode their last block
    from geohpc.raster_io import verify_raster
    from geohpc.util import verify_json

    desc = _output(item, ctx)
    if verify_json(desc) is not None:
        return False
    return all(verify_raster(desc.parent / name) is None for name in ("embedding.tif", "truth.tif"))


STAGE = Stage(
    name="scene",
    summary="make the synthetic crop scene: 128-band embedding (EPSG:32635), truth raster, labelled points",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    defaults={"SIZE": "512", "SEED": "0", "CLASSES": "6", "NAME": "demo"},
)
