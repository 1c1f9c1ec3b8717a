"""Fixtures of the reliability walk that both halves of the stages use: ``full_disk``, a 1 MiB tmpfs, and
``read_only_dir``, a read-only tmpfs (the tests run as root, for whom a chmod 555 folder is still writable).

The helpers (hostile runs, kills, the outcome log) are in ``relutil.py`` beside this file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from relutil import record as record_outcome


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``tmp_path/full`` for the test (unmounted after it, even on failure)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (the reliability tests run as root): {r.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty read-only file system mounted at ``tmp_path/ro`` for the test."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (the reliability tests run as root): {r.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def readonly_dir(read_only_dir: Path) -> Path:
    """The same read-only tmpfs under the name integrity-A's tests use."""
    return read_only_dir


@pytest.fixture
def record() -> Callable[[str, str, str, bool], bool]:
    """relutil.record as a fixture: one reliability outcome appended to $GEOHPC_RELIABILITY_LOG."""
    return record_outcome
