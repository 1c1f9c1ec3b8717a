"""assess (Sure2): one sure2.assessment/1 JSON per field from planting, emergence and drought; items are field shards."""

from __future__ import annotations

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.plans.planting import shard_done, shard_manifest, shard_output


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("FIELDS"):
        raise ConfigError("stage assess needs FIELDS=<fields.geojson> (and PLANTING= EMERGENCE= DROUGHT= folders, "
                          "default outputs/<stage>)")
    return shard_manifest(ctx)


STAGE = Stage(
    name="assess",
    summary="Sure2 assessment JSON per field (schema sure2.assessment/1): planting, emergence, drought, claim decision",
    build_manifest=_manifest,
    output_for=shard_output,
    is_done=shard_done,
    after=("planting", "emergence", "drought"),
    defaults={"SHARDS": "4", "WORKERS": "2", "PLANTING": "outputs/planting", "EMERGENCE": "outputs/emergence",
              "DROUGHT": "outputs/drought"},
    paths=("FIELDS", "PLANTING", "EMERGENCE", "DROUGHT"),
)
