"""Shared test helpers (importable as ``testutil``): small rasters with a real CRS and transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
