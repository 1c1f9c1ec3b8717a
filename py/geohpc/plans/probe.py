"""probe: a JSON report of what a job really gets, in the runtime of stage FOR (or the PyTorch container)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext


def _manifest(ctx: StageContext) -> list[str]:
    n = int(ctx.param("N"))
    target = ctx.param("FOR")
    return [f"probe-{target + '-' if target else ''}{i:04d}" for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{item}.json"


STAGE = Stage(
    name="probe",
    summary="report the job environment (CPUs, memory, GPUs, PROJ, glibc, module, TMPDIR) as JSON",
    build_manifest=_manifest,
    output_for=_output,
    # RERUN=1 probes again; FOR=<stage> runs it where that stage runs (runtime, GPUs, partition); else the PyTorch container
    runtime="container",
    defaults={"N": "2", "FOR": ""},
)
