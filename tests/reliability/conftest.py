"""Fixtures of the reliability walk that both halves of the stages use: ``full_disk``, a 1 MiB tmpfs, and
``read_only_dir``, a read-only tmpfs (the tests run as root, for whom a chmod 555 folder is still writable).

The helpers (hostile runs, kills, the outcome log) are in ``relutil.py`` beside this file.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from relutil import record as record_outcome


@contextlib.contextmanager
def _tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs of its own at ``mnt`` for the test (unmounted after it, even on failure)."""
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (the reliability tests run as root): {r.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path/full``: writes there fail with ENOSPC, as on a quota-full scratch."""
    with _tmpfs(tmp_path / "full", "size=1m") as mnt:
        yield mnt


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty read-only file system at ``tmp_path/ro`` (root writes through chmod 555, not through this)."""
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as mnt:
        yield mnt


@pytest.fixture
def readonly_dir(read_only_dir: Path) -> Path:
    """The same read-only tmpfs under the name integrity-A's tests use."""
    return read_only_dir


@pytest.fixture
def record() -> Callable[[str, str, str, bool], bool]:
    """relutil.record as a fixture: one reliability outcome appended to $GEOHPC_RELIABILITY_LOG."""
    return record_outcome
