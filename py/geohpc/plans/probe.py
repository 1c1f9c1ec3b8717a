"""probe: a JSON report of what a job really gets (host, CPUs, memory, GPUs, Python, GDAL, PROJ)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext


def _manifest(ctx: StageContext) -> list[str]:
    n = int(ctx.param("N"))
    return [f"probe-{i:04d}" for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{item}.json"


STAGE = Stage(
    name="probe",
    summary="report the job environment (CPUs, memory, GPUs, Python, GDAL/PROJ) as JSON",
    build_manifest=_manifest,
    output_for=_output,
    # the container is where GPUs and torch are seen; on a site without one this is the venv
    runtime="container",
    defaults={"N": "2"},
)
