"""Source pixels -> RGBA bytes: class maps through their colour table, RGB(A) as is, other data rescaled.

Non-Byte data (embeddings, reflectances, floats) is never clamped to 0-255 the way gdal2tiles does:
it is stretched between two percentiles (default 2 and 98) of a sample, either one band as grey,
three chosen bands as RGB, or the first three principal components of all bands (PCA fitted on a
sample). The fitted numbers go into ``tiles.json`` so every shard and every rerun renders alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.windows import Window

from geohpc.errors import ConfigError, InputError

MODES = ("auto", "classes", "rgb", "percentile", "bands", "pca")
SAMPLE_PIXELS = 1 << 20  # pixels read (decimated) to fit percentiles / PCA
# 20 distinct colours for class maps that carry no colour table (value % 20 picks one)
DEFAULT_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]


def _alpha_band(ds: rasterio.io.DatasetReader) -> int | None:
    for i, ci in enumerate(ds.colorinterp, 1):
        if ci == ColorInterp.alpha:
            return i
    return None


def choose_mode(ds: rasterio.io.DatasetReader, mode: str, bands: list[int] | None) -> tuple[str, list[int]]:
    """Resolve ``auto`` and default bands from the source's dtype, band count and colour table.

    auto: one band with a colour table -> classes; Byte with 3+ bands -> rgb; one Byte band -> rgb
    (grey, no stretch); other one- or two-band data -> percentile; 3-4 bands -> bands 1,2,3;
    more bands (embeddings) -> pca.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    for b in bands or []:
        if not 1 <= b <= ds.count:
            raise ConfigError(f"--bands: {ds.name} has bands 1..{ds.count}, not {b}")
    alpha = _alpha_band(ds)
    data_bands = [i for i in range(1, ds.count + 1) if i != alpha]
    byte = ds.dtypes[0] == "uint8"
    has_cmap = True
    try:
        ds.colormap(1)
    except ValueError:
        has_cmap = False
    if mode == "auto":
        nb = len(bands) if bands else len(data_bands)
        if has_cmap and nb == 1:
            mode = "classes"
        elif byte and nb in (1, 3):
            mode = "rgb"
        elif nb in (1, 2):
            mode = "percentile"
        elif nb <= 4 or (bands and len(bands) == 3):
            mode = "bands"
        else:
            mode = "pca"
    if bands:
        chosen = list(bands)
    elif mode in ("classes", "percentile"):
        chosen = [data_bands[0]]
    elif mode in ("rgb", "bands"):
        chosen = data_bands[:3] if len(data_bands) >= 3 else data_bands[:1]
    else:
        chosen = data_bands
    if mode == "classes" and (len(chosen) != 1 or not np.issubdtype(np.dtype(ds.dtypes[chosen[0] - 1]), np.integer)):
        raise ConfigError(f"--mode classes needs one integer band; {ds.name} band {chosen} is {ds.dtypes[chosen[0] - 1]}")
    if mode == "rgb":
        if len(chosen) not in (1, 3):
            raise ConfigError("--mode rgb takes 1 or 3 bands (e.g. --bands 3,2,1)")
        if any(ds.dtypes[b - 1] != "uint8" for b in chosen):
            raise ConfigError(f"--mode rgb needs Byte bands; {ds.name} is {ds.dtypes[0]}: use --mode bands (percentile stretch) or pca")
    if mode == "bands" and len(chosen) != 3:
        raise ConfigError(f"--mode bands takes three bands (e.g. --bands 4,3,2), got {chosen}")
    if mode == "percentile" and len(chosen) not in (1, 3):
        raise ConfigError("--mode percentile takes one band (grey) or three (RGB) via --bands")
    if mode == "pca" and len(chosen) < 3:
        raise ConfigError(f"--mode pca needs at least 3 bands; {ds.name} has {len(chosen)} (use --mode percentile)")
    return mode, chosen


