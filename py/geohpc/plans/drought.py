"""drought (Sure2): drought score D per field from pre-loaded weather, gate D > 0.5; items are field shards."""

from __future__ import annotations

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError
from geohpc.plans.planting import shard_done, shard_manifest, shard_output


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("FIELDS"):
        raise ConfigError("stage drought needs FIELDS=<fields.geojson> (and WEATHER= CLIMATOLOGY= PLANTING=, "
                          "default outputs/<stage>)")
    return shard_manifest(ctx)


STAGE = Stage(
    name="drought",
    summary="Sure2 drought score D per field (soil-moisture anomaly + CHIRPS rain deficit, centroid lookups), gate D > 0.5",
    build_manifest=_manifest,
    output_for=shard_output,
    is_done=shard_done,
    after=("weather", "climatology", "planting"),
    defaults={"SHARDS": "4", "WORKERS": "2", "WEATHER": "outputs/weather", "CLIMATOLOGY": "outputs/climatology",
              "PLANTING": "outputs/planting"},
    paths=("FIELDS", "WEATHER", "CLIMATOLOGY", "PLANTING"),
)
