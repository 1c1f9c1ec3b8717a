"""The smallest PNG that holds a tile: palette for class maps, grey for one-band data, RGB(A) otherwise.

Tiles used to be written as 8-bit RGB (or RGBA): a grey or class tile then carries three copies of
one channel. :func:`encode_png` looks at the pixels and picks, losslessly:

- every pixel transparent: a 1-bit grey image with a ``tRNS`` key (under 100 bytes);
- ``palette=True`` (class maps) and at most 256 distinct colours: indexed colour at 1, 2, 4 or 8 bits
  a pixel, with a ``tRNS`` chunk for transparent entries;
- R == G == B everywhere: grey (opaque), grey with a ``tRNS`` key when alpha is only 0/255 and a grey
  level is unused, else grey + alpha;
- otherwise RGB (opaque), RGB with ``tRNS`` key (0, 0, 0) when alpha is 0/255 and black is unused, else RGBA.

Every PNG reader (browsers, Pillow, GDAL) decodes each of these to the same RGBA as the RGB(A) file.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, INDEXED, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6  # PNG colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _deflate(data: bytes, level: int, strategy: int) -> bytes:
    co = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    return co.compress(data) + co.flush()


def _rows(samples: np.ndarray, up: bool) -> bytes:
    """Filtered scanlines: a filter byte then the row; "Up" (row minus the row above) or "None"."""
    h = samples.shape[0]
    rows = np.ascontiguousarray(samples).reshape(h, -1)  # contiguous rows subtract ~2x faster
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 1:] = rows
    raw[:, 0] = 2 if up else 0
    if up:
        np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    return raw.tobytes()


def _png(w: int, h: int, depth: int, ctype: int, idat: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"".join((SIGNATURE, _chunk(b"IHDR", ihdr), *(_chunk(k, d) for k, d in extra),
                     _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


def _pack_bits(idx: np.ndarray, depth: int) -> np.ndarray:
    """Pack (H, W) indices < 2**depth into rows of 8/depth pixels a byte, most significant first."""
    if depth == 8:
        return idx
    if depth == 1:
        return np.packbits(idx.astype(bool), axis=1)
    per = 8 // depth
    h, w = idx.shape
    if w % per:
        idx = np.pad(idx, ((0, 0), (0, per - w % per)))
    out = idx[:, 0::per] << np.uint8(8 - depth)
    for k in range(1, per):
        out |= idx[:, k::per] << np.uint8(8 - depth * (k + 1))
    return out


def _indexed(rgba: np.ndarray, level: int) -> bytes | None:
    """Indexed-colour PNG of an (H, W, 4) array, or None when it has more than 256 colours."""
    h, w = rgba.shape[:2]
    packed = np.ascontiguousarray(rgba).view(np.uint32).reshape(-1)
    s = np.sort(packed)  # sort + neighbours: several times faster than np.unique(return_inverse=True)
    colours = s[np.concatenate(([True], s[1:] != s[:-1]))]
    if len(colours) > 256:
        return None
    pal = colours.view(np.uint8).reshape(-1, 4)
    order = np.argsort(pal[:, 3] == 255, kind="stable")  # translucent entries first: a short tRNS
    pal, colours = pal[order], colours[order]
    if len(colours) <= 16:  # a pass per colour beats a binary search for the few colours of a class map
        idx = np.zeros(packed.shape, dtype=np.uint8)
        for i, col in enumerate(colours[1:], 1):
            idx[packed == col] = i
    else:
        rank = np.empty(len(order), dtype=np.uint8)
        rank[order] = np.arange(len(order))
        idx = rank[np.searchsorted(np.sort(colours), packed)]
    depth = next(d for d in (1, 2, 4, 8) if len(pal) <= 1 << d)
    extra = [(b"PLTE", pal[:, :3].tobytes())]
    ntrns = int((pal[:, 3] < 255).sum())
    if ntrns:
        extra.append((b"tRNS", pal[:ntrns, 3].tobytes()))
    # class maps are flat: rows repeat, so full LZ77 (not RLE) on unfiltered indices is smallest
    idat = _deflate(_rows(_pack_bits(idx.reshape(h, w), depth), up=False), max(level, 6), zlib.Z_DEFAULT_STRATEGY)
    return _png(w, h, depth, INDEXED, idat, tuple(extra))


def _binary_alpha(alpha: np.ndarray) -> bool:
    return bool(((alpha == 0) | (alpha == 255)).all())


def _grey(grey: np.ndarray, alpha: np.ndarray | None, level: int) -> bytes:
    h, w = grey.shape
    if alpha is None:
        return _png(w, h, 8, GREY, _deflate(_rows(grey, True), level, zlib.Z_RLE))
    opaque = alpha == 255
    if _binary_alpha(alpha):
        used = np.bincount(grey[opaque], minlength=256)
        free = np.flatnonzero(used == 0)
        if len(free):
            key = 0 if used[0] == 0 else int(free[0])
            g = np.where(opaque, grey, np.uint8(key))
            idat = _deflate(_rows(g, True), level, zlib.Z_RLE)
            return _png(w, h, 8, GREY, idat, ((b"tRNS", struct.pack(">H", key)),))
    ga = np.stack([grey, alpha], axis=-1)
    return _png(w, h, 8, GREY_ALPHA, _deflate(_rows(ga, True), level, zlib.Z_RLE))


def encode_png(arr: np.ndarray, level: int = 2, palette: bool = False) -> bytes:
    """Encode an (H, W, 3|4) uint8 array as the smallest fitting PNG (see the module docstring).

    Parameters
    ----------
    arr : numpy.ndarray
        RGB or RGBA pixels; transparent pixels (alpha 0) may carry any colour, it is not kept.
    level : int
        zlib level for grey/colour images (their rows use the "Up" filter and run-length deflate,
        several times faster than Pillow's adaptive filtering at similar size).
    palette : bool
        Try indexed colour (class maps: few exact colours). Not tried for imagery, whose tiles
        rarely fit 256 colours and would pay for counting them.

    Returns
    -------
    bytes
        The PNG file.
    """
    h, w, c = arr.shape
    alpha = arr[..., 3] if c == 4 else None
    if alpha is not None and not alpha.any():
        return _png(w, h, 1, GREY, _deflate(_rows(np.zeros((h, (w + 7) // 8), np.uint8), False), 9,
                                             zlib.Z_DEFAULT_STRATEGY), ((b"tRNS", b"\x00\x00"),))
    if alpha is not None and bool((alpha == 255).all()):
        alpha = None
    rgba = arr if alpha is not None else None
    if palette:
        full = arr if c == 4 else np.concatenate([arr, np.full((h, w, 1), 255, np.uint8)], axis=2)
        if alpha is not None:
            full = np.where(full[..., 3:] == 0, np.uint8(0), full)  # one "transparent" colour
        out = _indexed(full, level)
        if out is not None:
            return out
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return _grey(r, alpha, level)
    if rgba is None:
        return _png(w, h, 8, RGB, _deflate(_rows(arr[..., :3], True), level, zlib.Z_RLE))
    opaque = rgba[..., 3] == 255
    if _binary_alpha(rgba[..., 3]) and not (opaque & ~(r | g | b).astype(bool)).any():
        rgb = np.where(opaque[..., None], rgba[..., :3], np.uint8(0))
        idat = _deflate(_rows(rgb, True), level, zlib.Z_RLE)
        return _png(w, h, 8, RGB, idat, ((b"tRNS", b"\x00\x00\x00\x00\x00\x00"),))
    return _png(w, h, 8, RGBA, _deflate(_rows(rgba, True), level, zlib.Z_RLE))
