"""Read TIFF directories (IFDs) straight from the file: headers and offset tables only, never pixels.

One reader for what needs the layout of a TIFF: the COG validator (:mod:`geohpc.products.cog.layout`) and
the whole-file check of a written raster (:func:`geohpc.raster_io.tiff_problem`). A 50 GB file takes
milliseconds; a broken structure (a truncated directory, a tag table past the end, a looping chain) is a
``ValueError`` saying which.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
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


Entry = tuple[int, int, int, bytes]  # (tag, field type, count, the 4 or 8 value-or-offset bytes)


def _value_bytes(f: BinaryIO, bo: str, typ: int, count: int, raw: bytes, big: bool) -> bytes:
    """A tag's whole value as stored (inline or out of line), in the file's byte order."""
    nbytes = _TYPES.get(typ, ("B", 1))[1] * count
    if nbytes <= (8 if big else 4):
        return raw[:nbytes]
    (off,) = struct.unpack(bo + ("Q" if big else "I"), raw)
    f.seek(off)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError("tag data runs past the end of the file")
    return data


def _as_array(data: bytes, bo: str, typ: int) -> np.ndarray:
    code = _TYPES.get(typ, ("B", 1))[0]
    return np.frombuffer(data, dtype=np.dtype(_NP[code]).newbyteorder(bo) if code in _NP else "u1")


def _directories(f: BinaryIO) -> Iterator[tuple[bool, str, int, list[Entry]]]:
    """``(is_bigtiff, byte order, directory offset, its entries)`` for each directory in file order."""
    head = f.read(16)
    if head[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF file (bad byte-order mark)")
    bo = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(bo + "H", head[2:4])
    if magic not in (42, 43):
        raise ValueError(f"not a TIFF file (magic number {magic})")
    big = magic == 43
    (nxt,) = struct.unpack(bo + "Q", head[8:16]) if big else struct.unpack(bo + "I", head[4:8])
    cnt_fmt, ent, head_fmt = ("Q", 20, "HHQ") if big else ("H", 12, "HHI")
    seen: set[int] = set()
    while nxt and len(seen) < MAX_IFDS:
        if nxt in seen:
            raise ValueError("IFD chain loops back on itself")
        seen.add(nxt)
        f.seek(nxt)
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
            tag, typ, count = struct.unpack(bo + head_fmt, e[:ent - (8 if big else 4)])
            entries.append((tag, typ, count, e[ent - (8 if big else 4):]))
        tail = block[n * ent:]
        (following,) = struct.unpack(bo + ("Q" if big else "I"), tail[: 8 if big else 4]) if tail else (0,)
        yield big, bo, nxt, entries
        nxt = following


def read_directories(path: str | os.PathLike[str], wanted: Iterable[int]) -> tuple[bool, list[tuple[int, dict[int, np.ndarray]]]]:
    """``(is_bigtiff, [(directory offset, {tag: values})])`` in file order, for the ``wanted`` tags only."""
    want = set(wanted)
    big, out = False, []
    with open(path, "rb") as f:
        for big, bo, offset, entries in _directories(f):
            out.append((offset, {tag: _as_array(_value_bytes(f, bo, typ, count, raw, big), bo, typ)
                                 for tag, typ, count, raw in entries if tag in want}))
    return big, out


def read_raw_tags(path: str | os.PathLike[str]) -> tuple[bool, str, list[list[tuple[int, int, int, bytes]]]]:
    """``(is_bigtiff, byte order "<" or ">", [[(tag, type, count, value bytes)] per directory])``, every tag.

    The value bytes are the tag's whole value as stored (inline or out of line), in the file's byte order;
    what a TIFF writer needs to copy a directory into another file (:mod:`geohpc.products.cog.fast`).
    """
    big, bo, out = False, "<", []
    with open(path, "rb") as f:
        for big, bo, _, entries in _directories(f):
            out.append([(tag, typ, count, _value_bytes(f, bo, typ, count, raw, big)) for tag, typ, count, raw in entries])
    return big, bo, out
