"""Shared fixtures: small rasters with a real CRS and transform, built per test (no committed TIFFs)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "py"))
from testutil import write_raster  # noqa: E402  (after the path set-up)

# run records of test submissions stay out of the user's runs/ (inherited by make and job subprocesses)
os.environ.setdefault("GEOHPC_RUNS_DIR", tempfile.mkdtemp(prefix="geohpc-test-runs-"))


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_raster("a.tif", array, **profile)`` writes a small georeferenced GeoTIFF."""

    def _make(name: str, data: np.ndarray, **kw: object) -> Path:
        return write_raster(tmp_path / name, data, **kw)

    return _make


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop variables that would leak the developer's shell into site resolution."""
    for key in list(os.environ):
        if key.startswith(("GEOHPC_", "SLURM_")) or key in ("MAKEFLAGS", "MFLAGS", "PROJ_DATA", "PROJ_LIB", "GDAL_DATA"):
            monkeypatch.delenv(key, raising=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skip is a failure: .ci/run installs every service and tool the tests need."""
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("CI") and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI, where make test installs everything: {rep.longrepr}"


# ----------------------------------------------------------------------------- the reliability figure
# Every reliability case (tests/reliability) appends {"kind", "command", "case", "ok"} to this file; the
# summary at the end of the run is the figure README quotes: bad inputs, one-line errors, kills, secrets.
os.environ.setdefault("GEOHPC_RELIABILITY_LOG", os.path.join(tempfile.mkdtemp(prefix="geohpc-rel-"), "cases.jsonl"))


def reliability_summary(path: str) -> str:
    """One line from the cases log: what was tried and how it held (empty when nothing was recorded)."""
    import json

    try:
        cases = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    if not cases:
        return ""

    def count(kind: str) -> tuple[int, int]:
        of = [c for c in cases if c.get("kind") == kind]
        return len(of), sum(1 for c in of if c.get("ok"))

    bad, bad_ok = count("bad_input")
    kills, kills_ok = count("kill")
    secrets, secrets_ok = count("secret")
    return (f"reliability: {bad} bad inputs tried, {bad_ok} one-line errors with nothing left behind; "
            f"{kills} kills, {kills_ok} reruns with identical output; {secrets} secrets planted, "
            f"{secrets - secrets_ok} leaked")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Print the reliability figure when the run recorded any case."""
    line = reliability_summary(os.environ["GEOHPC_RELIABILITY_LOG"])
    if line:
        terminalreporter.write_sep("-", "reliability suite")
        terminalreporter.write_line(line)
