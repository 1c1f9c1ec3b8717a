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


REPO = Path(__file__).resolve().parents[1]


def make_patch(pdir: Path, h: int, w: int, t: int = 6, t1: int = 3, seed: int = 0, masked: bool = False) -> None:
    """Write one TESSERA patch folder of random data (all observations invalid when ``masked``)."""
    rng = np.random.default_rng(seed)
    pdir.mkdir(parents=True, exist_ok=True)
    np.save(pdir / "bands.npy", rng.integers(100, 5000, (t, h, w, 10)).astype(np.uint16))
    np.save(pdir / "masks.npy", np.zeros((t, h, w), np.uint8) if masked else (rng.random((t, h, w)) > 0.2).astype(np.uint8))
    np.save(pdir / "doys.npy", np.arange(t, dtype=np.int16) * 20 + 90)
    for k, o in enumerate(("ascending", "descending")):
        sar = rng.normal(-12, 3, (t1, h, w, 2)).astype(np.float32)
        if masked:
            sar[:] = np.nan
        np.save(pdir / f"sar_{o}.npy", sar)
        np.save(pdir / f"sar_{o}_doy.npy", np.arange(t1, dtype=np.int16) * 30 + 95 + k)


def job_values_for(stage: str, work: Path, **params: str) -> dict[str, str]:
    """The stage values ``make submit`` writes into job.env (defaults filled, paths absolute) for ``params``."""
    from geohpc.core.stages import StageContext, get_stage, job_values

    return job_values(get_stage(stage), StageContext(stage, {}, params, REPO, Path(work)))
