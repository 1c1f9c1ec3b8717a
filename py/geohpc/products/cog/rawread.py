"""Window reads of an uncompressed striped GeoTIFF straight from the file, for the COG fast path's band passes.

GDAL reads any band subset of a pixel-interleaved striped file by loading every strip and splitting it into
all bands' blocks, so each band group of the fast path's read pass costs a full read of the source (at
2896x2896x128 float32: 4.9 s per pass, 3 passes under COG_MEM=1G). When the file is uncompressed and its
strips lie back to back in order (what TESSERA's converter and most ``gdal_translate`` outputs are), the image
is one array on disk: ``(rows, cols, bands)`` when pixel-interleaved, ``(bands, rows, cols)`` when band-
interleaved. :func:`raw_reader` then reads a window with ``preadv`` a few rows at a time into a bounded bounce
buffer (``BOUNCE`` bytes, at least one row) and transposes the wanted bands out of it (measured at 2896:
all 3 band passes 1.9 s together, GDAL's single all-band pass 5.0 s). Values are the file's stored values, as
``ds.read`` returns them for an uncompressed file. Anything else (compressed, tiled, bit-packed, not local,
strips out of order) gets None and the caller reads through GDAL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.tiff import HEIGHT, STRIP_COUNTS, STRIP_OFFSETS, TILE_OFFSETS, WIDTH, read_directories
from geohpc.util import redact

COMPRESSION, BITS, SAMPLES, PLANAR, SAMPLE_FORMAT = 259, 258, 277, 284, 339
BOUNCE = 16 << 20  # bytes of pixel-interleaved rows read at a time (at least one row)
_FORMAT = {"u": 1, "i": 2, "f": 3}

Reader = Callable[[Window, np.ndarray, list[int]], np.ndarray]


def layout(ds: rasterio.io.DatasetReader) -> tuple[int, np.dtype, bool] | None:
    """``(byte offset of the first strip, on-disk dtype, pixel-interleaved)`` when ``ds`` is one array on disk."""
    path = Path(ds.name)
    if ds.driver != "GTiff" or not path.is_file():
        return None
    dtype = np.dtype(ds.dtypes[0])
    try:
        with open(path, "rb") as f:
            order = f.read(2)
        _, dirs = read_directories(path, [WIDTH, HEIGHT, COMPRESSION, BITS, SAMPLES, PLANAR, SAMPLE_FORMAT,
                                          STRIP_OFFSETS, STRIP_COUNTS, TILE_OFFSETS])
    except (OSError, ValueError):
        return None
    if not dirs or order not in (b"II", b"MM"):
        return None
    tags = dirs[0][1]

    def one(tag: int, default: int) -> int:
        values = tags.get(tag)
        return int(values[0]) if values is not None and len(values) else default

    bits = tags.get(BITS, np.array([1]))
    fmt = tags.get(SAMPLE_FORMAT, np.array([1]))
    if (TILE_OFFSETS in tags or STRIP_OFFSETS not in tags or STRIP_COUNTS not in tags or one(COMPRESSION, 1) != 1
            or one(WIDTH, 0) != ds.width or one(HEIGHT, 0) != ds.height or one(SAMPLES, 1) != ds.count
            or np.any(bits != dtype.itemsize * 8) or np.any(fmt != _FORMAT.get(dtype.kind, 0))
            or len(set(ds.dtypes)) != 1):
        return None
    offsets, counts = tags[STRIP_OFFSETS].astype(np.int64), tags[STRIP_COUNTS].astype(np.int64)
    total = ds.width * ds.height * ds.count * dtype.itemsize
    if (len(offsets) != len(counts) or int(counts.sum()) != total or np.any(offsets[1:] != offsets[:-1] + counts[:-1])
            or int(offsets[0]) + total > path.stat().st_size):
        return None
    return int(offsets[0]), dtype.newbyteorder("<" if order == b"II" else ">"), one(PLANAR, 1) == 1


def raw_reader(ds: rasterio.io.DatasetReader, bounce: int = BOUNCE) -> Reader | None:
    """``read(window, out, indexes)`` reading ``ds`` straight from its file, or None when it is not one array on disk.

    ``indexes`` are 1-based band numbers (any order); ``out`` has the shape ``(len(indexes), rows, cols)``.
    A short read (the file shrank) or an I/O error is a one-line :class:`InputError` naming the rows.
    """
    found = layout(ds)
    if found is None:
        return None
    start, disk, pixel = found
    path, width, height, count = Path(ds.name), ds.width, ds.height, ds.count
    row_bytes = width * count * disk.itemsize if pixel else width * disk.itemsize
    rows_at_once = max(1, bounce // row_bytes)
    local = threading.local()  # each thread's bounce buffer, kept between windows

    def bounce_rows(n: int) -> np.ndarray:
        buf = getattr(local, "buf", None)
        if buf is None or buf.shape[0] < n:
            buf = local.buf = np.empty((n, width, count) if pixel else (n, width), disk)
        return buf[:n]

    def pread(fd: int, buf: np.ndarray, offset: int, w: Window) -> None:
        want = buf.nbytes
        got = os.preadv(fd, [memoryview(buf.reshape(-1).view(np.uint8))], offset)
        if got != want:
            raise InputError(f"{redact(str(path))}: cannot read rows {w.row_off}-{w.row_off + w.height} (the file "
                             f"ends early); the file is corrupt or truncated: re-download or re-create it")

    def read(w: Window, out: np.ndarray, indexes: list[int]) -> np.ndarray:
        r0, c0, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
        if out.shape != (len(indexes), h, wd) or r0 < 0 or c0 < 0 or r0 + h > height or c0 + wd > width:
            raise ValueError(f"window {w} and buffer {out.shape} do not match {path.name}")
        idx = np.asarray(indexes, dtype=np.intp) - 1
        run = len(idx) > 0 and bool(np.all(np.diff(idx) == 1))
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise InputError(f"{redact(str(path))}: cannot open ({exc.strerror}); check the path and permissions") from exc
        try:
            with np.errstate(all="ignore"):
                if pixel:
                    n = min(h, rows_at_once)
                    buf = bounce_rows(n)
                    bands = slice(int(idx[0]), int(idx[-1]) + 1) if run else idx
                    for i in range(0, h, n):
                        m = min(n, h - i)
                        pread(fd, buf[:m], start + (r0 + i) * row_bytes, w)
                        for j in range(m):
                            np.copyto(out[:, i + j, :], buf[j, c0:c0 + wd][:, bands].T)
                else:
                    direct = wd == width and disk == out.dtype and out.flags.c_contiguous
                    row = None if direct else bounce_rows(1)[0]
                    for k, b in enumerate(idx):
                        plane = start + int(b) * height * row_bytes
                        if row is None:  # full rows of a native-order band: straight into the output
                            pread(fd, out[k], plane + r0 * row_bytes, w)
                            continue
                        for i in range(h):
                            pread(fd, row, plane + (r0 + i) * row_bytes, w)
                            out[k, i] = row[c0:c0 + wd]
        except OSError as exc:
            raise InputError(f"{redact(str(path))}: cannot read rows {r0}-{r0 + h} ({exc.strerror}); "
                             "the file is corrupt or truncated: re-download or re-create it") from exc
        finally:
            os.close(fd)
        return out

    return read
