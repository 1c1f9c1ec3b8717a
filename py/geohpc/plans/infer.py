"""infer: TESSERA-style embeddings of every patch of a block (one item a block; GPUs or CPU shards)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.plans import _embed


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item


def _done(item: str, ctx: StageContext) -> bool:
    """Done means valid: every patch's embedding is a whole .npy of (h, w, 128) (+ its (h, w) int8 scale)."""
    int8 = ctx.param("EMB_DTYPE") == "int8"
    for line, h, w in _embed.patches_of(ctx, item):
        path = ctx.out_dir / f"{line}.npy"
        if not _embed.npy_whole(path, (h, w, 128)):
            return False
        if int8 and not _embed.npy_whole(path.with_name(f"{path.stem}_scale.npy"), (h, w)):
            return False
    return True


def _bytes(item: str, ctx: StageContext) -> int:
    per_px = 128 + 4 if ctx.param("EMB_DTYPE") == "int8" else 128 * 4
    return sum(h * w * per_px for _, h, w in _embed.patches_of(ctx, item))


STAGE = Stage(
    name="infer",
    summary="per-pixel 128-d embeddings of each patch (one process per GPU, or CPU shards), resumable",
    build_manifest=_embed.blocks,
    output_for=_output,
    is_done=_done,
    gpu=True,
    runtime="container",
    after=("retile",),
    output_bytes=_bytes,
    defaults={**_embed.DEFAULTS, "EMB_DTYPE": "float32", "INFER_BATCH": "4096", "THREADS_PER_SHARD": "4"},
    paths=(*_embed.PATHS, "MODEL"),
)
