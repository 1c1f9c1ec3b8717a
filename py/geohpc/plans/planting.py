"""planting (Sure2): planting date per field from S2 EVI green-up back-dated by GDD; items are field shards."""

from __future__ import annotations

import json
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError, InputError
from geohpc.sure2.batch import valid_output
from geohpc.sure2.fields import parse_shard, shard_name


def field_ids(ctx: StageContext) -> list[str]:
    """The field ids of FIELDS= in file order (standard library only: planning needs no GDAL)."""
    path = ctx.path_param("FIELDS")
    try:
        feats = json.loads(path.read_text())["features"]
        return [str(f["properties"]["field_id"]) for f in feats]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a fields GeoJSON with field_id properties ({exc})") from exc


def shard_manifest(ctx: StageContext) -> list[str]:
    """``shard_IIII_of_NNNN`` items (:func:`geohpc.sure2.fields.shard_name`), at most one a field.

    Shared by the Sure2 field stages (planting, emergence, drought, assess) with :func:`shard_output` and
    :func:`shard_done`.
    """
    n = len(field_ids(ctx))
    shards = ctx.param("SHARDS")
    if not shards.isdigit() or int(shards) < 1:
        raise ConfigError(f"SHARDS={shards!r}: give a positive number of array tasks")
    k = min(int(shards), n)
    return [shard_name(i, k) for i in range(k)]


def shard_output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "_tasks" / f"{item}.json"


def shard_done(item: str, ctx: StageContext) -> bool:
    """Done when every field of the shard has a valid JSON output (the rule the task's own skip uses)."""
    i, n = parse_shard(item)
    return all(valid_output(ctx.out_dir / f"{fid}.json", fid) for fid in field_ids(ctx)[i::n])


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
