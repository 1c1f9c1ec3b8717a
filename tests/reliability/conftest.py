"""Fixtures of the reliability suite: a full disk (a tiny tmpfs), and the outcome log the summary reads.

``full_disk(tmp_path) -> Path``: a 1 MiB tmpfs mounted for the test (root; unmounted afterwards), so a
program writing there runs out of space part-way, the way a quota-full scratch does.
``readonly_dir(tmp_path) -> Path``: a folder on a read-only tmpfs.
``record(kind, command, case, ok)`` appends one JSON line to ``$GEOHPC_RELIABILITY_LOG`` when it is set
(kind in bad_input, kill, secret).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "py"))
sys.path.insert(0, str(REPO / "tests"))

FULL_DISK_SIZE = "1m"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 1 MiB tmpfs of its own: writes there fail with ENOSPC once it holds 1 MiB."""
    mnt = tmp_path / "full_disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_SIZE}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.fail(f"cannot mount a tmpfs at {mnt} (the reliability suite runs as root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only tmpfs (file modes do not stop root; a read-only mount does)."""
    mnt = tmp_path / "read_only"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.fail(f"cannot mount a read-only tmpfs at {mnt}: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def record_outcome(kind: str, command: str, case: str, ok: bool) -> None:
    """Append one outcome to ``$GEOHPC_RELIABILITY_LOG`` (JSON lines) when the variable is set."""
    log = os.environ.get("GEOHPC_RELIABILITY_LOG", "")
    if not log:
        return
    line = json.dumps({"kind": kind, "command": command, "case": case, "ok": bool(ok)})
    with open(log, "a") as f:
        f.write(line + "\n")


@pytest.fixture
def record() -> Callable[[str, str, str, bool], None]:
    """:func:`record_outcome` as a fixture."""
    return record_outcome
