"""download: fetch each STAC item's Sentinel-1/2 bands onto the AOI grid (AOI window only)."""

from __future__ import annotations

import json
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.embed.layout import DONE_MARKER, SKIP_MARKER
from geohpc.errors import InputError
from geohpc.plans import _embed


def _manifest(ctx: StageContext) -> list[str]:
    path = ctx.path_param("STAC")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: ItemCollection not found (save the STAC search there, give STAC=<items.json>)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg}); save the STAC search result as JSON") from None
    feats = data.get("features", []) if isinstance(data, dict) else data
    ids = [str(f.get("id", "")) for f in feats if isinstance(f, dict)]
    if not ids or not all(ids):
        raise InputError(f"{path}: no items, or an item without id; is it a STAC ItemCollection?")
    return ids


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / DONE_MARKER


def _done(item: str, ctx: StageContext) -> bool:
    """Done means valid: a readable skip marker, or a readable done marker whose every band file reads."""
    folder = ctx.out_dir / item
    if _embed.valid_json(folder / SKIP_MARKER) is not None and not (folder / DONE_MARKER).exists():
        return True
    meta = _embed.valid_json(folder / DONE_MARKER)
    bands = meta.get("bands") if meta else None
    if not isinstance(bands, dict) or not bands:
        return False
    return all(isinstance(b, dict) and _embed.valid_raster(folder / str(b.get("file", ""))) for b in bands.values())


STAGE = Stage(
    name="download",
    summary="fetch S2 (TESSERA band order + SCL) and S1 VV/VH of each STAC item onto the AOI grid",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    downloads=True,
    defaults={**_embed.DEFAULTS, "ON_MISSING": "error"},
    paths=(*_embed.PATHS, "STAC"),
)
