"""Read the GLIBC versions a compiled ``.so`` needs, from its ELF ``.gnu.version_r`` section (pure Python).

This is what ``objdump -T`` / ``readelf -V`` show as ``GLIBC_2.28`` version needs: a wheel built on a
newer system than the compute node (or the container) fails at import with
``version `GLIBC_2.34' not found``.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path

SHT_GNU_VERNEED = 0x6FFFFFFE
_GLIBC = re.compile(rb"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


def glibc_needs(path: str | Path) -> set[tuple[int, int]]:
    """The ``GLIBC_x.y`` versions ``path`` requires (empty for non-ELF files or static objects)."""
    st = os.stat(path)
    return set(_needs_cached(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=65536)
def _needs_cached(path: str, _mtime: int, _size: int) -> frozenset[tuple[int, int]]:
    return frozenset(_read_needs(path))


def _read_needs(path: str) -> set[tuple[int, int]]:
    with open(path, "rb") as fh:
        ident = fh.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            return set()
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            hdr = fh.read(48)
            shoff, = struct.unpack(end + "Q", hdr[24:32])
            shentsize, shnum = struct.unpack(end + "HH", hdr[42:46])
        else:
            hdr = fh.read(36)
            shoff, = struct.unpack(end + "I", hdr[16:20])
            shentsize, shnum = struct.unpack(end + "HH", hdr[30:34])
        if not shoff or not shnum:
            return set()
        fh.seek(shoff)
        raw = fh.read(shentsize * shnum)
        sections = []
        for i in range(shnum):
            s = raw[i * shentsize:(i + 1) * shentsize]
            if is64:
                _n, stype, _f, _a, off, size, link = struct.unpack(end + "IIQQQQI", s[:44])
                info, = struct.unpack(end + "I", s[44:48])
            else:
                _n, stype, _f, _a, off, size, link, info = struct.unpack(end + "IIIIIIII", s[:32])
            sections.append((stype, off, size, link, info))
        needs: set[tuple[int, int]] = set()
        for stype, off, size, link, count in sections:
            if stype != SHT_GNU_VERNEED or link >= len(sections):
                continue
            _t, stroff, strsize, _l, _i = sections[link]
            fh.seek(stroff)
            strtab = fh.read(strsize)
            fh.seek(off)
            data = fh.read(size)
            pos = 0
            for _ in range(count):
                _ver, cnt, _file, aux, nxt = struct.unpack(end + "HHIII", data[pos:pos + 16])
                apos = pos + aux
                for _ in range(cnt):
                    _h, _fl, _o, name, anext = struct.unpack(end + "IHHII", data[apos:apos + 16])
                    label = strtab[name:strtab.index(b"\0", name)]
                    m = _GLIBC.match(label)
                    if m:
                        needs.add((int(m.group(1)), int(m.group(2))))
                    if not anext:
                        break
                    apos += anext
                if not nxt:
                    break
                pos += nxt
        return needs


def parse_version(text: str) -> tuple[int, int] | None:
    """``'2.31'`` or ``'glibc 2.31'`` -> (2, 31); None when no version is in ``text``."""
    m = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def scan_tree(roots: Iterable[Path], limit: int = 20000) -> dict[Path, tuple[int, int]]:
    """``{file: newest GLIBC it needs}`` for the ``*.so*`` files under ``roots`` (first ``limit`` files)."""
    out: dict[Path, tuple[int, int]] = {}
    n = 0
    for root in roots:
        if not root.is_dir():
            continue
        for p in root.rglob("*.so*"):
            if n >= limit:
                return out
            if not p.is_file() or p.is_symlink():
                continue
            n += 1
            try:
                needs = glibc_needs(p)
            except (OSError, struct.error, ValueError):
                continue
            if needs:
                out[p] = max(needs)
    return out
