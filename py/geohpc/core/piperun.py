"""The pipeline run folder ``runs/<pipeline>/<ts>/`` (its files are described in ARCHITECTURE.md, issue 13).

``pipeline.json`` once; ``steps/<step>.json`` rewritten atomically by whoever owns the step now;
``jobs.txt`` and ``decisions.jsonl`` append-only (one ``O_APPEND`` write a line); ``cancelled`` a marker;
``started/<step>`` a marker made with ``O_EXCL`` so a step with several upstreams is started once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geohpc.errors import ConfigError
from geohpc.util import write_json_atomic

SCHEMA = "geohpc.pipeline-run/1"
STATES = ("waiting", "planning", "running", "done", "failed", "blocked", "cancelled")
ENDED = ("done", "failed", "blocked", "cancelled")


def now() -> str:
    """The time stamp every record uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


@dataclass
class PipelineRun:
    """One pipeline run folder."""

    path: Path

    @property
    def meta(self) -> dict[str, Any]:
        """pipeline.json."""
        try:
            data = json.loads((self.path / "pipeline.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: pipeline.json unreadable ({exc}); is this a pipeline run folder?") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ConfigError(f"{self.path}/pipeline.json: not a {SCHEMA} record")
        return data

    def step(self, name: str) -> dict[str, Any]:
        """steps/<name>.json (a step never written yet is waiting)."""
        try:
            return json.loads((self.path / "steps" / f"{name}.json").read_text())
        except (OSError, ValueError):
            return {"step": name, "state": "waiting", "run": "", "items": 0, "waves_sent": 0, "waves_total": 0,
                    "message": ""}

    def set_step(self, name: str, stage: str, **changes: Any) -> dict[str, Any]:
        """Rewrite steps/<name>.json with ``changes`` applied."""
        d = self.step(name)
        d.update(changes, step=name, stage=stage, updated=now())
        if d["state"] not in STATES:
            raise ValueError(f"bad step state {d['state']!r}")
        write_json_atomic(self.path / "steps" / f"{name}.json", d)
        return d

    def add_job(self, job_id: str, step: str, kind: str) -> None:
        """One line of jobs.txt: ``<job_id> <step> <kind>`` (array | planner | retry)."""
        _append(self.path / "jobs.txt", f"{job_id} {step} {kind}")

    def job_ids(self) -> list[str]:
        """Every Slurm job id recorded in jobs.txt."""
        try:
            lines = (self.path / "jobs.txt").read_text().splitlines()
        except OSError:
            return []
        return [ln.split()[0] for ln in lines if ln.split() and ln.split()[0].isdigit()]

    def add_decision(self, decision: dict[str, Any]) -> None:
        """One line of decisions.jsonl."""
        _append(self.path / "decisions.jsonl", json.dumps({"time": now(), **decision}, sort_keys=True))

    def decisions(self, step: str | None = None) -> list[dict[str, Any]]:
        """The decisions so far (of one step)."""
        try:
            lines = (self.path / "decisions.jsonl").read_text().splitlines()
        except OSError:
            return []
        out = []
        for ln in lines:
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            if isinstance(d, dict) and (step is None or d.get("step") == step):
                out.append(d)
        return out

    @property
    def cancelled(self) -> bool:
        """True once make cancel PIPELINE= wrote the marker."""
        return (self.path / "cancelled").exists()

    def claim(self, step: str) -> bool:
        """True for the one caller that may start ``step`` (an ``O_EXCL`` marker under started/)."""
        (self.path / "started").mkdir(exist_ok=True)
        try:
            os.close(os.open(self.path / "started" / step, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        return True

    def states(self) -> dict[str, str]:
        """Each step's state, in pipeline.json order."""
        return {s["name"]: self.step(s["name"])["state"] for s in self.meta["steps"]}

    def ended(self) -> bool:
        """True when no step can still change: each is done, failed, blocked or cancelled."""
        return all(s in ENDED for s in self.states().values())


def pipeline_runs(runs_root: Path, pipeline: str) -> list[Path]:
    """The run folders of ``pipeline``, oldest first."""
    return sorted(p for p in (runs_root / pipeline).glob("*") if (p / "pipeline.json").is_file())
