"""Shared fixtures: small rasters with a real CRS and transform, built per test (no committed TIFFs)."""

from __future__ import annotations

import os
import tempfile
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))
# run records of test submissions stay out of the user's runs/ (inherited by make and job subprocesses)
os.environ.setdefault("GEOHPC_RUNS_DIR", tempfile.mkdtemp(prefix="geohpc-test-runs-"))


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32635",
    origin: tuple[float, float] = (500000.0, 5000000.0),
    res: float = 10.0,
    nodata: float | None = None,
    **profile: object,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a GeoTIFF at ``origin`` (upper-left) with square pixels."""
    import rasterio
    from rasterio.transform import from_origin

    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    prof: dict[str, object] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": data.dtype.name,
        "transform": from_origin(origin[0], origin[1], res, res),
    }
    if crs is not None:
        prof["crs"] = crs
    if nodata is not None:
        prof["nodata"] = nodata
    prof.update(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


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
