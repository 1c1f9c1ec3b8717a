"""Values of every band at many pixels of a GeoTIFF, each touched tile (or strip) read and decoded once.

GDAL decodes a pixel-interleaved tile of a compressed file whole, then copies it band by band into its
block cache and from there into a band-sequential buffer: for 128 bands that copy and the cache traffic
cost more than the decompression itself (see bench/RESULTS-classify.md). Here the raw bytes of each tile
that holds points are read with one ``pread``, inflated (DEFLATE with :mod:`zlib`, ZSTD with pyarrow's
codec), the TIFF predictor is undone, and only the points' pixels are picked out of the decoded buffer.
Tiles are decoded by a small thread pool (both codecs release the GIL); the decoded bytes held at once
stay under the memory budget (``--mem-budget``): ``workers = min(threads, budget // decoded tile)``, never
fewer than one tile (a tile cannot be decoded in parts).

Only what this module decodes is taken: a local little-endian TIFF, uncompressed / DEFLATE / ZSTD,
predictor 1, 2 or 3, 8-64 bit integer or float samples. For anything else :func:`tiff_layout` answers
``None`` and the caller reads through GDAL.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geohpc import tiff
from geohpc.errors import InputError
from geohpc.progress import progress
from geohpc.util import cpu_threads

BITS, COMPRESSION, SPP, ROWS_PER_STRIP, PLANAR, PREDICTOR, SAMPLE_FORMAT = 258, 259, 277, 278, 284, 317, 339
CODECS = {1: "none", 8: "deflate", 32946: "deflate", 50000: "zstd"}
_KINDS = {1: "u", 2: "i", 3: "f"}


@dataclass(frozen=True)
class TiffLayout:
    """Where the blocks of a TIFF's first (full-resolution) image lie and how they are coded."""

    path: str
    width: int
    height: int
    bands: int
    block_h: int  # tile height, or rows per strip
    block_w: int  # tile width, or the image width for strips
    planar: int  # 1 = pixel-interleaved, 2 = band-interleaved (one plane per band)
    dtype: np.dtype
    codec: str  # none | deflate | zstd
    predictor: int
    striped: bool
    offsets: np.ndarray  # (planes, blocks down, blocks across)
    counts: np.ndarray

    @property
    def spp(self) -> int:
        """Samples in one block's pixel: all bands when pixel-interleaved, one when band-interleaved."""
        return self.bands if self.planar == 1 else 1

    def block_bytes(self) -> int:
        """Decoded bytes of one block of one plane."""
        return self.block_h * self.block_w * self.spp * self.dtype.itemsize


def _one(tags: dict[int, np.ndarray], tag: int, default: int) -> int:
    v = tags.get(tag)
    if v is None or len(v) == 0:
        return default
    if len(set(v.tolist())) != 1:
        raise ValueError("mixed values")
    return int(v[0])


