"""The records of a submission: ``runs/<stage>/<timestamp>/`` with the manifest, plan and job ids.

``plan.json`` holds one entry per attempt (the first submit, then each resubmit), each with its arrays
(offset, indices, job id, the sbatch command line, redacted). ``make status`` and ``make resubmit`` read it.
A run folder whose plan.json or spec.json is unreadable, or whose manifest.txt or job.env is gone (the purge),
is *damaged*: :func:`scan_runs` names it and every command skips it, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geohpc.core.arrays import Chunk
from geohpc.errors import ConfigError
from geohpc.util import redact, write_json_atomic

RUNS_DIR = "runs"
PRIVATE = 0o600  # run files that may carry values (job.env, spec.json, commands): owner only


class DamagedRun(ConfigError):
    """A run folder that cannot be read back: ``runs/<stage>/<ts>: damaged (<what>)``."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        super().__init__(f"{run_label(path)}: damaged ({what})")

    def skipped(self) -> str:
        """The line status, submit and resubmit print for it."""
        return f"{self}; skipped"


def run_label(path: Path) -> str:
    """``runs/<stage>/<ts>`` for a run folder (its last three path parts)."""
    return "/".join(path.parts[-3:])


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
    packs: str = ""  # packed (PACK=n): the packs file, relative to the run folder; array index = pack task

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "executor": self.executor,
            "throttle": self.throttle,
            "submitted": self.submitted,
            **({"packs": self.packs} if self.packs else {}),
            # the record names what ran, never a value: the command is replayed from spec.json, not from here
            "chunks": [{**c.to_json(), "command": [redact(a) for a in c.command]} for c in self.chunks],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attempt:
        """Inverse of :meth:`to_json`."""
        return cls(
            executor=d["executor"],
            throttle=d.get("throttle"),
            submitted=d.get("submitted", ""),
            chunks=[Chunk(**c) for c in d["chunks"]],
            packs=str(d.get("packs", "")),
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

    def job_env(self) -> dict[str, str]:
        """The ``export K=V`` lines of the run's job.env (what every task of the run sees)."""
        env: dict[str, str] = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = (shlex.split(value) or [""])[0]
        return env

    def job_ids(self) -> list[str]:
        """Every job id of every attempt."""
        return [c.job_id for a in self.attempts for c in a.chunks if c.job_id]

    def save(self) -> None:
        """Write plan.json atomically."""
        write_json_atomic(
            self.path / "plan.json",
            {"stage": self.stage, "site": self.site, "attempts": [a.to_json() for a in self.attempts]},
            mode=PRIVATE,
        )

    def line_owner(self) -> dict[int, tuple[str, str, str]]:
        """For each manifest line, the latest (executor, job id, array index) that ran it.

        In a packed attempt the array index is the pack task, and a task runs every line of its pack.
        """
        owner: dict[int, tuple[str, str, str]] = {}
        for attempt in self.attempts:
            packs = self.packs(attempt) if attempt.packs else None
            for chunk in attempt.chunks:
                for idx in chunk.indices:
                    who = (attempt.executor, chunk.job_id, str(idx))
                    if packs is None:
                        owner[chunk.offset + idx] = who
                    else:
                        for line in packs[chunk.offset + idx] if chunk.offset + idx < len(packs) else []:
                            owner[line] = who
        return owner

    def ran(self, line: int) -> list[tuple[int, list[str]]]:
        """(attempt number from 1, recorded command) of every chunk that ran manifest ``line``, oldest first
        (packed attempts: the chunk of the task whose pack holds it)."""
        found = []
        for n, attempt in enumerate(self.attempts, 1):
            packs = self.packs(attempt) if attempt.packs else None
            for c in attempt.chunks:
                lines = [c.offset + i for i in c.indices] if packs is None else \
                    [x for i in c.indices if c.offset + i < len(packs) for x in packs[c.offset + i]]
                if line in lines:
                    found.append((n, c.command))
        return found

    def packs(self, attempt: Attempt) -> list[list[int]]:
        """A packed attempt's packs file: line k+1 holds the manifest lines of pack task k ([] when unreadable)."""
        try:
            text = (self.path / attempt.packs).read_text()
        except (OSError, UnicodeDecodeError):
            return []
        try:
            return [[int(x) for x in line.split()] for line in text.splitlines()]
        except ValueError:
            return []

    def packed(self) -> bool:
        """True when any attempt of this run packed several items into one array task."""
        return any(a.packs for a in self.attempts)


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
    """Read a run folder: plan.json, and check that manifest.txt, job.env and spec.json read back.

    Raises :class:`DamagedRun` (a one-line :class:`ConfigError`) naming what is wrong.
    """
    plan = path / "plan.json"
    if (path / "pipeline.json").is_file():  # a pipeline run folder (runs/<pipeline>/<ts>): not a stage run
        raise ConfigError(f"{path}: a pipeline run folder, not a stage run (make status PIPELINE=)")
    if not plan.is_file():
        if path.is_dir() and any(path.iterdir()):
            raise DamagedRun(path, "no plan.json")
        raise ConfigError(f"{path}: no plan.json here; pick a run from 'make status'")
    try:
        d = json.loads(plan.read_text())
        run = Run(path=path, stage=str(d["stage"]), site=str(d["site"]),
                  attempts=[Attempt.from_json(a) for a in d["attempts"]])
        for a in run.attempts:
            for c in a.chunks:
                if not isinstance(c.offset, int) or not all(isinstance(i, int) for i in c.indices):
                    raise ValueError("bad chunk")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise DamagedRun(path, "plan.json unreadable") from None
    from geohpc.core.stages import stage_names

    if run.stage not in stage_names():
        raise DamagedRun(path, f"unknown stage {run.stage!r} in plan.json")
    for name, check in (("manifest.txt", run.items), ("job.env", run.job_env)):
        if not (path / name).is_file():
            raise DamagedRun(path, f"{name} missing")
        try:
            check()
        except (OSError, UnicodeDecodeError, ValueError):
            raise DamagedRun(path, f"{name} unreadable") from None
    if run.spec_file.exists():
        from geohpc.core.jobspec import JobSpec  # lazy: jobspec pulls in the site and slurm modules

        try:
            JobSpec.from_json(json.loads(run.spec_file.read_text()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise DamagedRun(path, "spec.json unreadable") from None
    return run


def scan_runs(repo: Path, stage: str | None = None) -> tuple[list[Run], list[DamagedRun]]:
    """All readable runs (of one stage), oldest first, and the damaged run folders found beside them."""
    root = runs_root(repo)
    folders = [p for p in root.glob(f"{stage}/*" if stage else "*/*") if p.is_dir()]
    runs: list[tuple[float, str, Run]] = []
    damaged: list[DamagedRun] = []
    for folder in sorted(folders):
        try:
            run = load_run(folder)
        except DamagedRun as exc:
            damaged.append(exc)
            continue
        except ConfigError:  # an empty folder: a refused submit that could not tidy up
            continue
        try:
            mtime = (folder / "plan.json").stat().st_mtime
        except OSError:
            continue
        runs.append((mtime, str(folder), run))
    return [r for _, _, r in sorted(runs, key=lambda t: (t[0], t[1]))], damaged


def list_runs(repo: Path, stage: str | None = None) -> list[Run]:
    """All readable runs (of one stage), oldest first; damaged ones are left out (see :func:`scan_runs`)."""
    return scan_runs(repo, stage)[0]


def find_run(repo: Path, stage: str, run: str = "", report: list[DamagedRun] | None = None) -> Run:
    """The run named ``run`` (a folder name or path) of ``stage``, else its latest readable run.

    Damaged runs passed over on the way are appended to ``report``; a damaged named run is an error.
    """
    if run:
        path = Path(run) if "/" in run else runs_root(repo) / stage / run
        try:
            return load_run(path)
        except DamagedRun as exc:
            raise ConfigError(f"{exc}; it cannot be resubmitted: submit its items again "
                              "with make submit, or pick another run from make status") from None
    runs, damaged = scan_runs(repo, stage)
    if report is not None:
        report.extend(damaged)
    if not runs:
        raise ConfigError(f"no runs of stage {stage} under {runs_root(repo) / stage}; submit one first")
    return runs[-1]
