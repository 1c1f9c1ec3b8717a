"""noop: a stage that does almost nothing, for the tests and benchmarks of packing, status and retries.

An item ``ok-0001`` writes ``<OUT_DIR>/ok-0001.done``; ``fail-*`` exits 3; ``mem<MB>-*`` holds MB of memory
for a second first; ``sleep<S>-*`` sleeps S seconds first. Pure bash (jobs/noop.sbatch): no Python start-up.
"""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext


def _manifest(ctx: StageContext) -> list[str]:
    return [f"ok-{i:04d}" for i in range(int(ctx.param("N")))]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{item}.done"


STAGE = Stage(
    name="noop",
    summary="write <item>.done (fail-*, mem<MB>-*, sleep<S>-* misbehave): tests and benchmarks of packing",
    build_manifest=_manifest,
    output_for=_output,
    defaults={"N": "10"},
)
