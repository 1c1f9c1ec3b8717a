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


def _done(item: str, ctx: StageContext) -> bool:
    # done means model.pt is a whole torch archive: its zip directory (the file's last bytes) reads and lists
    # the pickled payload; a file cut short by a kill or a full disk fails here (standard library only)
    import zipfile

    try:
        with zipfile.ZipFile(_output(item, ctx)) as z:
            return any(name.endswith("data.pkl") for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


STAGE = Stage(
    name="fit",
    summary="train a U-Net/MLP on prep chips with torchrun DDP (bf16, EMA, resumable checkpoints)",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    gpu=True,
    runtime="container",
    after=("prep",),
    defaults={"RUN": "run1", "ARCH": "unet", "EPOCHS": "30", "DATA": "outputs/prep"},
    paths=("DATA",),
)
