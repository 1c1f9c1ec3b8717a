"""One decode per window for a compressed pixel-interleaved source that the fast path reads in band groups.

Each strip or tile of a pixel-interleaved file holds every band, so a band group's pass through GDAL decodes all
of it again: at 2048x2048x128 float32 DEFLATE under COG_MEM=1G, 2 passes, ours 1.97x the floor. Here the first
group's pass reads every band a few rows at a time (``chunk`` bytes, bounded), keeps its own bands and writes
the others, uncompressed and band by band, into a scratch file beside the output; the later groups' passes read
their bands back from it with ``preadv`` (no decode) and punch out what they read, so the scratch never holds
more than the bands still to come. The scratch is a temporary of the output's build (swept like the others).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Interleaving
from rasterio.windows import Window

from geohpc.errors import InputError
from geohpc.products.cog.assemble import punch
from geohpc.products.cog.rawread import Reader

CHUNK = 64 << 20  # bytes of all-band rows decoded at a time in the first pass (at least one row)


def needs_spill(ds: rasterio.io.DatasetReader, groups: list[list[int]]) -> bool:
    """True when the band groups would each decode the whole source again (a compressed pixel-interleaved file)."""
    return len(groups) > 1 and ds.count > 1 and ds.interleaving == Interleaving.pixel and ds.compression is not None


@contextlib.contextmanager
def spill_reader(ds: rasterio.io.DatasetReader, groups: list[list[int]], path: Path, read: Reader,
                 chunk: int = CHUNK) -> Iterator[Reader]:
    """A reader for the fast path's steps (every window of ``groups[0]`` first, then the next group...) that
    decodes ``ds`` once through ``read``; the scratch file ``path`` is removed on the way out."""
    first = list(groups[0])
    later = [b for g in groups[1:] for b in g]
    plane_of = {b: i for i, b in enumerate(later)}
    width, height = ds.width, ds.height
    dtype = np.dtype(ds.dtypes[0])
    row_bytes, plane = width * dtype.itemsize, height * width * dtype.itemsize
    n = max(1, chunk // (width * ds.count * dtype.itemsize))
    every = list(range(1, ds.count + 1))
    buf = np.empty((ds.count, n, width), dtype)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def spilling(w: Window, out: np.ndarray, indexes: list[int]) -> np.ndarray:
        r0, h = int(w.row_off), int(w.height)
        if int(w.col_off) != 0 or int(w.width) != width or not out.flags.c_contiguous:
            raise ValueError("the spilling reader takes full-width windows into contiguous buffers")
        try:
            if list(indexes) == first:  # decode every band once; keep ours, spill the rest
                keep = slice(first[0] - 1, first[-1]) if first == list(range(first[0], first[-1] + 1)) else np.asarray(first) - 1
                for i in range(0, h, n):
                    m = min(n, h - i)
                    rows = buf[:, :m]
                    read(Window(0, r0 + i, width, m), rows, every)
                    out[:, i:i + m] = rows[keep]
                    for b in later:
                        os.pwrite(fd, memoryview(np.ascontiguousarray(rows[b - 1])).cast("B"),
                                  plane_of[b] * plane + (r0 + i) * row_bytes)
                return out
            for k, b in enumerate(indexes):  # a later group: its rows back from the scratch, then let them go
                offset = plane_of[b] * plane + r0 * row_bytes
                got = os.preadv(fd, [memoryview(out[k]).cast("B")], offset)
                if got != h * row_bytes:
                    raise InputError(f"{path}: the scratch copy ends early at rows {r0}-{r0 + h}; rerun")
                punch(fd, offset, h * row_bytes)
            return out
        except OSError as exc:
            raise InputError(f"{path}: cannot write or read the scratch copy of rows {r0}-{r0 + h} ({exc.strerror}); "
                             "free space beside the output and rerun") from exc

    try:
        yield spilling
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
