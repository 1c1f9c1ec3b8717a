"""Site facts the guide-derived preflight checks read, and the site commands they ask.

Per-partition and per-QOS facts are site values (``PART_SMALL_G=maxtime:3-00:00:00,mem:yes,nodes:1-4``,
``QOS_DEVEL=maxtime:02:00:00``; the names are in the issue-11 site keys). Site commands (``sinfo``,
``squeue``, ``lumi-allocations``, ``cost``) run here, or their recorded output is read from the file an
environment variable names (``GEOHPC_SINFO_OUTPUT``, ``GEOHPC_SQUEUE_OUTPUT``, ``GEOHPC_ALLOC_OUTPUT``): the
same way ``GEOHPC_QUOTA_OUTPUT`` feeds the quota check. The parsers take the output exactly as the command
prints it; a recorded file may start with a ``$ command`` line, which is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from geohpc.core.partitions import (  # noqa: F401  (the partition facts live in core; checks import them here)
    has_partition_data,
    hours,
    node_range,
    parse_facts,
    partition_facts,
    qos_facts,
    time_s,
)
from geohpc.core.slurm import parse_time_limit  # noqa: F401

# sinfo node states that take no new jobs (a trailing * ~ # ! % $ @ ^ - is a flag on the state)
UNAVAILABLE = ("down", "drain", "drained", "draining", "drng", "fail", "failing", "maint", "inval",
               "unk", "unknown", "reboot", "reserved", "resv", "futr", "future", "powered_down", "powering_down",
               "npc", "no_respond", "not_responding", "boot", "powering_up", "plnd")


class CommandUnavailable(Exception):
    """The site command is not on PATH here, failed, or timed out; the message says which."""


def probe_answer(probe: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """One answer of the probe report: ``report["answers"][name]`` (issue 11's probe), else ``report[name]``
    when that is a dict; ``{}`` when the report does not have it."""
    report = probe or {}
    found = (report.get("answers") or {}).get(name)
    if not isinstance(found, dict):
        found = report.get(name)
    return found if isinstance(found, dict) else {}


# ------------------------------------------------------------------------------------------ commands
def command_output(env: Mapping[str, str], var: str, argv: Sequence[str], timeout: float = 20) -> str:
    """The output of ``argv``, or the recorded output in the file ``env[var]`` names.

    Raises
    ------
    CommandUnavailable : the command is not here, exits non-zero, or times out.
    """
    recorded = env.get(var, "")
    if recorded:
        text = Path(recorded).read_text()
        lines = text.splitlines(keepends=True)
        return "".join(lines[1:]) if lines and lines[0].startswith("$ ") else text
    if shutil.which(argv[0]) is None:
        raise CommandUnavailable(f"{argv[0]} is not on PATH here")
    try:
        run = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CommandUnavailable(f"{' '.join(argv)} timed out after {timeout:g} s") from exc
    if run.returncode != 0:
        first = (run.stderr.strip() or run.stdout.strip() or f"exit {run.returncode}").splitlines()[0]
        raise CommandUnavailable(f"{' '.join(argv)}: {first}")
    return run.stdout


@dataclass
class NodeRow:
    """One ``sinfo`` row: partition, availability, node count, state."""

    partition: str
    avail: str
    nodes: int
    state: str

    @property
    def usable(self) -> bool:
        """True when these nodes can take new jobs."""
        base = self.state.rstrip("*~#!%$@^-+").lower()
        return self.avail.lower() == "up" and base not in UNAVAILABLE


def parse_sinfo(text: str) -> list[NodeRow]:
    """Rows of ``sinfo`` in its default layout (``PARTITION AVAIL TIMELIMIT NODES STATE NODELIST``)."""
    rows: list[NodeRow] = []
    header: list[str] = []
    for line in text.splitlines():
        cols = line.split()
        if not cols:
            continue
        if cols[0] == "PARTITION":
            header = cols
            continue
        if not header or len(cols) < len(header) - 1:
            continue
        get = dict(zip(header, cols, strict=False))
        count = get.get("NODES", "0")
        rows.append(NodeRow(get.get("PARTITION", "").rstrip("*"), get.get("AVAIL", "up"),
                            int(count) if count.isdigit() else 0, get.get("STATE", "")))
    return rows


def parse_squeue_starts(text: str) -> list[tuple[str, float]]:
    """``(job id, start time)`` from ``squeue -h -t RUNNING -o '%i %S'`` lines (ISO start times)."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 2:
            continue
        try:
            out.append((cols[0], datetime.fromisoformat(cols[1]).timestamp()))
        except ValueError:
            continue
    return out


@dataclass
class Allocation:
    """What is left of a project's compute allocation, in the command's own unit."""

    project: str
    unit: str  # "gpu-hours", "cpu-hours" (LUMI core/hours) or "billing-hours" (NRIS)
    used: float
    allocated: float

    @property
    def left(self) -> float:
        """Hours left (negative when over)."""
        return self.allocated - self.used


_LUMI_CELL = re.compile(r"([-\d.]+)/([-\d.]+)\s+\(\s*[-\d.]+%\)\s*(\S+)")


def parse_lumi_allocations(text: str) -> dict[str, dict[str, Allocation]]:
    """``{project: {'cpu-hours'|'gpu-hours'|'storage': Allocation}}`` from ``lumi-allocations``.

    The table is ``|``-separated: ``project_465002906   |  0/1000   (0.0%) core/hours|  0/300 ... gpu/hours|``.
    """
    units = {"core/hours": "cpu-hours", "gpu/hours": "gpu-hours", "tb/hours": "storage"}
    out: dict[str, dict[str, Allocation]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 2 or not re.fullmatch(r"project_\d+", cells[0]):
            continue
        for cell in cells[1:]:
            m = _LUMI_CELL.search(cell)
            if m:
                unit = units.get(m.group(3).lower(), m.group(3))
                out.setdefault(cells[0], {})[unit] = Allocation(cells[0], unit, float(m.group(1)), float(m.group(2)))
    return out


_COST_ROW = re.compile(r"^\s*(\S+)\s+(Quota \(pri\)|Quota \(nonpri\)|Used|Running|Pending|Available)\s+(-?[\d.]+|NA)\s*$")


def parse_cost(text: str) -> dict[str, Allocation]:
    """``{account: Allocation}`` from NRIS ``cost`` / ``cost -p <account>`` (billing hours).

    Rows are ``nn1234k  Quota (pri)   1000.00``, ``... Used ...``, ``... Running``, ``... Pending``,
    ``... Available``; ``--details`` adds per-user rows, which are skipped. Available = quota - used -
    running - pending, so ``allocated - used`` of the result is that Available figure.
    """
    rows: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _COST_ROW.match(line)
        if m and m.group(3) != "NA":
            rows.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    out = {}
    for account, vals in rows.items():
        quota = vals.get("Quota (pri)", 0.0) + vals.get("Quota (nonpri)", 0.0)
        avail = vals.get("Available")
        used = quota - avail if avail is not None else vals.get("Used", 0.0)
        out[account] = Allocation(account, "billing-hours", used, quota)
    return out
