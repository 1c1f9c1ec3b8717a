"""Helpers for the tiles tests: the shared raster writer and the repo root."""

from __future__ import annotations

from pathlib import Path

from testutil import write_raster

REPO: Path = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "write_raster"]
