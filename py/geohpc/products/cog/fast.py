"""The one-read COG path: level files written from a single read pass, then assembled by copying tile bytes.

1. The source is read ONCE, in full-width windows of whole tile rows (``blocksize`` rows). Each window goes
   into a tiled, compressed ``level 0`` GTiff (the final codec, level, predictor, interleave and threads:
   GDAL encodes on every thread). When one tile row of all bands (x2: window + overview buffers) is over the
   budget, the bands go in groups, one read pass per group (band interleave only: a pixel-interleaved tile
   holds every band).
2. From the same window the overview levels are computed in numpy, each one 2x2 from the level before (as
   GDAL's ``build_overviews`` does): ``average`` of the valid pixels (nodata and, when nodata is NaN, NaN are
   skipped; otherwise NaN propagates as in GDAL), integers rounded half away from zero, an output pixel
   that would equal nodata nudged off it (GDAL's replacement value), all-invalid -> nodata. Level sizes are
   ``ceil(size / 2**l)`` as GDAL's; where a level's input is odd-sized the edge output pixel averages the
   source pixels that exist (GDAL weights fractional source pixels there, so such levels differ slightly).
   Each level buffers its rows until it holds a full tile row (or the end) and writes them into its own
   compressed temporary GTiff, so GDAL never evicts and re-encodes a half-filled tile.
3. :func:`assemble` writes the COG with its own TIFF writer around the compressed tiles (no decode, no
   re-encode). Where the file system can (ext4, XFS: ``fallocate(FALLOC_FL_INSERT_RANGE)``), a hole of whole
   blocks is inserted in front of the level-0 file, the header and the overview tiles are written into it and
   that file becomes the COG: the full-resolution tiles are never copied. Elsewhere (Lustre, NFS, tmpfs) every
   tile is copied into a new file (``os.copy_file_range``). Header (BigTIFF only when the file needs 64-bit offsets), GDAL's
   structural-metadata ghost area, the main IFD (every tag of the level-0 file, offsets rewritten), one IFD
   per overview (``NewSubfileType=1``, georeferencing left out), all IFDs before the data, then the tiles,
   smallest overview first and full resolution last, each level in TileOffsets order (band-major for band
   interleave) -- the layout GDAL 3.10's COG driver writes, without block leaders/trailers (not claimed).

Memory (``budget`` = COG_MEM / ``--mem``): 1/4 GDAL's block cache (:data:`CACHE_SHARE`), 3/4 for the window
plus the overview tile-row buffers (together at most ~2 tile rows of the band group) and per-band temporaries.
Not covered here (the GDAL path in :mod:`geohpc.products.cog.gdal_path` does them): resampling other than
``average`` (class maps use ``mode``), an internal per-dataset mask, complex data, and a pixel-interleaved
output (<= 4 bands) or a single band whose tile row x2 exceeds the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geohpc.errors import GeohpcError, InputError
from geohpc.products.cog.overviews import Level
from geohpc.progress import progress
from geohpc.tiff import read_raw_tags

CACHE_SHARE = 4  # GDAL's block cache gets budget // CACHE_SHARE, windows and level buffers the rest
IN_PLACE = True  # level 0 becomes the COG through an inserted range where the file system can (tests turn it off)
FALLOC_FL_INSERT_RANGE = 0x20
BIGTIFF_LIMIT = 2**32 - 1  # the file size above which the COG is written as BigTIFF (tests lower it)
GEO_TAGS = {33550, 33922, 34264, 34735, 34736, 34737, 42112}  # scales, tiepoints, matrix, geokeys, GDAL_METADATA
NEW_SUBFILE, TILE_OFFSETS, TILE_COUNTS = 254, 324, 325
GHOST = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def band_groups(ds: rasterio.io.DatasetReader, budget: int, blocksize: int,
                windows: int = 1) -> tuple[list[list[int]], int] | None:
    """``(band groups, tile rows per window)`` for the read pass, or None when the budget is too small.

    The budget's share holds ``windows`` window buffers (2: the next window is read while this one is written)
    plus the overview levels' tile-row buffers (together at most one tile row of the group).
    """
    per_band = ds.width * blocksize * np.dtype(ds.dtypes[0]).itemsize  # one tile row of one band
    share = budget - budget // CACHE_SHARE
    nb = min(ds.count, share // ((windows + 1) * per_band))
    if nb < 1 or (nb < ds.count and ds.count <= 4):
        return None
    k = max(1, (share // (nb * per_band) - 1) // windows) if nb == ds.count else 1
    k = min(k, math.ceil(ds.height / blocksize))
    bands = list(range(1, ds.count + 1))
    return [bands[i:i + nb] for i in range(0, ds.count, nb)], k


def read_plan(ds: rasterio.io.DatasetReader, budget: int, blocksize: int) -> tuple[list[list[int]], int, bool] | None:
    """``(band groups, tile rows per window, prefetch)``: the next window is read on a thread while this one is
    written when two windows fit in as few read passes as one; else one window at a time (fewer passes over
    the source win: each pass reads it all again when it is pixel-interleaved)."""
    one = band_groups(ds, budget, blocksize)
    if one is None:
        return None
    two = band_groups(ds, budget, blocksize, windows=2)
    if two is not None and len(two[0]) == len(one[0]) and math.ceil(ds.height / (two[1] * blocksize)) > 1:
        return two[0], two[1], True
    return one[0], one[1], False


def refusal(ds: rasterio.io.DatasetReader, resampling: Resampling, budget: int, blocksize: int,
            interleave: str = "") -> str | None:
    """Why the fast path cannot build this COG (the GDAL path will), or None when it can."""
    flags = ds.mask_flag_enums[0]
    if resampling != Resampling.average:
        return f"{resampling.name} overviews"
    if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and MaskFlags.nodata not in flags:
        return "an internal mask"
    if np.dtype(ds.dtypes[0]).kind not in "uif":
        return f"{ds.dtypes[0]} data"
    groups = band_groups(ds, budget, blocksize)
    if groups is None:
        return "a tile row too wide for the memory budget"
    if len(groups[0]) > 1 and interleave.upper() == "PIXEL":  # a pixel tile holds every band: one pass must fill it
        return "a pixel-interleaved tile row of all bands too wide for the memory budget"
    return None


def write_levels(ds: rasterio.io.DatasetReader, paths: list[Path], profile: dict[str, Any], blocksize: int,
                 budget: int, read: Any, has_data: Any, copy_metadata: Any = None) -> bool:
    """Write level 0 (the pixels) and every overview level into ``paths``; True when some pixel is not nodata.

    ``profile`` holds the creation options of level 0 (georeferencing included); ``read(window, out, indexes)``
    reads a window (one-line errors), ``has_data(array)`` says whether it holds a valid pixel.
    """
    plan = read_plan(ds, budget, blocksize)
    if plan is None:
        raise GeohpcError(f"{ds.name}: a tile row is too wide for the memory budget")
    groups, k, prefetch = plan
    nodata = ds.nodata
    outs: list[rasterio.io.DatasetWriter] = []
    seen = False
    with contextlib.ExitStack() as stack:
        for lvl, p in enumerate(paths):
            prof = dict(profile)
            if lvl:
                for key in ("crs", "transform", "gcps", "rpcs"):
                    prof.pop(key, None)
                prof.update(width=-(-ds.width // 2**lvl), height=-(-ds.height // 2**lvl))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                outs.append(stack.enter_context(rasterio.open(p, "w", **prof)))
        if copy_metadata is not None:  # tags, descriptions, scales, colours of the source (common.copy_metadata)
            copy_metadata(ds, outs[0])
        # entered after the datasets, so on an error they wait for their threads before the datasets are closed
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="cog-levels"))
        reader = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="cog-read"))
        rows = k * blocksize
        steps = [(g, r) for g in groups for r in range(0, ds.height, rows)]
        bufs: list[np.ndarray] = [np.empty(0, ds.dtypes[0]), np.empty(0, ds.dtypes[0])]

        def fetch(i: int) -> tuple[np.ndarray, float]:
            """Read step ``i`` into its buffer (reused: fresh 100s-of-MB arrays page-fault on every window)."""
            g, r = steps[i]
            h = min(rows, ds.height - r)
            j = i % 2 if prefetch else 0
            if bufs[j].shape != (len(g), h, ds.width):
                bufs[j] = np.empty(0, ds.dtypes[0])
                bufs[j] = np.empty((len(g), h, ds.width), ds.dtypes[0])
            t0 = time.perf_counter()
            return read(Window(0, r, ds.width, h), bufs[j], g), time.perf_counter() - t0

        levels: Level | None = None
        spent = {"read": 0.0, "waiting for the read": 0.0, "level-0 write": 0.0, "waiting for the overviews": 0.0}
        ahead = reader.submit(fetch, 0) if prefetch else None
        for i, (g, r) in enumerate(progress(steps, total=len(steps), desc="cog read + level files")):
            if r == 0:
                levels = None
                for out in reversed(outs[1:]):
                    levels = Level(out, g, blocksize, nodata, levels)
            t0 = time.perf_counter()
            if ahead is not None:  # the next window is read while this one is written
                a, took = ahead.result()
                ahead = reader.submit(fetch, i + 1) if i + 1 < len(steps) else None
                spent["waiting for the read"] += time.perf_counter() - t0
            else:
                a, took = fetch(i)
            spent["read"] += took
            t1 = time.perf_counter()
            if not seen:
                seen = has_data(a)
            h = a.shape[1]
            # the overviews of this window are reduced and written (their own datasets) on a second thread while
            # level 0 is written: both release the GIL (numpy arithmetic, GDAL I/O and compression)
            pending = pool.submit(levels.push, a, r + h >= ds.height) if levels is not None else None
            outs[0].write(a, indexes=g, window=Window(0, r, ds.width, h))
            t2 = time.perf_counter()
            if pending is not None:
                pending.result()
            spent["level-0 write"] += t2 - t1
            spent["waiting for the overviews"] += time.perf_counter() - t2
    if not prefetch:
        del spent["waiting for the read"]
    print(f"[cog] {ds.name}: {len(groups)} band group(s) x {-(-ds.height // rows)} window(s) of {k} tile row(s)"
          f"{', next window read ahead' if prefetch else ''}: " + ", ".join(f"{n} {v:.1f}s" for n, v in spent.items()),
          file=sys.stderr, flush=True)
    return seen


def _pack(bo: str, typ: int, values: np.ndarray | list[int]) -> bytes:
    code = {3: "H", 4: "I", 16: "Q"}[typ]
    arr = np.asarray(values, dtype=np.dtype(code).newbyteorder(bo))
    return arr.tobytes()


def assemble(levels: list[Path], out: Path, force_bigtiff: bool = False) -> None:
    """Write the COG ``out`` from the level files (level 0 first) by copying their compressed tiles."""
    dirs = []
    for p in levels:
        _, bo, ifds = read_raw_tags(p)
        if len(ifds) != 1 or bo != "<":
            raise GeohpcError(f"{p}: expected one little-endian image directory in a level file, found {len(ifds)}")
        tags = {t[0]: t for t in ifds[0]}
        if TILE_OFFSETS not in tags or TILE_COUNTS not in tags:
            raise GeohpcError(f"{p}: a level file is not tiled")
        offs = [np.frombuffer(tags[t][3], {3: "<u2", 4: "<u4", 16: "<u8"}[tags[t][1]]).astype(np.uint64)
                for t in (TILE_OFFSETS, TILE_COUNTS)]
        dirs.append((tags, offs[0], offs[1]))
    data_size = int(sum(int(c.sum()) for _, _, c in dirs))

    def layout(big: bool) -> tuple[list[list[tuple[int, int, int, bytes]]], int, int]:
        """Per IFD the sorted entries, the ghost end offset and the size of all IFDs (offsets not filled yet)."""
        entries = []
        for lvl, (tags, o, _) in enumerate(dirs):
            t = {k: v for k, v in tags.items() if not (lvl and k in GEO_TAGS)}
            if lvl:
                t[NEW_SUBFILE] = (NEW_SUBFILE, 4, 1, _pack("<", 4, [1]))
            elif NEW_SUBFILE in t:
                del t[NEW_SUBFILE]
            typ = 16 if big else 4
            t[TILE_OFFSETS] = (TILE_OFFSETS, typ, len(o), b"")
            t[TILE_COUNTS] = (TILE_COUNTS, typ, len(o), b"")
            for k, (_, ty, _, _) in t.items():
                if not big and ty in (16, 17, 18):
                    raise GeohpcError(f"{levels[lvl]}: tag {k} needs BigTIFF")
            entries.append([t[k] for k in sorted(t)])
        head = 16 if big else 8
        ghost = head + len(f"GDAL_STRUCTURAL_METADATA_SIZE={len(GHOST):06d} bytes\n") + len(GHOST)
        ghost += ghost % 2
        size = 0
        ent, inline = (20, 8) if big else (12, 4)
        for e in entries:
            size += (8 if big else 2) + len(e) * ent + (8 if big else 4)
            for _, ty, cnt, data in e:
                n = len(data) if data else _SIZES.get(ty, 1) * cnt
                if n > inline:
                    size += n + n % 2
        return entries, ghost, size

    big = force_bigtiff
    entries, ghost, ifd_size = layout(big)
    slack = os.path.getsize(levels[0]) - int(dirs[0][2].sum()) + (1 << 20)  # in place: level 0's own header, alignment
    if not big and ghost + ifd_size + data_size + slack > BIGTIFF_LIMIT:
        big = True
        entries, ghost, ifd_size = layout(big)
    ovr_end = ghost + ifd_size + int(sum(int(c.sum()) for _, _, c in dirs[1:]))
    inserted = _insert_front(levels[0], ovr_end) if IN_PLACE else 0
    # where each level's tiles go: smallest overview first, full resolution last, TileOffsets order within
    cursor = ghost + ifd_size
    new_offsets: list[np.ndarray] = [np.zeros(0, np.uint64)] * len(dirs)
    for lvl in reversed(range(len(dirs))):
        counts = dirs[lvl][2]
        if lvl == 0 and inserted:  # level 0 stays where it is, shifted by the inserted range
            new_offsets[0] = np.where(counts > 0, dirs[0][1] + np.uint64(inserted), 0).astype(np.uint64)
            break
        starts = cursor + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.uint64)
        new_offsets[lvl] = np.where(counts > 0, starts, 0).astype(np.uint64)
        cursor += int(counts.sum())
    typ = 16 if big else 4
    ent_fmt, cnt_fmt, nxt_fmt, inline = ("<HHQ", "<Q", "<Q", 8) if big else ("<HHI", "<H", "<I", 4)
    blob = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, 0) if big else struct.pack("<HI", 42, 0)))
    blob += f"GDAL_STRUCTURAL_METADATA_SIZE={len(GHOST):06d} bytes\n".encode() + GHOST.encode()
    blob += b"\0" * (ghost - len(blob))
    pos = ghost
    for lvl, e in enumerate(entries):
        first = pos
        n_ent = len(e)
        pos_extra = first + struct.calcsize(cnt_fmt) + n_ent * (struct.calcsize(ent_fmt) + inline) + struct.calcsize(nxt_fmt)
        ifd = bytearray(struct.pack(cnt_fmt, n_ent))
        extra = bytearray()
        for tag, ty, cnt, data in e:
            if tag == TILE_OFFSETS:
                data = _pack("<", typ, new_offsets[lvl])
            elif tag == TILE_COUNTS:
                data = _pack("<", typ, dirs[lvl][2])
            if len(data) <= inline:
                value = data + b"\0" * (inline - len(data))
            else:
                value = struct.pack("<Q" if big else "<I", pos_extra + len(extra))
                extra += data + b"\0" * (len(data) % 2)
            ifd += struct.pack(ent_fmt, tag, ty, cnt) + value
        pos = pos_extra + len(extra)
        ifd += struct.pack(nxt_fmt, pos if lvl + 1 < len(entries) else 0)
        if lvl == 0:
            struct.pack_into("<Q" if big else "<I", blob, 8 if big else 4, first)
        blob += ifd + extra
    if len(blob) != ghost + ifd_size:
        raise GeohpcError(f"{out}: internal error laying out the COG header ({len(blob)} != {ghost + ifd_size} bytes)")
    if inserted:  # header + overviews into the hole in front of level 0's tiles; the file becomes the COG
        with open(levels[0], "r+b") as f:
            os.pwrite(f.fileno(), bytes(blob), 0)
            for lvl in reversed(range(1, len(dirs))):
                with open(levels[lvl], "rb") as src:
                    _copy_tiles(src.fileno(), f.fileno(), dirs[lvl][1], dirs[lvl][2], new_offsets[lvl])
        os.replace(levels[0], out)
        return
    with open(out, "wb") as f:
        f.write(blob)
        f.flush()
        fd = f.fileno()
        for lvl in reversed(range(len(dirs))):
            with open(levels[lvl], "rb") as src:
                _copy_tiles(src.fileno(), fd, dirs[lvl][1], dirs[lvl][2], new_offsets[lvl])
        os.ftruncate(fd, cursor)


def _insert_front(path: Path, need: int) -> int:
    """Insert a hole of at least ``need`` bytes (whole file-system blocks) at the start of ``path``; 0 when unsupported.

    ``fallocate(FALLOC_FL_INSERT_RANGE)`` (Linux ext4 and XFS) shifts the file's blocks without copying them,
    so the level-0 tiles become the COG's last part where they lie. Elsewhere (Lustre, NFS, tmpfs) it fails
    and the tiles are copied instead.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    except (OSError, AttributeError):
        return 0
    with open(path, "r+b") as f:
        blk = os.fstatvfs(f.fileno()).f_bsize or 4096
        size = -(-need // blk) * blk
        if libc.fallocate(f.fileno(), FALLOC_FL_INSERT_RANGE, 0, size) != 0:
            return 0
    return size


def _copy_tiles(src: int, dst: int, offs: np.ndarray, counts: np.ndarray, new: np.ndarray) -> None:
    """Copy each tile ``offs[i]:+counts[i]`` of ``src`` to ``new[i]`` in ``dst``, runs contiguous in both at once."""
    i, n = 0, len(offs)
    while i < n:
        if counts[i] == 0:
            i += 1
            continue
        j = i + 1
        while j < n and counts[j] and offs[j] == offs[j - 1] + counts[j - 1] and new[j] == new[j - 1] + counts[j - 1]:
            j += 1
        _copy_range(src, dst, int(offs[i]), int(new[i]), int(offs[j - 1] + counts[j - 1] - offs[i]))
        i = j


def _copy_range(src: int, dst: int, off_src: int, off_dst: int, size: int) -> None:
    while size > 0:
        try:
            done = os.copy_file_range(src, dst, size, off_src, off_dst)
        except OSError:  # an old kernel or a file system without it: plain reads and writes
            data = os.pread(src, min(size, 64 << 20), off_src)
            done = os.pwrite(dst, data, off_dst)
        if done <= 0:
            raise InputError(f"a level file ended early at byte {off_src} (the temporary was truncated); rerun")
        off_src, off_dst, size = off_src + done, off_dst + done, size - done


