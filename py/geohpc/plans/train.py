"""train: CatBoost + Optuna on the samples; TASKS=k array tasks tune one journal-backed study in parallel."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("SAMPLES"):
        raise ConfigError("stage train needs SAMPLES=<Parquet file or dir from the sample stage>")
    n = int(ctx.param("TASKS"))
    if n < 1:
        raise ConfigError(f"TASKS={n}: give at least 1 tuning task")
    return [f"tune-{i:03d}" for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    # Every tuning task ends by fitting the final model from the shared study, so all share one output.
    return ctx.out_dir / "model.cbm"


def _done(item: str, ctx: StageContext) -> bool:
    # done means model.cbm is the very file whose size and checksum model.json recorded (written just before it)
    import hashlib
    import json

    out = _output(item, ctx)
    try:
        meta = json.loads((out.parent / "model.json").read_text())
        if not out.is_file() or out.stat().st_size != meta.get("model_bytes"):
            return False
        h = hashlib.sha256()
        with open(out, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, ValueError, AttributeError):
        return False
    return h.hexdigest() == meta.get("model_sha256")


STAGE = Stage(
    name="train",
    summary="tune (Optuna journal) and fit a CatBoost classifier; spatial-block and random-split metrics",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("sample",),
    defaults={"TRIALS": "20", "ITERATIONS": "300", "BLOCK_SIZE": "1000", "STUDY": "geohpc-train", "LABEL_COL": "label", "MIN_PER_CLASS": "10", "SEED": "0", "DROP_SMALL": "0", "GPU": "0", "TASKS": "1"},
    paths=("SAMPLES", "JOURNAL"),
    extra={"shared_output": "yes"},  # the tuning tasks share model.cbm on purpose (submit's one-output check)
)
