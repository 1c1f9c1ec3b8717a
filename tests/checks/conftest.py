"""Fixtures for the preflight tests: a context factory and a way to run one check by name."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "py"))
FIXTURES = Path(__file__).parent / "fixtures"

from geohpc.preflight.context import PreflightContext, Result  # noqa: E402
from geohpc.preflight.runner import load_checks, run_checks  # noqa: E402

LOCAL_SITE = {
    "SITE_NAME": "local", "ACCOUNT": "none", "PARTITION_CPU": "debug", "PARTITION_GPU": "debug",
    "GPUS_PER_NODE": "0", "GPU_VENDOR": "none", "REMOTE": "", "REMOTE_DIR": "", "VENV": "",
    "PYTORCH_SIF": "", "CONTAINER_RUNTIME": "none", "CONTAINER_BIND": "", "MODULES": "",
    "INTERNET": "yes", "PURGE_DAYS": "0", "FLASH_PURGE_DAYS": "", "MAX_ARRAY_SIZE": "1001",
    "MAX_JOBS": "0", "QUOTA_CMD": "df", "GDAL_CLI": "yes",
}


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., PreflightContext]:
    """``make_ctx(site={...overrides}, **fields)``: a context on a local-like site under tmp_path."""

    def _make(site: dict[str, str] | None = None, **fields: object) -> PreflightContext:
        values = dict(LOCAL_SITE, SCRATCH=str(tmp_path / "scratch"), PROJECT_DIR=str(tmp_path / "project"))
        values.update(site or {})
        (tmp_path / "scratch").mkdir(exist_ok=True)
        fields.setdefault("env", {"HOME": str(tmp_path / "home")})
        fields.setdefault("site_file", dict(values))
        return PreflightContext(site=values, **fields)  # type: ignore[arg-type]

    return _make


@pytest.fixture(scope="session")
def checks() -> dict[str, object]:
    """The real check modules from checks/, by name."""
    return {c.name: c for c in load_checks()}


@pytest.fixture
def run_check(checks: dict[str, object]) -> Callable[[str, PreflightContext], Result]:
    """Run one check through the real runner (so crashes show as ``crashed``)."""

    def _run(name: str, ctx: PreflightContext) -> Result:
        (res,) = run_checks(ctx, [checks[name]])  # type: ignore[list-item]
        return res

    return _run
