"""Embedding rasters for the crop stages: list them, check them, and read pixels dequantised.

Embedding convention (shared by ``sample``, ``classify`` and the synthetic scene)
--------------------------------------------------------------------------------
* float32 (or float64) rasters hold the embedding values as they are, one band per dimension.
* int8 rasters are TESSERA's quantised form: ``value = int8 * scale``. The scale comes from, in order,
  a sidecar raster ``<stem>_scale.tif`` (one float32 band on the same grid: TESSERA's per-pixel scale),
  or a dataset tag ``scale=<float>`` (one scale for the whole file). An int8 raster with neither is an error.
* A pixel is nodata when every band equals the raster's nodata value, when any band is NaN, or when its
  per-pixel scale is NaN or zero.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.raster_io import check_georeferenced, open_raster
from geohpc.util import work_path as _work_path

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


def work_path(value: str | os.PathLike[str]) -> Path:
    """:func:`geohpc.util.work_path` as a Path (relative to GEOHPC_WORK when set)."""
    return Path(_work_path(value))


def expand_rasters(spec: str) -> list[Path]:
    """Turn a RASTERS value into a list of raster files.

    ``spec`` is a comma-separated list whose entries are raster files (``.tif``/``.vrt``), directories
    (every ``*.tif``/``*.tiff``/``*.vrt`` inside, sorted, ``*_scale.tif`` sidecars skipped), glob patterns,
    or ``.txt`` files with one raster path a line.
    """
    out: list[Path] = []
    for part in [s.strip() for s in spec.split(",") if s.strip()]:
        if any(ch in part for ch in "*?["):
            matches = sorted(glob.glob(str(work_path(part))))
            if not matches:
                raise InputError(f"{part}: the pattern matches no raster (check RASTERS=)")
            out.extend(Path(m) for m in matches)
            continue
        p = work_path(part)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in RASTER_SUFFIXES and not q.stem.endswith("_scale"))
            if not found:
                raise InputError(f"{p}: directory holds no .tif/.vrt rasters (check RASTERS=)")
            out.extend(found)
        elif p.suffix.lower() == ".txt":
            if not p.is_file():
                raise InputError(f"{p}: raster list not found (check RASTERS=)")
            out.extend(work_path(line.strip()) for line in p.read_text().splitlines() if line.strip())
        else:
            if not p.exists():
                raise InputError(f"{p}: no such raster (check RASTERS=)")
            out.append(p)
    if not out:
        raise InputError("no rasters given: pass RASTERS=<file|dir|glob|list.txt>[,...]")
    return out


@dataclass
class Embedding:
    """An open embedding raster plus what is needed to dequantise it."""

    path: Path
    ds: Any  # rasterio DatasetReader
    scale_ds: Any | None = None
    scale_value: float | None = None

    @property
    def count(self) -> int:
        """Number of embedding bands."""
        return int(self.ds.count)

    def close(self) -> None:
        """Close the raster and its scale sidecar."""
        self.ds.close()
        if self.scale_ds is not None:
            self.scale_ds.close()

    def __enter__(self) -> Embedding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read ``window`` for all bands: ``(values float32 (bands, h, w), valid bool (h, w))``."""
        raw = self.ds.read(window=window)
        return self.dequantise(raw, window)

    def dequantise(self, raw: np.ndarray, window: Window | None = None, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Apply the nodata rule and the int8 scale to ``raw`` (bands, ...) read from ``window``."""
        nodata = self.ds.nodata
        invalid = np.zeros(raw.shape[1:], dtype=bool)
        if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
            invalid |= np.all(raw == nodata, axis=0)
        vals = raw.astype(np.float32, copy=False)
        if raw.dtype.kind == "i" and raw.dtype.itemsize == 1:
            if scale is None:
                if self.scale_ds is not None:
                    scale = self.scale_ds.read(1, window=window).astype(np.float32)
                else:
                    scale = np.float32(self.scale_value)
            vals = vals * scale
            invalid |= ~np.isfinite(np.broadcast_to(scale, invalid.shape)) | (np.broadcast_to(scale, invalid.shape) == 0)
        if vals.dtype.kind == "f":
            invalid |= np.isnan(vals).any(axis=0)
        return vals, ~invalid


def open_embedding(path: str | os.PathLike[str]) -> Embedding:
    """Open an embedding raster, check it is georeferenced, and find its int8 scale if it needs one."""
    p = Path(path)
    ds = open_raster(p)
    try:
        check_georeferenced(ds)
        if len(set(ds.dtypes)) != 1:
            raise InputError(f"{p}: bands have mixed data types {sorted(set(ds.dtypes))}; write one dtype for all bands")
        emb = Embedding(p, ds)
        if ds.dtypes[0] == "int8":
            sidecar = p.with_name(f"{p.stem}_scale.tif")
            tag = ds.tags().get("scale") or ds.tags().get("SCALE")
            if sidecar.exists():
                sds = rasterio.open(sidecar)
                if (sds.width, sds.height) != (ds.width, ds.height) or sds.transform != ds.transform:
                    sds.close()
                    raise InputError(f"{sidecar}: scale raster is not on the grid of {p}; rewrite it on the same grid")
                emb.scale_ds = sds
            elif tag is not None:
                try:
                    emb.scale_value = float(tag)
                except ValueError:
                    raise InputError(f"{p}: tag scale={tag!r} is not a number; set it to the int8 scale factor") from None
            else:
                raise InputError(
                    f"{p}: int8 embedding without a scale; add a sidecar {sidecar.name} (float32, same grid) "
                    "or a dataset tag scale=<float> (value = int8 * scale)"
                )
        elif ds.dtypes[0] not in ("float32", "float64", "int16", "uint16", "uint8", "int32"):
            raise InputError(f"{p}: unsupported embedding dtype {ds.dtypes[0]}; use float32 or int8 + scale")
        return emb
    except BaseException:
        ds.close()
        raise


def band_names(count: int) -> list[str]:
    """Feature column names ``b001`` .. ``bNNN`` for ``count`` bands."""
    return [f"b{i:03d}" for i in range(1, count + 1)]
