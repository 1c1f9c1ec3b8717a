"""The records of a submission: ``runs/<stage>/<timestamp>/`` with the manifest, plan and job ids.

``plan.json`` holds one entry per attempt (the first submit, then each resubmit), each with its arrays
(offset, indices, job id, the exact sbatch command line). ``make status`` and ``make resubmit`` read it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geohpc.core.arrays import Chunk
from geohpc.errors import ConfigError
from geohpc.util import write_json_atomic

RUNS_DIR = "runs"


def runs_root(repo: Path) -> Path:
    """Where run records live: ``<repo>/runs``, or ``$GEOHPC_RUNS_DIR`` (tests keep theirs apart)."""
    override = os.environ.get("GEOHPC_RUNS_DIR", "")
    return Path(override) if override else repo / RUNS_DIR


@dataclass
class Attempt:
    """One submission of some lines of a run's manifest."""

    executor: str  # "slurm" or "local"
    throttle: int | None
    chunks: list[Chunk]
    submitted: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "executor": self.executor,
            "throttle": self.throttle,
            "submitted": self.submitted,
            "chunks": [c.to_json() for c in self.chunks],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attempt:
        """Inverse of :meth:`to_json`."""
        return cls(
            executor=d["executor"],
            throttle=d.get("throttle"),
            submitted=d.get("submitted", ""),
            chunks=[Chunk(**c) for c in d["chunks"]],
        )


@dataclass
class Run:
    """A run folder and its plan."""

    path: Path
    stage: str
    site: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        """The manifest this run's array tasks read."""
        return self.path / "manifest.txt"

    @property
    def env_file(self) -> Path:
        """The job environment file (sourced by jobs/lib.sh)."""
        return self.path / "job.env"

    @property
    def spec_file(self) -> Path:
        """The rendered job spec (``spec.json``): what every attempt of this run replays."""
        return self.path / "spec.json"

    def items(self) -> list[str]:
        """The manifest lines."""
        return self.manifest.read_text().splitlines()

    def job_ids(self) -> list[str]:
        """Every job id of every attempt."""
        return [c.job_id for a in self.attempts for c in a.chunks if c.job_id]

    def save(self) -> None:
        """Write plan.json atomically."""
        write_json_atomic(
            self.path / "plan.json",
            {"stage": self.stage, "site": self.site, "attempts": [a.to_json() for a in self.attempts]},
        )

    def line_owner(self) -> dict[int, tuple[str, str, str]]:
        """For each manifest line, the latest (executor, job id, array index) that ran it."""
        owner: dict[int, tuple[str, str, str]] = {}
        for attempt in self.attempts:
            for chunk in attempt.chunks:
                for idx in chunk.indices:
                    owner[chunk.offset + idx] = (attempt.executor, chunk.job_id, str(idx))
        return owner


def new_run(repo: Path, stage: str, site: str) -> Run:
    """Create ``runs/<stage>/<timestamp>/`` (unique even within one second)."""
    base = runs_root(repo) / stage
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    n = 1
    while True:
        try:
            path.mkdir()
            break
        except FileExistsError:
            n += 1
            path = base / f"{stamp}-{n}"
    return Run(path=path, stage=stage, site=site)


def load_run(path: Path) -> Run:
    """Read a run folder's plan.json."""
    plan = path / "plan.json"
    if not plan.is_file():
        raise ConfigError(f"{path}: no plan.json here; pick a run from 'make status'")
    d = json.loads(plan.read_text())
    return Run(path=path, stage=d["stage"], site=d["site"], attempts=[Attempt.from_json(a) for a in d["attempts"]])


def list_runs(repo: Path, stage: str | None = None) -> list[Run]:
    """All runs (of one stage), oldest first."""
    root = runs_root(repo)
    pattern = f"{stage}/*/plan.json" if stage else "*/*/plan.json"
    return [load_run(p.parent) for p in sorted(root.glob(pattern), key=lambda p: (p.stat().st_mtime, str(p)))]


def find_run(repo: Path, stage: str, run: str = "") -> Run:
    """The run named ``run`` (a folder name or path) of ``stage``, else its latest run."""
    if run:
        path = Path(run) if "/" in run else runs_root(repo) / stage / run
        return load_run(path)
    runs = list_runs(repo, stage)
    if not runs:
        raise ConfigError(f"no runs of stage {stage} under {runs_root(repo) / stage}; submit one first")
    return runs[-1]
