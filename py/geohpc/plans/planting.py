"""planting (Sure2): planting date per field from S2 EVI green-up back-dated by GDD; items are field shards."""

from __future__ import annotations

import json
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError, InputError


def field_ids(ctx: StageContext) -> list[str]:
    """The field ids of FIELDS= in file order (standard library only: planning needs no GDAL)."""
    path = ctx.path_param("FIELDS")
    try:
        feats = json.loads(path.read_text())["features"]
        return [str(f["properties"]["field_id"]) for f in feats]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a fields GeoJSON with field_id properties ({exc})") from exc


def shard_manifest(ctx: StageContext) -> list[str]:
    """``shard_IIII_of_NNNN`` items, at most one a field."""
    n = len(field_ids(ctx))
    shards = ctx.param("SHARDS")
    if not shards.isdigit() or int(shards) < 1:
        raise ConfigError(f"SHARDS={shards!r}: give a positive number of array tasks")
    k = min(int(shards), n)
    return [f"shard_{i:04d}_of_{k:04d}" for i in range(k)]


def shard_output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "_tasks" / f"{item}.json"


def shard_done(item: str, ctx: StageContext) -> bool:
    """Done when every field of the shard has a valid JSON output."""
    i, n = (int(x) for x in item.removeprefix("shard_").split("_of_"))
    for fid in field_ids(ctx)[i::n]:
        try:
            if json.loads((ctx.out_dir / f"{fid}.json").read_text()).get("field_id") != fid:
                return False
        except (OSError, ValueError, AttributeError):
            return False
    return True


def _manifest(ctx: StageContext) -> list[str]:
    for key in ("FIELDS", "STAC", "WEATHER"):
        if not ctx.param(key):
            raise ConfigError(f"stage planting needs {key}=: FIELDS=<fields.geojson> STAC=<items.json> WEATHER=<weather npz dir>")
    return shard_manifest(ctx)


STAGE = Stage(
    name="planting",
    summary="Sure2 planting date per field: S2 EVI green-up back-dated by GDD (field shards, process pool)",
    build_manifest=_manifest,
    output_for=shard_output,
    is_done=shard_done,
    after=("weather",),
    defaults={"SHARDS": "4", "WORKERS": "2"},
    paths=("FIELDS", "STAC", "WEATHER"),
)