def tiff_layout(path: str | os.PathLike[str]) -> TiffLayout | None:
    """The block layout of ``path`` when this module can decode it, else ``None`` (read it through GDAL)."""
    p = str(path)
    if p.startswith("/vsi") or "://" in p or not Path(p).is_file():
        return None
    try:
        with open(p, "rb") as fh:
            if fh.read(2) != b"II":
                return None
        wanted = (tiff.WIDTH, tiff.HEIGHT, BITS, COMPRESSION, SPP, ROWS_PER_STRIP, PLANAR, PREDICTOR, SAMPLE_FORMAT,
                  tiff.TILE_WIDTH, tiff.TILE_HEIGHT, tiff.TILE_OFFSETS, tiff.TILE_COUNTS, tiff.STRIP_OFFSETS, tiff.STRIP_COUNTS)
        _, dirs = tiff.read_directories(p, wanted)
        tags = dirs[0][1]
        width, height, bands = _one(tags, tiff.WIDTH, 0), _one(tags, tiff.HEIGHT, 0), _one(tags, SPP, 1)
        bits, fmt = _one(tags, BITS, 1), _one(tags, SAMPLE_FORMAT, 1)
        codec, planar, predictor = CODECS.get(_one(tags, COMPRESSION, 1)), _one(tags, PLANAR, 1), _one(tags, PREDICTOR, 1)
    except (OSError, ValueError, IndexError):
        return None
    if codec is None or bits not in (8, 16, 32, 64) or fmt not in _KINDS or planar not in (1, 2) or predictor not in (1, 2, 3):
        return None
    if (predictor == 3) != (fmt == 3) and predictor != 1 or width <= 0 or height <= 0:
        return None
    dtype = np.dtype(f"<{_KINDS[fmt]}{bits // 8}")
    striped = tiff.TILE_OFFSETS not in tags
    if striped:
        bh, bw = min(_one(tags, ROWS_PER_STRIP, height), height), width
        offsets, counts = tags.get(tiff.STRIP_OFFSETS), tags.get(tiff.STRIP_COUNTS)
    else:
        bh, bw = _one(tags, tiff.TILE_HEIGHT, 0), _one(tags, tiff.TILE_WIDTH, 0)
        offsets, counts = tags.get(tiff.TILE_OFFSETS), tags.get(tiff.TILE_COUNTS)
    planes = bands if planar == 2 else 1
    if bh <= 0 or bw <= 0 or offsets is None or counts is None:
        return None
    down, across = -(-height // bh), -(-width // bw)
    if len(offsets) != planes * down * across or len(counts) != len(offsets):
        return None
    shape = (planes, down, across)
    return TiffLayout(p, width, height, bands, bh, bw, planar, dtype, codec, predictor, striped,
                      offsets.astype(np.int64).reshape(shape), counts.astype(np.int64).reshape(shape))


def _undo_float_predictor(raw: np.ndarray, width: int, spp: int, dtype: np.dtype) -> np.ndarray:
    """TIFF predictor 3: ``raw`` (rows, row bytes) uint8 -> (rows, width, spp) of ``dtype``.

    Per row the bytes were split into planes (most significant byte first) and then differenced
    with a stride of ``spp`` bytes; undo the differencing, then put each sample's bytes back together.
    """
    rows, size = raw.shape[0], dtype.itemsize
    acc = np.cumsum(raw.reshape(rows, -1, spp), axis=1, dtype=np.uint8).reshape(rows, size, width * spp)
    return np.ascontiguousarray(acc[:, ::-1, :].transpose(0, 2, 1)).view(dtype).reshape(rows, width, spp)


class _LibDeflate:
    """libdeflate's zlib decoder through ctypes (the library GDAL itself uses; ~2x zlib's inflate), one per thread."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)  # a CDLL call releases the GIL: blocks inflate on several threads
        lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
        lib.libdeflate_zlib_decompress.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                                                   ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
        lib.libdeflate_zlib_decompress.restype = ctypes.c_int
        self.lib, self.local = lib, threading.local()

    def decompress(self, raw: bytes, n: int) -> np.ndarray:
        d = getattr(self.local, "d", None)
        if d is None:
            d = self.local.d = self.lib.libdeflate_alloc_decompressor()  # freed with the process (a few KB a thread)
        out = np.empty(n, dtype=np.uint8)
        got = ctypes.c_size_t(0)
        rc = self.lib.libdeflate_zlib_decompress(d, raw, len(raw), out.ctypes.data, n, ctypes.byref(got))
        if rc != 0 or got.value != n:
            raise ValueError(f"libdeflate status {rc}, {got.value} of {n} bytes")
        return out


@functools.lru_cache(maxsize=1)
def libdeflate() -> _LibDeflate | None:
    """The libdeflate shipped with rasterio's wheel (or the system's), or None (then :mod:`zlib` inflates)."""
    import ctypes.util
    import glob
    import importlib.util

    spec = importlib.util.find_spec("rasterio")
    found = sorted(glob.glob(str(Path(spec.origin).parents[1] / "rasterio.libs" / "libdeflate*.so*"))) if spec and spec.origin else []
    for path in [*found, ctypes.util.find_library("deflate")]:
        if path:
            try:
                return _LibDeflate(path)
            except (OSError, AttributeError):
                continue
    return None


def decode_block(lay: TiffLayout, raw: bytes, rows: int) -> np.ndarray:
    """Decode one block's ``raw`` bytes into (rows, block width, samples per pixel)."""
    n = rows * lay.block_w * lay.spp * lay.dtype.itemsize
    if lay.codec == "deflate":
        fast = libdeflate()
        buf: object = fast.decompress(raw, n) if fast is not None else zlib.decompress(raw, 15, n)
    elif lay.codec == "zstd":
        import pyarrow as pa

        buf = pa.decompress(raw, decompressed_size=n, codec="zstd", asbytes=False)
    else:
        buf = raw
    if len(memoryview(buf)) < n:  # type: ignore[arg-type]
        raise InputError(f"{lay.path}: a block decodes to fewer bytes than it should; the file is damaged, re-create it")
    if lay.predictor == 3:
        u8 = np.frombuffer(buf, dtype=np.uint8, count=n).reshape(rows, -1)  # type: ignore[call-overload]
        return _undo_float_predictor(u8, lay.block_w, lay.spp, lay.dtype)
    a = np.frombuffer(buf, dtype=lay.dtype, count=n // lay.dtype.itemsize).reshape(rows, lay.block_w, lay.spp)  # type: ignore[call-overload]
    return np.cumsum(a, axis=1, dtype=a.dtype) if lay.predictor == 2 else a


def _point_reads(lay: TiffLayout, fd: int, off: int, flat: np.ndarray) -> np.ndarray:
    """Uncompressed block: read only each point's bytes; (n, samples per pixel)."""
    px = lay.spp * lay.dtype.itemsize
    out = np.empty((len(flat), lay.spp), dtype=lay.dtype)
    for k, at in enumerate((flat * px + off).tolist()):
        buf = os.pread(fd, px, at)
        if len(buf) != px:
            raise InputError(f"{lay.path}: file is truncated inside a block; re-create it")
        out[k] = np.frombuffer(buf, dtype=lay.dtype)
    return out


def workers_for(lay: TiffLayout, budget: int) -> int:
    """Blocks decoded at once: as many as the threads allow whose decoded + raw bytes fit ``budget``, at least 1."""
    per_task = lay.block_bytes() + int(lay.counts.max(initial=0))
    return max(1, min(cpu_threads(), budget // max(1, per_task)))


def read_cells(lay: TiffLayout, rows: np.ndarray, cols: np.ndarray, *, budget: int, nodata: float | None = None,
               desc: str = "") -> np.ndarray:
    """All bands at (rows, cols) (inside the image): ``(bands, n)`` raw values, each touched block decoded once.

    Blocks are decoded ``workers`` at a time, ``workers = min(threads, budget // (decoded + raw block bytes))``
    and at least 1. In an uncompressed block holding few points only the points' bytes are read.
    """
    bh, bw = lay.block_h, lay.block_w
    out = np.empty((lay.bands, len(rows)), dtype=lay.dtype)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, key in enumerate(zip((rows // bh).tolist(), (cols // bw).tolist(), strict=True)):
        groups[key].append(i)
    keys = sorted(groups, key=lambda k: int(lay.offsets[0, k[0], k[1]]))
    workers = min(len(keys), workers_for(lay, budget)) or 1
    fill = 0 if nodata is None or (lay.dtype.kind != "f" and not np.isfinite(nodata)) else nodata
    fd = os.open(lay.path, os.O_RDONLY)

    def one(key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(groups[key])
        br, bc = key
        flat = (rows[idx] - br * bh) * bw + (cols[idx] - bc * bw)  # pixel index inside the block
        nrows = min(bh, lay.height - br * bh) if lay.striped else bh
        vals = np.empty((lay.bands, len(idx)), dtype=lay.dtype)
        for plane in range(lay.offsets.shape[0]):
            off, cnt = int(lay.offsets[plane, br, bc]), int(lay.counts[plane, br, bc])
            dst = vals if lay.planar == 1 else vals[plane:plane + 1]
            if off == 0 or cnt == 0:  # sparse block: never written
                dst[:] = fill
                continue
            if lay.codec == "none" and len(idx) * 32768 < cnt:  # a pread costs about as much as copying 32 KiB
                dst[:] = _point_reads(lay, fd, off, flat).T
                continue
            raw = os.pread(fd, cnt, off)
            if len(raw) != cnt:
                raise InputError(f"{lay.path}: file is truncated inside a block; re-create it")
            try:
                arr = decode_block(lay, raw, nrows)
            except (zlib.error, OSError, ValueError) as exc:
                raise InputError(f"{lay.path}: block {key} does not decode ({exc}); re-create the file") from None
            dst[:] = arr.reshape(-1, lay.spp).take(flat, axis=0).T
        return idx, vals

    try:
        with ThreadPoolExecutor(workers) as pool:
            for idx, vals in progress(pool.map(one, keys), total=len(keys), desc=desc or "blocks"):
                out[:, idx] = vals
    finally:
        os.close(fd)
    return out