def mask_kind(ds: rasterio.io.DatasetReader) -> dict[str, Any]:
    """How to tell valid pixels: an alpha band, a nodata value, an internal mask, or all valid."""
    alpha = _alpha_band(ds)
    if alpha is not None:
        return {"kind": "alpha", "band": alpha}
    if ds.nodata is not None and not (isinstance(ds.nodata, float) and np.isnan(ds.nodata)):
        return {"kind": "nodata", "value": float(ds.nodata)}
    flags = ds.mask_flag_enums[0]
    if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
        return {"kind": "mask"}
    return {"kind": "none"}


def read_valid(
    ds: rasterio.io.DatasetReader, mk: dict[str, Any], data: np.ndarray, window: Window | None,
    out_shape: tuple[int, int],
) -> np.ndarray:
    """Validity (bool, H x W) of pixels whose band values are ``data`` (bands, H, W)."""
    if mk["kind"] == "alpha":
        valid = ds.read(mk["band"], window=window, out_shape=out_shape) > 0
    elif mk["kind"] == "nodata":
        valid = (data != np.asarray(mk["value"], dtype=data.dtype)).any(axis=0)
    elif mk["kind"] == "mask":
        valid = ds.read_masks(1, window=window, out_shape=out_shape) > 0
    else:
        valid = np.ones(out_shape, dtype=bool)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return valid


