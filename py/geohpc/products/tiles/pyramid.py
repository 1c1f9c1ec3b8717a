"""The tile pyramid: base-zoom metatiles warped from the source, lower zooms downsampled from children.

The base zoom is cut from *metatiles*: one tile of zoom ``maxzoom - 3`` covers 8x8 base tiles. For each
metatile the source window under it is read (decimated when the source is finer), rendered to RGBA,
warped to EPSG:3857 with ``rasterio.warp.reproject`` and cut into tiles; the three zooms above are
then built in memory by halving that canvas, so they never touch the disk or the source. Zooms below
the metatile zoom are built from the four child tile files. No step reads the whole source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mercantile
import numpy as np

from geohpc.products.tiles.core import (
    TILE_SIZE,
    Settings,
    TileRange,
    decode_tile,
    encode_tile,
    meta_zoom,
    sweep_tile_temporaries,
    tile_path,
    tile_range,
    write_bytes_atomic,
)

WEB_MERCATOR = "EPSG:3857"
_STATE: dict[str, Any] = {}  # per-process: the open source, settings, colour LUT


# ---------------------------------------------------------------- downsampling (2x2 -> 1)

def downsample_continuous(a: np.ndarray) -> np.ndarray:
    """Halve an (H, W, 4) RGBA array by 2x2 box averaging, alpha-weighted (no dark fringes at edges).

    Pillow's ``reduce`` does the work in C; for RGBA it premultiplies by alpha, so transparent pixels
    do not pull the colour of their neighbours towards black (gdal2tiles' overviews do).
    """
    from PIL import Image

    if bool((a[..., 3] == 255).all()):
        out = np.empty((a.shape[0] // 2, a.shape[1] // 2, 4), dtype=np.uint8)
        out[..., :3] = np.asarray(Image.fromarray(np.ascontiguousarray(a[..., :3]), "RGB").reduce(2))
        out[..., 3] = 255
        return out
    return np.array(Image.fromarray(np.ascontiguousarray(a), "RGBA").reduce(2))


def downsample_classes(a: np.ndarray) -> np.ndarray:
    """Halve an (H, W, 4) RGBA class map: the most frequent opaque colour of each 2x2 (ties: first)."""
    h, w = a.shape[0] // 2, a.shape[1] // 2
    packed = np.ascontiguousarray(a).view(np.uint32)[..., 0].copy()
    packed[a[..., 3] == 0] = 0
    p = packed.reshape(h, 2, w, 2).transpose(1, 3, 0, 2).reshape(4, h, w)
    counts = (p[:, None] == p[None, :]).sum(axis=1)
    counts[p == 0] = 0
    pick = np.take_along_axis(p, counts.argmax(axis=0)[None], axis=0)[0]
    return pick.view(np.uint8).reshape(h, w, 4).copy()


def downsample(a: np.ndarray, classes: bool) -> np.ndarray:
    """Halve an RGBA array with the rule for class maps or for continuous images."""
    return downsample_classes(a) if classes else downsample_continuous(a)


# ---------------------------------------------------------------- base zoom from the source

def init_worker(settings_json: dict[str, Any], out_dir: str, budget: int, src: str | None = None) -> None:
    """Open the source once per process (pool initializer); GDAL single-threaded inside workers.

    ``src`` is the source as given (``settings.src`` is redacted: tiles.json may be published).
    """
    import rasterio

    from geohpc.products.tiles.paint import class_lut

    settings = Settings.from_json(settings_json)
    env = rasterio.Env(GDAL_CACHEMAX=max(64 << 20, budget // 4), GDAL_NUM_THREADS="1",
                       GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")
    env.__enter__()
    ds = rasterio.open(src or settings.src)
    lut = None
    if settings.render["mode"] == "classes":
        lut = class_lut(settings.render, ds.dtypes[settings.render["bands"][0] - 1])
    _STATE.clear()
    _STATE.update(settings=settings, out=Path(out_dir), ds=ds, lut=lut, env=env, budget=budget)


def close_worker() -> None:
    """Close what :func:`init_worker` opened (for the in-process path)."""
    if "ds" in _STATE:
        _STATE["ds"].close()
        _STATE["env"].__exit__(None, None, None)
    _STATE.clear()


def metatiles(settings: Settings) -> list[tuple[int, int, int]]:
    """All metatiles ``(x, y, z)`` of the job, row by row from the north-west."""
    mz = meta_zoom(settings.minzoom, settings.maxzoom)
    r = tile_range(settings.bounds, mz)
    return [(x, y, mz) for y in range(r.y0, r.y1 + 1) for x in range(r.x0, r.x1 + 1)]


def _sub_range(r: TileRange, mt: tuple[int, int, int]) -> TileRange | None:
    """The part of range ``r`` (zoom >= metatile zoom) that lies under metatile ``mt``."""
    mx, my, mz = mt
    k = 1 << (r.z - mz)
    x0, x1 = max(r.x0, mx * k), min(r.x1, mx * k + k - 1)
    y0, y1 = max(r.y0, my * k), min(r.y1, my * k + k - 1)
    if x0 > x1 or y0 > y1:
        return None
    return TileRange(r.z, x0, x1, y0, y1)


def _levels(settings: Settings, mt: tuple[int, int, int]) -> list[TileRange]:
    out = []
    for z in range(settings.maxzoom, max(mt[2], settings.minzoom) - 1, -1):
        sub = _sub_range(tile_range(settings.bounds, z), mt)
        if sub is not None:
            out.append(sub)
    return out


def _warp_region(settings: Settings, base: TileRange) -> np.ndarray:
    """Render the source under tiles ``base`` and warp it to their web-mercator pixels (H, W, 4) uint8."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window
    from rasterio.windows import from_bounds as window_from_bounds

    from geohpc.products.tiles.paint import render_window

    ds = _STATE["ds"]
    ul = mercantile.xy_bounds(base.x0, base.y0, base.z)
    lr = mercantile.xy_bounds(base.x1, base.y1, base.z)
    west, south, east, north = ul.left, lr.bottom, lr.right, ul.top
    dw = (base.x1 - base.x0 + 1) * TILE_SIZE
    dh = (base.y1 - base.y0 + 1) * TILE_SIZE
    canvas = np.zeros((dh, dw, 4), dtype=np.uint8)
    try:
        sb = transform_bounds(WEB_MERCATOR, ds.crs, west, south, east, north, densify_pts=21)
    except Exception:  # noqa: BLE001 - bounds beyond the source CRS's domain: nothing to draw
        return canvas
    win = window_from_bounds(*sb, transform=ds.transform)
    scale = max(win.width / dw, win.height / dh, 1e-9)
    fac = max(1, int(scale))  # decimate a finer source: read at most 2x the warped pixels per axis
    pad = 2 * fac
    win_c0, win_r0 = int(np.floor(win.col_off)) - pad, int(np.floor(win.row_off)) - pad
    win_c1 = int(np.ceil(win.col_off + win.width)) + pad
    win_r1 = int(np.ceil(win.row_off + win.height)) + pad
    c0, r0, c1, r1 = max(0, win_c0), max(0, win_r0), min(ds.width, win_c1), min(ds.height, win_r1)
    if c1 <= c0 or r1 <= r0:
        return canvas
    window = Window(c0, r0, c1 - c0, r1 - r0)
    oh, ow = max(1, -(-(r1 - r0) // fac)), max(1, -(-(c1 - c0) // fac))
    rgba = render_window(ds, settings.render, window, (oh, ow), lut=_STATE["lut"], budget=_STATE["budget"])
    src_transform = ds.window_transform(window) @ rasterio.Affine.scale((c1 - c0) / ow, (r1 - r0) / oh)
    classes = settings.render["mode"] == "classes"
    opaque = bool((rgba[3] == 255).all())
    dst = np.zeros((4, dh, dw), dtype=np.uint8)
    warp = dict(src_transform=src_transform, src_crs=ds.crs, dst_crs=WEB_MERCATOR, num_threads=1,
                dst_transform=from_bounds(west, south, east, north, dw, dh), init_dest_nodata=False)
    if classes:
        reproject(rgba, dst, resampling=Resampling.nearest, **warp)
    elif opaque:
        # colour bands with the chosen kernel; the footprint (alpha) by nearest, or not at all when
        # the window was not clipped by the raster's edge (the whole region then lies inside it)
        reproject(rgba[:3], dst[:3], resampling=Resampling[settings.resampling], **warp)
        if (c0, r0, c1, r1) == (win_c0, win_r0, win_c1, win_r1) and pad >= 1:
            dst[3] = 255
        else:
            reproject(rgba[3:], dst[3:], resampling=Resampling.nearest, **warp)
            dst[:3, dst[3] == 0] = 0
    else:
        # premultiplied alpha: plain bilinear on (rgb*a, a) is alpha-weighted, with GDAL's fast path
        rgba[:3] = ((rgba[:3].astype(np.uint16) * rgba[3] + 127) // 255).astype(np.uint8)
        reproject(rgba, dst, resampling=Resampling[settings.resampling], **warp)
        a = dst[3].astype(np.uint32)
        den = np.maximum(a, 1)
        dst[:3] = np.minimum(255, (dst[:3].astype(np.uint32) * 255 + (den >> 1)) // den)
    canvas[:] = np.moveaxis(dst, 0, -1)
    return canvas


def _write(settings: Settings, out: Path, arr: np.ndarray, x: int, y: int, z: int) -> int:
    if settings.skip_empty and not arr[..., 3].any():
        return 0
    p = tile_path(out, x, y, z, settings.fmt)
    p.parent.mkdir(parents=True, exist_ok=True)
    lossless = settings.render["mode"] == "classes"
    write_bytes_atomic(p, encode_tile(arr, settings.fmt, settings.png_level, lossless))
    return 1


def _halve_region(region: np.ndarray, cur: TileRange, parent: TileRange, classes: bool) -> np.ndarray:
    """Downsample the pixels of tiles ``cur`` into the pixels of tiles ``parent`` (one zoom up)."""
    ph, pw = (parent.y1 - parent.y0 + 1) * TILE_SIZE, (parent.x1 - parent.x0 + 1) * TILE_SIZE
    if (cur.x0, cur.y0) == (2 * parent.x0, 2 * parent.y0) and region.shape[:2] == (2 * ph, 2 * pw):
        padded = region
    else:
        padded = np.zeros((2 * ph, 2 * pw, 4), dtype=np.uint8)
        oy, ox = (cur.y0 - 2 * parent.y0) * TILE_SIZE, (cur.x0 - 2 * parent.x0) * TILE_SIZE
        padded[oy:oy + region.shape[0], ox:ox + region.shape[1]] = region
    return downsample(padded, classes)


def render_metatile(mt: tuple[int, int, int]) -> tuple[int, int]:
    """Build every tile under metatile ``mt`` from the base zoom up to the metatile zoom.

    Returns
    -------
    (written, skipped)
        Tiles written now, and tiles that already existed (a rerun).
    """
    settings: Settings = _STATE["settings"]
    out: Path = _STATE["out"]
    levels = _levels(settings, mt)
    for r in levels:  # what a killed earlier run left under this metatile (only one process renders it)
        for x in range(r.x0, r.x1 + 1):
            sweep_tile_temporaries(out / str(r.z) / str(x), (r.y0, r.y1))
    todo = {(x, y, r.z) for r in levels for (x, y, _z) in r
            if not tile_path(out, x, y, r.z, settings.fmt).exists()}
    total = sum(len(r) for r in levels)
    if not todo:
        return 0, total
    classes = settings.render["mode"] == "classes"
    region = _warp_region(settings, levels[0])
    written = 0
    for i, r in enumerate(levels):
        if i:
            region = _halve_region(region, levels[i - 1], r, classes)
        for x, y, z in r:
            if (x, y, z) in todo:
                oy, ox = (y - r.y0) * TILE_SIZE, (x - r.x0) * TILE_SIZE
                written += _write(settings, out, region[oy:oy + TILE_SIZE, ox:ox + TILE_SIZE], x, y, z)
    return written, total - len(todo)


# ---------------------------------------------------------------- lower zooms from children

def build_parent(task: tuple[dict[str, Any], str, int, int, int]) -> int:
    """Build tile ``(x, y, z)`` from its four children at ``z + 1`` on disk; 1 if written, else 0."""
    settings_json, out_dir, x, y, z = task
    settings = Settings.from_json(settings_json) if isinstance(settings_json, dict) else settings_json
    out = Path(out_dir)
    if tile_path(out, x, y, z, settings.fmt).exists():
        return 0
    canvas = np.zeros((2 * TILE_SIZE, 2 * TILE_SIZE, 4), dtype=np.uint8)
    for child in mercantile.children(x, y, z):
        p = tile_path(out, child.x, child.y, child.z, settings.fmt)
        if p.exists():
            oy, ox = (child.y - 2 * y) * TILE_SIZE, (child.x - 2 * x) * TILE_SIZE
            canvas[oy:oy + TILE_SIZE, ox:ox + TILE_SIZE] = decode_tile(p)
    arr = downsample(canvas, settings.render["mode"] == "classes")
    return _write(settings, out, arr, x, y, z)


def parent_tasks(settings: Settings, out: Path, z: int) -> list[tuple[Any, str, int, int, int]]:
    """The tiles of zoom ``z`` still to build from children (existing ones are skipped).

    The finalizer alone writes these zooms, so it first sweeps what a killed one left there.
    """
    js = settings.to_json()
    r = tile_range(settings.bounds, z)
    for x in range(r.x0, r.x1 + 1):
        sweep_tile_temporaries(out / str(z) / str(x))
    return [(js, str(out), x, y, z) for (x, y, _z) in tile_range(settings.bounds, z)
            if not tile_path(out, x, y, z, settings.fmt).exists()]


def count_tiles(settings: Settings) -> int:
    """Tiles in the pyramid (every zoom), as ``mercantile.tiles`` counts them."""
    return sum(len(tile_range(settings.bounds, z)) for z in range(settings.minzoom, settings.maxzoom + 1))
