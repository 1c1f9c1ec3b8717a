"""Read TIFF directories (IFDs) straight from the file: headers and offset tables only, never pixels.

One reader for what needs the layout of a TIFF: the COG validator (:mod:`geohpc.products.cog.layout`) and
the whole-file check of a written raster (:func:`geohpc.raster_io.tiff_problem`). A 50 GB file takes
milliseconds; a broken structure (a truncated directory, a tag table past the end, a looping chain) is a
``ValueError`` saying which.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np

# TIFF field types -> (struct code, size in bytes)
_TYPES = {1: ("B", 1), 2: ("c", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8)}
_NP = {"B": "u1", "H": "u2", "I": "u4", "Q": "u8", "b": "i1", "h": "i2", "i": "i4", "q": "i8"}
MAX_IFDS = 10_000

NEW_SUBFILE_TYPE, WIDTH, HEIGHT = 254, 256, 257
STRIP_OFFSETS, STRIP_COUNTS = 273, 279
TILE_WIDTH, TILE_HEIGHT, TILE_OFFSETS, TILE_COUNTS = 322, 323, 324, 325


def _read_value(f: BinaryIO, bo: str, typ: int, count: int, raw: bytes, inline: int, big: bool) -> np.ndarray:
    code, size = _TYPES.get(typ, ("B", 1))
    nbytes = size * count
    if nbytes <= inline:
        data = raw[:nbytes]
    else:
        (off,) = struct.unpack(bo + ("Q" if big else "I"), raw)
        f.seek(off)
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValueError("tag data runs past the end of the file")
    if code in _NP:
        return np.frombuffer(data, dtype=np.dtype(_NP[code]).newbyteorder(bo))
    return np.frombuffer(data, dtype="u1")


def read_directories(path: str | os.PathLike[str], wanted: Iterable[int]) -> tuple[bool, list[tuple[int, dict[int, np.ndarray]]]]:
    """``(is_bigtiff, [(directory offset, {tag: values})])`` in file order, for the ``wanted`` tags only."""
    want = set(wanted)
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] not in (b"II", b"MM"):
            raise ValueError("not a TIFF file (bad byte-order mark)")
        bo = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(bo + "H", head[2:4])
        if magic == 42:
            big, (nxt,) = False, struct.unpack(bo + "I", head[4:8])
        elif magic == 43:
            big, (nxt,) = True, struct.unpack(bo + "Q", head[8:16])
        else:
            raise ValueError(f"not a TIFF file (magic number {magic})")
        out: list[tuple[int, dict[int, np.ndarray]]] = []
        seen: set[int] = set()
        while nxt and len(out) < MAX_IFDS:
            if nxt in seen:
                raise ValueError("IFD chain loops back on itself")
            seen.add(nxt)
            f.seek(nxt)
            cnt_fmt, ent, inline = ("Q", 20, 8) if big else ("H", 12, 4)
            raw_n = f.read(8 if big else 2)
            if len(raw_n) < (8 if big else 2):
                raise ValueError("IFD offset points past the end of the file")
            (n,) = struct.unpack(bo + cnt_fmt, raw_n)
            block = f.read(n * ent + (8 if big else 4))
            if len(block) < n * ent:
                raise ValueError("truncated IFD")
            entries = []
            for i in range(n):
                e = block[i * ent:(i + 1) * ent]
                if big:
                    tag, typ, count = struct.unpack(bo + "HHQ", e[:12])
                    raw = e[12:20]
                else:
                    tag, typ, count = struct.unpack(bo + "HHI", e[:8])
                    raw = e[8:12]
                if tag in want:
                    entries.append((tag, typ, count, raw))
            tail = block[n * ent:]
            (following,) = struct.unpack(bo + ("Q" if big else "I"), tail[: 8 if big else 4]) if tail else (0,)
            tags = {tag: _read_value(f, bo, typ, count, raw, inline, big) for tag, typ, count, raw in entries}
            out.append((nxt, tags))
            nxt = following
        return big, out


def read_raw_tags(path: str | os.PathLike[str]) -> tuple[bool, str, list[list[tuple[int, int, int, bytes]]]]:
    """``(is_bigtiff, byte order "<" or ">", [[(tag, type, count, value bytes)] per directory])``, every tag.

    The value bytes are the tag's whole value as stored (inline or out of line), in the file's byte order;
    what a TIFF writer needs to copy a directory into another file (:mod:`geohpc.products.cog.fast`).
    """
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] not in (b"II", b"MM"):
            raise ValueError("not a TIFF file (bad byte-order mark)")
        bo = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(bo + "H", head[2:4])
        if magic not in (42, 43):
            raise ValueError(f"not a TIFF file (magic number {magic})")
        big = magic == 43
        (nxt,) = struct.unpack(bo + "Q", head[8:16]) if big else struct.unpack(bo + "I", head[4:8])
        cnt_fmt, ent, inline = ("Q", 20, 8) if big else ("H", 12, 4)
        out: list[list[tuple[int, int, int, bytes]]] = []
        seen: set[int] = set()
        while nxt and len(out) < MAX_IFDS:
            if nxt in seen:
                raise ValueError("IFD chain loops back on itself")
            seen.add(nxt)
            f.seek(nxt)
            (n,) = struct.unpack(bo + cnt_fmt, f.read(8 if big else 2))
            block = f.read(n * ent + (8 if big else 4))
            if len(block) < n * ent + (8 if big else 4):
                raise ValueError("truncated IFD")
            tags = []
            for i in range(n):
                e = block[i * ent:(i + 1) * ent]
                tag, typ, count = struct.unpack(bo + ("HHQ" if big else "HHI"), e[:12 if big else 8])
                raw = e[12:20] if big else e[8:12]
                nbytes = _TYPES.get(typ, ("B", 1))[1] * count
                if nbytes <= inline:
                    data = raw[:nbytes]
                else:
                    (off,) = struct.unpack(bo + ("Q" if big else "I"), raw)
                    f.seek(off)
                    data = f.read(nbytes)
                    if len(data) != nbytes:
                        raise ValueError("tag data runs past the end of the file")
                tags.append((tag, typ, count, data))
            out.append(tags)
            (nxt,) = struct.unpack(bo + ("Q" if big else "I"), block[n * ent:])
        return big, bo, out
