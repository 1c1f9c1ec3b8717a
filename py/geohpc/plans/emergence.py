"""emergence (Sure2): not-emerged share at DAP30 per field and claim eligibility; items are field shards."""

from __future__ import annotations

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.plans.planting import shard_done, shard_manifest, shard_output


def _manifest(ctx: StageContext) -> list[str]:
    for key in ("FIELDS", "STAC"):
        if not ctx.param(key):
            raise ConfigError(f"stage emergence needs {key}=: FIELDS=<fields.geojson> STAC=<items.json> "
                              "[PLANTING=<planting stage output folder>]")
    return shard_manifest(ctx)


STAGE = Stage(
    name="emergence",
    summary="Sure2 not-emerged share at DAP30 per field (per-pixel S2 EVI), claim at >= 30% (field shards, process pool)",
    build_manifest=_manifest,
    output_for=shard_output,
    is_done=shard_done,
    after=("planting",),
    defaults={"SHARDS": "4", "WORKERS": "2", "PLANTING": "outputs/planting"},
    paths=("FIELDS", "STAC", "PLANTING"),
)
