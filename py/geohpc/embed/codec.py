"""Embedding encodings shared by infer and stitch (numpy only): float32 with NaN, or int8 + scale.

int8 form: value = int8 x scale, per-pixel float32 scale = max|v| / 127; nodata pixels hold int8 -128
and a NaN scale (real values use -127..127 only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NODATA_INT8 = -128


def quantize(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 (..., 128) and float32 scale (...) of float embeddings; NaN pixels -> -128 and NaN scale."""
    nod = ~np.isfinite(emb).all(axis=-1)
    absv = np.abs(np.where(nod[..., None], 0.0, emb))
    amax = absv.max(axis=-1) if emb.shape[-1] else np.zeros(emb.shape[:-1])
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(np.nan_to_num(emb) / scale[..., None]), -127, 127).astype(np.int8)
    q[nod] = NODATA_INT8
    scale[nod] = np.nan
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float32 embeddings from int8 + scale; nodata pixels become NaN."""
    out = q.astype(np.float32) * scale[..., None].astype(np.float32)
    out[(q == NODATA_INT8).all(axis=-1) | ~np.isfinite(scale)] = np.nan
    return out


def scale_path(path: Path) -> Path:
    """The scale file beside an int8 embedding file: ``x.npy`` -> ``x_scale.npy``."""
    return path.with_name(path.stem + "_scale.npy")


def open_embedding(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-map an embedding file and its scale file (None for float32)."""
    arr = np.load(path, mmap_mode="r")
    if arr.dtype == np.int8:
        return arr, np.load(scale_path(path), mmap_mode="r")
    return arr, None
