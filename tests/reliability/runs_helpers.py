"""Shared set-up of the runs tests: a clean environment and an in-process ``make submit``."""

from __future__ import annotations

import io
import os
from pathlib import Path

from geohpc.core.runs import Run
from geohpc.ops.submit import submit

REPO = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """The caller's environment without GEOHPC_/SLURM_/MAKE variables (as helpers.make gives jobs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_", "MAKE"))}


def submit_here(stage: str, **cli: str) -> tuple[Run | None, str]:
    """``make submit STAGE=stage SITE=local KEY=value ...`` in this process: (the run, what it printed)."""
    out = io.StringIO()
    run = submit(stage, "local", cli=dict(cli), env=clean_env(), repo=REPO, out=out)
    return run, out.getvalue()
