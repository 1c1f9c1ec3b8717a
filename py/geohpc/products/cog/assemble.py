"""The COG assembled from the fast path's level files by copying their compressed tiles (no decode, no re-encode).

:func:`assemble` writes the COG with its own TIFF writer around the compressed tiles (no decode, no
re-encode). Where the file system can (ext4, XFS: ``fallocate(FALLOC_FL_INSERT_RANGE)``), a hole of whole
blocks is inserted in front of the level-0 file, the header and the overview tiles are written into it and
that file becomes the COG: the full-resolution tiles are never copied. Elsewhere (Lustre, NFS, tmpfs) every
tile is copied into a new file (``os.copy_file_range``). Header (BigTIFF only when the file needs 64-bit offsets), GDAL's
structural-metadata ghost area, the main IFD (every tag of the level-0 file, offsets rewritten), one IFD
per overview (``NewSubfileType=1``, georeferencing left out), all IFDs before the data, then the tiles,
smallest overview first and full resolution last, each level in TileOffsets order (band-major for band
interleave) -- the layout GDAL 3.10's COG driver writes, without block leaders/trailers (not claimed).
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import numpy as np

from geohpc.errors import GeohpcError, InputError
from geohpc.products.cog.common import libc
from geohpc.tiff import read_raw_tags

IN_PLACE = True  # level 0 becomes the COG through an inserted range where the file system can (tests turn it off)
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
COPY_CHUNK = 32 << 20  # bytes copied before the source's range is released
BIGTIFF_LIMIT = 2**32 - 1  # the file size above which the COG is written as BigTIFF (tests lower it)
GEO_TAGS = {33550, 33922, 34264, 34735, 34736, 34737, 42112}  # scales, tiepoints, matrix, geokeys, GDAL_METADATA
NEW_SUBFILE, TILE_OFFSETS, TILE_COUNTS = 254, 324, 325
GHOST = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def _pack(bo: str, typ: int, values: np.ndarray | list[int]) -> bytes:
    code = {3: "H", 4: "I", 16: "Q"}[typ]
    arr = np.asarray(values, dtype=np.dtype(code).newbyteorder(bo))
    return arr.tobytes()


def assemble(levels: list[Path], out: Path, force_bigtiff: bool = False) -> None:
    """Write the COG ``out`` from the level files (level 0 first) by copying their compressed tiles.

    The level files are the fast path's temporaries and are consumed: level 0 becomes ``out`` (in place) or
    is copied, and every copied range of a level file is punched out as the copy goes (:func:`_copy_range`).
    """
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
                with open(levels[lvl], "r+b") as src:  # r+: copied ranges are punched out (punch)
                    _copy_tiles(src.fileno(), f.fileno(), dirs[lvl][1], dirs[lvl][2], new_offsets[lvl])
        os.replace(levels[0], out)
        return
    with open(out, "wb") as f:
        f.write(blob)
        f.flush()
        fd = f.fileno()
        for lvl in reversed(range(len(dirs))):
            with open(levels[lvl], "r+b") as src:  # r+: copied ranges are punched out (punch)
                _copy_tiles(src.fileno(), fd, dirs[lvl][1], dirs[lvl][2], new_offsets[lvl])
        os.ftruncate(fd, cursor)


def _insert_front(path: Path, need: int) -> int:
    """Insert a hole of at least ``need`` bytes (whole file-system blocks) at the start of ``path``; 0 when unsupported.

    ``fallocate(FALLOC_FL_INSERT_RANGE)`` (Linux ext4 and XFS) shifts the file's blocks without copying them,
    so the level-0 tiles become the COG's last part where they lie. Elsewhere (Lustre, NFS, tmpfs) it fails
    and the tiles are copied instead.
    """
    lib = libc()
    if lib is None:
        return 0
    with open(path, "r+b") as f:
        blk = os.fstatvfs(f.fileno()).f_bsize or 4096
        size = -(-need // blk) * blk
        if lib.fallocate(f.fileno(), FALLOC_FL_INSERT_RANGE, 0, size) != 0:
            return 0
    return size


def start_write_out(fd: int, keep: int = 1 << 20) -> None:
    """Send the level-0 file's pages to disk now and drop those already there, all but its last ``keep`` bytes.

    ``posix_fadvise(DONTNEED)`` starts write-back of the dirty pages (without waiting) and frees the clean
    ones, so called window by window: ``fallocate(INSERT_RANGE)`` later finds little left to write back
    (measured at 4 GB: the insert 1.0 -> 0.3 s), and the pass reuses its own freed pages instead of taking
    fresh memory for every tile (the page cache of the level-0 file stays about two windows, not its size;
    on a VM a never-touched page costs ~2 s/GB). A no-op where the call is missing.
    """
    size = os.fstat(fd).st_size - keep
    if size > 0:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)


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
    """Copy ``size`` bytes in chunks, handing each copied chunk of the (temporary) source back to the kernel.

    Punching the copied range out of the level file frees its page-cache pages for the next chunk's copy, so
    the copy does not take fresh memory: on a VM with free-page reporting a never-touched page costs ~2 s/GB
    (measured: a first 3 GB write 7.3 s, the same write again 0.7 s).
    """
    while size > 0:
        step = min(size, COPY_CHUNK)
        done = 0
        while done < step:
            try:
                n = os.copy_file_range(src, dst, step - done, off_src + done, off_dst + done)
            except OSError:  # an old kernel or a file system without it: plain reads and writes
                data = os.pread(src, min(step - done, 64 << 20), off_src + done)
                n = os.pwrite(dst, data, off_dst + done)
            if n <= 0:
                raise InputError(f"a level file ended early at byte {off_src + done} (the temporary was truncated); rerun")
            done += n
        punch(src, off_src, step)
        off_src, off_dst, size = off_src + step, off_dst + step, size - step


def punch(fd: int, offset: int, size: int) -> None:
    """Drop ``offset:+size`` of a temporary (hole punched, or at least its cached pages): only ever our own temporaries."""
    lib = libc()
    if lib is None or lib.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, size) != 0:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, offset, size, os.POSIX_FADV_DONTNEED)
