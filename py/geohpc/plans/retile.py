"""retile: the stack -> PATCH x PATCH patch folders inside BLOCK x BLOCK blocks (one item a block)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.embed.layout import PATCH_LIST
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / PATCH_LIST


STAGE = Stage(
    name="retile",
    summary="cut the stack into TESSERA patch folders (.npy) block by block, with a patch manifest",
    build_manifest=_embed.blocks,
    output_for=_output,
    after=("stack",),
    defaults=_embed.DEFAULTS,
    paths=_embed.PATHS,
)
