"""retile: the stack -> PATCH x PATCH patch folders inside BLOCK x BLOCK blocks (one item a block)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.embed.layout import PATCH_LIST
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / PATCH_LIST


def _done(item: str, ctx: StageContext) -> bool:
    """Done means valid: the block's patch list reads, names every patch of the block, and each patch's
    arrays are whole (sizes from their headers) and on the patch's grid (patch.json)."""
    try:
        lines = _output(item, ctx).read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    want = {name: (h, w) for name, h, w in _embed.patches_of(ctx, item)}
    if sorted(lines) != sorted(want):
        return False
    for line in lines:
        pdir = ctx.out_dir / line
        meta = _embed.valid_json(pdir / "patch.json")
        if meta is None or (meta.get("height"), meta.get("width")) != want[line]:
            return False
        if not all(_embed.npy_whole(pdir / f"{n}.npy") for n in ("bands", "masks", "sar_ascending", "sar_descending")):
            return False
    return True


STAGE = Stage(
    name="retile",
    summary="cut the stack into TESSERA patch folders (.npy) block by block, with a patch manifest",
    build_manifest=_embed.blocks,
    output_for=_output,
    is_done=_done,
    after=("stack",),
    defaults=_embed.DEFAULTS,
    paths=_embed.PATHS,
)
