"""Warp one raster onto a mosaic's grid (its CRS, resolution and pixel alignment), window by window.

Used by ``python -m geohpc mosaic --reproject`` for inputs whose CRS, resolution or pixel grid
differ from the first input's. The result is a tiled, compressed GeoTIFF beside the VRT; it is
reused on a rerun while it is newer than its source.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.guards import sweep_temporaries
from geohpc.raster_io import check_written, open_raster, verify_raster
from geohpc.util import atomic_path

WINDOW_BYTES = 256 << 20  # pixels held at once while warping


def warp_to_grid(src: str, ref_crs_wkt: str, ref_transform: tuple[float, ...], dst: Path,
                 nodata: float | None, resampling: Resampling | None = None) -> Path:
    """Reproject ``src`` onto the grid of ``ref_transform`` in ``ref_crs_wkt`` and write ``dst``.

    Parameters
    ----------
    src:
        The raster to warp.
    ref_crs_wkt, ref_transform:
        The mosaic's CRS and geotransform (a, b, c, d, e, f); output pixels align with it.
    dst:
        Output GeoTIFF (atomic write; skipped when newer than ``src``).
    nodata:
        Value for pixels outside ``src``: its own nodata if it has one, else this one.
    resampling:
        Default nearest for class maps (colour table), else bilinear.

    Returns
    -------
    Path
        ``dst``.
    """
    if dst.is_file() and dst.stat().st_mtime >= Path(src).stat().st_mtime and verify_raster(dst) is None:
        return dst
    sweep_temporaries(dst)
    a, _, c0, _, e, f0 = ref_transform[:6]
    crs = CRS.from_wkt(ref_crs_wkt)
    with open_raster(src) as ds:
        fill = ds.nodata if ds.nodata is not None else nodata
        if fill is None:
            raise InputError(f"{src}: has no nodata value, so the area around it after reprojection cannot be "
                             "marked; give --nodata V")
        try:
            ds.colormap(1)
            classes = True
        except ValueError:
            classes = False
        rs = resampling or (Resampling.nearest if classes else Resampling.bilinear)
        left, bottom, right, top = transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21)
        col0, col1 = math.floor((left - c0) / a), math.ceil((right - c0) / a)
        row0, row1 = math.floor((top - f0) / e), math.ceil((bottom - f0) / e)
        transform = Affine(a, 0, c0 + col0 * a, 0, e, f0 + row0 * e)
        width, height = col1 - col0, row1 - row0
        prof = {"driver": "GTiff", "width": width, "height": height, "count": ds.count, "dtype": ds.dtypes[0],
                "crs": crs, "transform": transform, "nodata": fill, "tiled": True, "blockxsize": 256,
                "blockysize": 256, "compress": "deflate", "bigtiff": "IF_SAFER"}
        dst.parent.mkdir(parents=True, exist_ok=True)
        with WarpedVRT(ds, crs=crs, transform=transform, width=width, height=height, resampling=rs,
                       nodata=fill) as vrt, atomic_path(dst) as tmp:
            with rasterio.open(tmp, "w", **prof) as out:
                if classes:
                    out.write_colormap(1, ds.colormap(1))
                rows = max(1, WINDOW_BYTES // (width * ds.count * np.dtype(ds.dtypes[0]).itemsize))
                for r in range(0, height, rows):
                    w = Window(0, r, width, min(rows, height - r))
                    out.write(vrt.read(window=w).astype(ds.dtypes[0], copy=False), window=w)
            check_written(tmp, dst)
    return dst


def warped_name(folder: Path, index: int, src: str) -> Path:
    """Where input number ``index`` goes once warped: ``<folder>/<index>_<stem>.tif``."""
    return folder / f"{index:05d}_{Path(src).stem}.tif"
