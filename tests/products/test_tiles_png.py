"""Tile PNGs: the smallest mode that holds the pixels, decoding to the same colours as the RGB(A) files before."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.products.tiles import build, core
from geohpc.products.tiles.png import encode_png
from PIL import Image
from tiles_helpers import write_raster

GREY, RGB, INDEXED, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6


def header(png: bytes) -> tuple[int, int]:
    """(bit depth, colour type) from the IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    _w, _h, depth, ctype = struct.unpack(">IIBB", png[16:26])
    return depth, ctype


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def before(arr: np.ndarray) -> bytes:
    """The encoder geohpc used before: 8-bit RGB when opaque, else RGBA; Up filter, zlib level 2 RLE."""
    arr = arr[..., :3] if arr.shape[2] == 4 and (arr[..., 3] == 255).all() else arr
    h, w, c = arr.shape
    rows = np.ascontiguousarray(arr).reshape(h, w * c)
    raw = np.empty((h, w * c + 1), dtype=np.uint8)
    raw[:, 0] = 2
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    co = zlib.compressobj(2, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6 if c == 4 else 2, 0, 0, 0)
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr), _chunk(b"IDAT", co.compress(raw.tobytes()) + co.flush()),
                     _chunk(b"IEND", b"")))


def same_colours(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal RGBA where visible, equal alpha everywhere (a transparent pixel's colour is not kept)."""
    return bool(np.array_equal(a[..., 3], b[..., 3]) and np.array_equal(a[a[..., 3] > 0], b[b[..., 3] > 0]))


def tiles() -> dict[str, tuple[np.ndarray, bool, tuple[int, int]]]:
    """name -> (RGBA tile, palette?, expected (bit depth, colour type))."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:256, 0:256]
    grey = ((x + 2 * y) % 200).astype(np.uint8)
    edge = np.where(x < 70, 0, 255).astype(np.uint8)
    soft = np.where(x < 70, 0, np.where(x < 80, 128, 255)).astype(np.uint8)

    def rgba(c: np.ndarray, a: np.ndarray) -> np.ndarray:
        out = np.concatenate([c, a[..., None]], axis=-1).astype(np.uint8)
        out[out[..., 3] == 0, :3] = 0  # as the renderer leaves them
        return out

    g3 = np.repeat(grey[..., None], 3, axis=-1)
    colour = np.stack([x, y, (x * y) % 251], axis=-1).astype(np.uint8)
    table = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [145, 30, 180]], np.uint8)
    classes = table[(x // 50 + y // 40) % 5]
    many = rng.integers(0, 256, (300, 3)).astype(np.uint8)[(x + y) % 300]
    black = colour.copy()
    black[100, 100] = 0  # an opaque black pixel: black cannot be the transparent key
    full = np.full((256, 256), 255, np.uint8)
    return {
        "empty": (np.zeros((256, 256, 4), np.uint8), False, (1, GREY)),
        "classes 5 colours + nodata": (rgba(classes, edge), True, (4, INDEXED)),
        "classes 2 colours opaque": (rgba(table[x // 128], full), True, (1, INDEXED)),
        "classes 300 colours": (rgba(many, full), True, (8, RGB)),
        "grey opaque": (rgba(g3, full), False, (8, GREY)),
        "grey with nodata": (rgba(g3, edge), False, (8, GREY)),
        "grey, every level used": (rgba(np.repeat((x % 256)[..., None], 3, -1), np.where(y < 9, 0, 255)), False,
                                   (8, GREY_ALPHA)),
        "grey, soft edge": (rgba(g3, soft), False, (8, GREY_ALPHA)),
        "rgb opaque": (rgba(colour, full), False, (8, RGB)),
        "rgb with nodata": (rgba(colour, edge), False, (8, RGB)),
        "rgb with nodata and black": (rgba(black, edge), False, (8, RGBA)),
        "rgb, soft edge": (rgba(colour, soft), False, (8, RGBA)),
    }


@pytest.mark.parametrize("name", list(tiles()))
def test_smallest_mode_same_colours(name: str) -> None:
    arr, palette, mode = tiles()[name]
    png = encode_png(arr, 2, palette=palette)
    assert header(png) == mode
    assert same_colours(decode(png), decode(before(arr)))
    assert len(png) <= len(before(arr))
    if mode[1] in (GREY, GREY_ALPHA, INDEXED):  # one channel instead of three or four
        assert len(png) < 0.8 * len(before(arr)), (len(png), len(before(arr)))


def test_odd_widths_and_opaque_rgb_input() -> None:
    rng = np.random.default_rng(1)
    for n, depth in ((2, 1), (3, 2), (16, 4), (17, 8)):
        for w in (256, 255, 13):
            pal = rng.integers(0, 256, (n, 3)).astype(np.uint8)
            arr = pal[rng.integers(0, n, (37, w))]  # (H, W, 3), no alpha
            png = encode_png(arr, 2, palette=True)
            assert header(png) == (depth, INDEXED), (n, w)
            assert np.array_equal(decode(png)[..., :3], arr) and (decode(png)[..., 3] == 255).all()


def test_decode_tile_drops_the_colour_of_transparent_pixels(tmp_path: Path) -> None:
    arr = tiles()["grey with nodata"][0].copy()
    arr[..., :3] //= 2  # levels 0..99: 0 is used, so the transparent key is another level
    arr[arr[..., 3] == 0, :3] = 0
    p = tmp_path / "t.png"
    p.write_bytes(encode_png(arr))
    key = decode(p.read_bytes())[0, 0]
    assert header(p.read_bytes()) == (8, GREY) and key[3] == 0 and key[0] > 0  # Pillow shows the key colour
    got = core.decode_tile(p)
    assert np.array_equal(got, arr)  # as written: transparent pixels carry no colour


def _class_source(tmp_path: Path) -> Path:
    y, x = np.mgrid[0:160, 0:240]
    cls = ((x // 40 + y // 40) % 4 + 1).astype(np.uint8)
    cls[:16] = 0
    src = write_raster(tmp_path / "classes.tif", cls, nodata=0)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, {1: (230, 25, 75, 255), 2: (60, 180, 75, 255), 3: (0, 130, 200, 255), 4: (9, 9, 9, 255)})
    return src


@pytest.mark.parametrize("kind", ["classes", "grey float", "grey byte", "rgb"])
def test_tile_sets_smaller_with_the_same_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    y, x = np.mgrid[0:150, 0:200]
    if kind == "classes":
        src = _class_source(tmp_path)
    elif kind == "grey float":
        src = write_raster(tmp_path / "f.tif", (100.0 + x + 0.3 * y).astype(np.float32), nodata=None)
    elif kind == "grey byte":
        src = write_raster(tmp_path / "g.tif", ((x * 7 + y) % 256).astype(np.uint8))
    else:
        src = write_raster(tmp_path / "c.tif", np.stack([x, y, (x * y) % 256]).astype(np.uint8))
    new, old = tmp_path / "new", tmp_path / "old"
    build(str(src), new, zoom=(11, 16), processes=1, viewer=False)
    monkeypatch.setattr(core, "encode_tile", lambda rgba, fmt, level=2, lossless=True: before(rgba))
    monkeypatch.setattr("geohpc.products.tiles.pyramid.encode_tile", core.encode_tile)
    build(str(src), old, zoom=(11, 16), processes=1, viewer=False)
    names = sorted(p.relative_to(new) for p in new.glob("*/*/*.png"))
    assert names == sorted(p.relative_to(old) for p in old.glob("*/*/*.png")) and len(names) > 10
    modes = set()
    for n in names:
        a, b = (new / n).read_bytes(), (old / n).read_bytes()
        modes.add(header(a)[1])
        assert same_colours(decode(a), decode(b)), n
    main, edges = {"classes": (INDEXED, INDEXED), "grey float": (GREY, GREY_ALPHA), "grey byte": (GREY, GREY_ALPHA),
                   "rgb": (RGB, RGBA)}[kind]
    assert main in modes and modes <= {main, edges, GREY}, modes  # (soft data edges keep alpha; empty tiles: grey)
    size_new = sum((new / n).stat().st_size for n in names)
    size_old = sum((old / n).stat().st_size for n in names)
    limit = {"classes": 0.5, "grey float": 0.7, "grey byte": 0.7, "rgb": 1.0}[kind]
    assert size_new <= limit * size_old, (size_new, size_old)