def class_labels(ds: rasterio.io.DatasetReader) -> dict[str, str]:
    """Class names from the raster's ``GEOHPC_CLASSES`` tag (``{"1": "wheat", ...}``), or ``{}``.

    A missing or malformed tag only costs the legend its names (the tiles are the product), so it
    is not an error here; :func:`geohpc.classify.classes.classes_from_tags` is the strict reader.
    """
    import json

    from geohpc.classify.classes import CLASSES_TAG

    try:
        raw = json.loads(ds.tags().get(CLASSES_TAG) or "{}")
        return {str(int(k)): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    except (ValueError, TypeError):
        return {}


def _sample_shape(ds: rasterio.io.DatasetReader, nbands: int, budget: int) -> tuple[int, int]:
    pixels = min(SAMPLE_PIXELS, max(4096, budget // max(1, nbands * 8)))
    scale = max(1.0, (ds.width * ds.height / pixels) ** 0.5)
    return max(1, int(ds.height / scale)), max(1, int(ds.width / scale))


def _any_valid_full_scan(ds: rasterio.io.DatasetReader, mk: dict[str, Any], band: int) -> bool:
    """Block-by-block look for one valid pixel (only when the decimated sample found none)."""
    from geohpc.raster_io import iter_row_windows

    for w in iter_row_windows(ds, budget=64 << 20):
        data = ds.read([band], window=w)
        if read_valid(ds, mk, data, w, (int(w.height), int(w.width))).any():
            return True
    return False


def fit_render(ds: rasterio.io.DatasetReader, mode: str, bands: list[int],
               percentiles: tuple[float, float] = (2.0, 98.0), budget: int = 256 << 20) -> dict[str, Any]:
    """Fit the rendering parameters (colour table, percentiles, PCA) on a decimated sample of ``ds``.

    Parameters
    ----------
    ds : rasterio dataset
        The open source.
    mode, bands : str, list of int
        As returned by :func:`choose_mode`.
    percentiles : (float, float)
        Low and high percentile mapped to 0 and 255.
    budget : int
        Bytes the sample may take.

    Returns
    -------
    dict
        JSON-serialisable parameters for :func:`render_window`.

    Raises
    ------
    InputError
        When the source has no valid pixel at all.
    """
    mk = mask_kind(ds)
    params: dict[str, Any] = {"mode": mode, "bands": bands, "mask": mk}
    if mode == "classes":
        try:
            cmap = ds.colormap(bands[0])
            params["colors"] = {str(k): list(v) for k, v in cmap.items()}
        except ValueError:
            params["colors"] = {}
        params["labels"] = class_labels(ds)
    if mode in ("rgb", "classes") and mk["kind"] == "none" and ds.dtypes[bands[0] - 1][0] != "f":
        return params  # nothing to fit and no pixel can be nodata: skip reading a sample
    shape = _sample_shape(ds, len(bands), budget)
    sample = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
    valid = read_valid(ds, mk, sample, None, shape)
    if not valid.any() and not _any_valid_full_scan(ds, mk, bands[0]):
        raise InputError(f"{ds.name}: every pixel is nodata, nothing to tile (check its nodata value with 'rio info')")
    if mode in ("rgb", "classes"):
        return params
    x = sample[:, valid].astype(np.float64)  # (bands, N)
    if mode == "pca":
        mean = x.mean(axis=1)
        xc = x - mean[:, None]
        cov = xc @ xc.T / max(1, xc.shape[1] - 1)
        evals, evecs = np.linalg.eigh(cov)
        comps = evecs[:, np.argsort(evals)[::-1][:3]].T  # (3, bands)
        for c in comps:  # a deterministic sign: the largest loading positive
            if c[np.argmax(np.abs(c))] < 0:
                c *= -1
        x = comps @ xc
        params["mean"] = mean.tolist()
        params["components"] = comps.tolist()
        params["explained"] = (np.sort(evals)[::-1][:3] / max(evals.sum(), 1e-30)).tolist()
    lo = np.percentile(x, percentiles[0], axis=1)
    hi = np.percentile(x, percentiles[1], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    params["lo"] = lo.tolist()
    params["hi"] = hi.tolist()
    params["percentiles"] = list(percentiles)
    return params


def class_lut(params: dict[str, Any], dtype: str) -> tuple[np.ndarray, int]:
    """A (65536, 4) lookup table from class value (plus offset) to RGBA, and that offset."""
    offset = 32768 if np.dtype(dtype).kind == "i" else 0
    lut = np.zeros((65536, 4), dtype=np.uint8)
    colors = params.get("colors") or {}
    if colors:
        for k, rgba in colors.items():
            idx = int(k) + offset
            if 0 <= idx < 65536:
                lut[idx] = rgba
    else:
        vals = np.arange(65536) - offset
        lut[:, :3] = np.asarray(DEFAULT_PALETTE, dtype=np.uint8)[vals % len(DEFAULT_PALETTE)]
        lut[:, 3] = 255
    return lut, offset


def _stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    y = (x.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    np.clip(y, 0, 255, out=y)
    y[np.isnan(y)] = 0  # NaN pixels are masked anyway; keep the cast defined
    return y.astype(np.uint8)


def _pca_by_band_groups(ds: rasterio.io.DatasetReader, params: dict[str, Any], window: Window,
                        shape: tuple[int, int], rs: Resampling, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA projection of a decimated read, a few bands at a time (GDAL picks overviews if any)."""
    bands, mk = params["bands"], params["mask"]
    h, w = shape
    mean = np.asarray(params["mean"], dtype=np.float32)
    comps = np.asarray(params["components"], dtype=np.float32)
    acc = np.zeros((3, h * w), dtype=np.float32)
    valid = np.ones((h, w), dtype=bool)
    group = max(1, min(len(bands), budget // max(1, h * w * 8)))
    for g in range(0, len(bands), group):
        idx = bands[g:g + group]
        data = ds.read(idx, window=window, out_shape=(len(idx), h, w), resampling=rs)
        # the mask comes from the first group; NaN anywhere makes a pixel invalid
        valid &= read_valid(ds, mk if g == 0 else {"kind": "none"}, data, window, (h, w))
        acc += comps[:, g:g + group] @ (data.reshape(len(idx), -1).astype(np.float32) - mean[g:g + group, None])
    return acc.reshape(3, h, w), valid


def _pca_by_blocks(ds: rasterio.io.DatasetReader, params: dict[str, Any], window: Window,
                   budget: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA projection at full resolution, chunk by chunk along the file's block grid, all bands at once.

    Embedding GeoTIFFs are pixel-interleaved with big blocks (128 bands x 512 x 512 float32 = 134 MB):
    reading band by band would decode every block once per band. Here each block is decoded once; a
    chunk is one block (the floor on memory for such files), or for striped files as many whole rows
    as fit ``budget``.
    """
    bands, mk = params["bands"], params["mask"]
    mean = np.asarray(params["mean"], dtype=np.float32)
    comps = np.asarray(params["components"], dtype=np.float32)
    c0, r0 = int(window.col_off), int(window.row_off)
    h, w = int(window.height), int(window.width)
    bh, bw = ds.block_shapes[bands[0] - 1]
    isz = np.dtype(ds.dtypes[bands[0] - 1]).itemsize
    if bw >= ds.width:  # striped: full-width strips of whole blocks rows within the budget
        bw = w
        bh = max(bh, (budget // max(1, w * len(bands) * isz)) // bh * bh)
    acc = np.zeros((3, h, w), dtype=np.float32)
    valid = np.zeros((h, w), dtype=bool)
    rows = sorted({r0, r0 + h, *range((r0 // bh + 1) * bh, r0 + h, bh)})
    cols = sorted({c0, c0 + w, *range((c0 // bw + 1) * bw, c0 + w, bw)}) if bw < w else [c0, c0 + w]
    for ra, rb in zip(rows[:-1], rows[1:], strict=True):
        for ca, cb in zip(cols[:-1], cols[1:], strict=True):
            win = Window(ca, ra, cb - ca, rb - ra)
            data = ds.read(bands, window=win)
            v = read_valid(ds, mk, data, win, (rb - ra, cb - ca))
            x = data.reshape(len(bands), -1).astype(np.float32) - mean[:, None]
            acc[:, ra - r0:rb - r0, ca - c0:cb - c0] = (comps @ x).reshape(3, rb - ra, cb - ca)
            valid[ra - r0:rb - r0, ca - c0:cb - c0] = v
    return acc, valid


def render_window(ds: rasterio.io.DatasetReader, params: dict[str, Any], window: Window,
                  out_shape: tuple[int, int], lut: tuple[np.ndarray, int] | None = None,
                  budget: int = 256 << 20) -> np.ndarray:
    """Read ``window`` of ``ds`` at ``out_shape`` and render it to a (4, H, W) uint8 RGBA array.

    Decimated reads (``out_shape`` smaller than the window) use averaging for continuous data and
    nearest for class maps. PCA reads its bands in groups that fit ``budget``.
    """
    mode, bands = params["mode"], params["bands"]
    h, w = out_shape
    rs = Resampling.nearest if mode == "classes" else Resampling.average
    if (int(window.height), int(window.width)) == (h, w):
        rs = Resampling.nearest
    out = np.zeros((4, h, w), dtype=np.uint8)
    mk = params["mask"]
    if mode == "pca":
        if (int(window.height), int(window.width)) == (h, w):  # full resolution: block by block
            acc, valid = _pca_by_blocks(ds, params, window, budget)
        else:
            acc, valid = _pca_by_band_groups(ds, params, window, (h, w), rs, budget)
        for c in range(3):
            out[c] = _stretch(acc[c], params["lo"][c], params["hi"][c])
    else:
        data = ds.read(bands, window=window, out_shape=(len(bands), h, w), resampling=rs)
        valid = read_valid(ds, mk, data, window, (h, w))
        if mode == "classes":
            table, offset = lut if lut is not None else class_lut(params, ds.dtypes[bands[0] - 1])
            idx = data[0].astype(np.int64) + offset
            np.clip(idx, 0, 65535, out=idx)
            out[:] = np.moveaxis(table[idx], -1, 0)  # colour-table alpha 0 stays transparent
        elif mode == "rgb":
            for c in range(3):
                out[c] = data[c if len(bands) == 3 else 0]
        else:
            for c in range(3):
                b = c if len(bands) == 3 else 0
                out[c] = _stretch(data[b], params["lo"][b], params["hi"][b])
    if mode == "classes":
        out[3] = np.where(valid, out[3], 0)
    elif mk["kind"] == "alpha":
        out[3] = np.where(valid, ds.read(mk["band"], window=window, out_shape=(h, w)), 0)
    else:
        out[3] = np.where(valid, 255, 0)
    out[:3, out[3] == 0] = 0  # transparent pixels carry no colour (downsampling relies on it)
    return out
