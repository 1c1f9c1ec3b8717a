"""fit: DDP segmentation training on the prep chips (one run = one item; torchrun inside the job)."""

from __future__ import annotations

import re
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _manifest(ctx: StageContext) -> list[str]:
    run = ctx.param("RUN")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run):
        raise ConfigError(f"RUN={run!r}: use letters, digits, '.', '_' or '-' (it names the run folder)")
    return [run]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / item / "model.pt"


STAGE = Stage(
    name="fit",
    summary="train a U-Net/MLP on prep chips with torchrun DDP (bf16, EMA, resumable checkpoints)",
    build_manifest=_manifest,
    output_for=_output,
    gpu=True,
    runtime="container",
    after=("prep",),
    defaults={"RUN": "run1", "ARCH": "unet", "EPOCHS": "30", "DATA": "outputs/prep"},
    paths=("DATA",),
)
