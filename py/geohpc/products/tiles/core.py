"""Tile maths (web-mercator XYZ through mercantile), settings, tile paths, encoding and atomic tile writes.

A tile set is the set of XYZ tiles that intersect the source's lon/lat bounding box at each zoom
(``mercantile.tiles`` of the bounds), the same set ``gdal2tiles.py --xyz`` writes. It is kept as one
column/row range per zoom so that a country at zoom 18 never becomes a list of millions of tuples.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mercantile
import numpy as np

from geohpc.errors import ConfigError
from geohpc.products.tiles.png import encode_png

MAX_ZOOM = 24
TILE_SIZE = 256
META_LEVELS = 3  # a metatile at zoom z-3 holds 8x8 base tiles; levels z-1..z-3 are built in memory
MAX_LAT = 85.0511287798066
SETTINGS_FILE = "tiles.json"
SHARD_DIR = ".shards"
FORMATS = ("png", "webp")


def parse_zoom(text: str) -> tuple[int, int]:
    """Parse ``"0-14"`` or ``"12"`` into ``(minzoom, maxzoom)``.

    Raises
    ------
    ConfigError
        For anything outside 0-24, a reversed range or a malformed value.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text or "")
    if not m:
        raise ConfigError(f"--zoom {text!r}: give a range like 0-14 (or one zoom like 12)")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo > MAX_ZOOM or hi > MAX_ZOOM:
        raise ConfigError(f"--zoom {text}: zoom levels go from 0 to {MAX_ZOOM}; use e.g. --zoom 0-14")
    if lo > hi:
        raise ConfigError(f"--zoom {text}: range is reversed; write it low-high, e.g. --zoom {hi}-{lo}")
    return lo, hi


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based shard ``i`` of ``n``)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: give i/n with 0 <= i < n, e.g. --shard 0/8")
    return int(m.group(1)), int(m.group(2))


@dataclass
class TileRange:
    """Tiles ``x0..x1`` by ``y0..y1`` (inclusive) at zoom ``z``."""

    z: int
    x0: int
    x1: int
    y0: int
    y1: int

    def __len__(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)

    def __contains__(self, t: object) -> bool:
        if not isinstance(t, tuple) or len(t) != 3:
            return False
        x, y, z = t
        return z == self.z and self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        for x in range(self.x0, self.x1 + 1):
            for y in range(self.y0, self.y1 + 1):
                yield (x, y, self.z)


def clamp_bounds(bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Clip lon/lat bounds to what web mercator can show (+-180, +-85.0511)."""
    w, s, e, n = bounds
    return (max(w, -180.0), max(s, -MAX_LAT), min(e, 180.0), min(n, MAX_LAT))


def tile_range(bounds: tuple[float, float, float, float], z: int) -> TileRange:
    """The tiles of zoom ``z`` that ``mercantile.tiles(*bounds, zooms=z)`` yields, as a range."""
    w, s, e, n = clamp_bounds(bounds)
    ul = mercantile.tile(w, n, z)
    lr = mercantile.tile(e - mercantile.LL_EPSILON, s + mercantile.LL_EPSILON, z)
    return TileRange(z, ul.x, lr.x, ul.y, lr.y)


def meta_zoom(minzoom: int, maxzoom: int) -> int:
    """Zoom of the metatiles: ``maxzoom - 3`` (8x8 base tiles each; fewer when ``maxzoom`` < 3).

    It does not depend on ``minzoom``: a one-zoom job still warps 8x8 tiles per call (the warper's
    per-call cost dominates single tiles), it just writes no tiles above ``minzoom``.
    """
    return max(0, maxzoom - META_LEVELS)


def shard_items(items: list[Any], shard: int, nshards: int) -> list[Any]:
    """Contiguous slice ``shard`` of ``nshards`` (neighbouring metatiles share source blocks)."""
    n = len(items)
    return items[shard * n // nshards : (shard + 1) * n // nshards]


@dataclass
class Settings:
    """Everything that decides the tiles' content; stored as ``tiles.json`` so shards and reruns agree."""

    src: str
    name: str
    minzoom: int
    maxzoom: int
    mode: str
    bands: list[int]
    fmt: str = "png"
    resampling: str = "bilinear"
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    render: dict[str, Any] = field(default_factory=dict)
    skip_empty: bool = False
    percentiles: list[float] = field(default_factory=lambda: [2.0, 98.0])
    png_level: int = 2
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Settings:
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        d["bounds"] = tuple(d["bounds"])
        return cls(**d)

    def content_key(self) -> dict[str, Any]:
        """The user's choices that must match for a rerun or another shard to reuse finished tiles.

        ``minzoom`` may change (a wider range only adds tiles); ``render`` and ``bounds`` are
        fitted from the source once and then read from ``tiles.json``.
        """
        d = self.to_json()
        for k in ("minzoom", "render", "bounds"):
            d.pop(k)
        return d


def tile_path(out_dir: Path, x: int, y: int, z: int, fmt: str) -> Path:
    """``out_dir/z/x/y.<fmt>`` (XYZ numbering: y counts from the north)."""
    return out_dir / str(z) / str(x) / f"{y}.{fmt}"


def encode_tile(rgba: np.ndarray, fmt: str, png_level: int = 2, lossless: bool = True) -> bytes:
    """Encode an (H, W, 4) uint8 array as PNG or WebP.

    PNG is the smallest that holds the pixels (:func:`geohpc.products.tiles.png.encode_png`):
    indexed colour for class maps (``lossless=True``), grey for grey tiles, RGB when opaque.
    WebP drops the alpha channel of opaque tiles, is lossless for class maps and quality 90
    for imagery.
    """
    if fmt == "png":
        return encode_png(rgba, png_level, palette=lossless)
    arr = rgba[..., :3] if bool((rgba[..., 3] == 255).all()) else rgba
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.shape[2] == 3 else "RGBA")
    buf = io.BytesIO()
    img.save(buf, "WEBP", lossless=lossless, quality=90, method=2)
    return buf.getvalue()


def decode_tile(path: Path) -> np.ndarray:
    """Read a tile file back as an (H, W, 4) uint8 array."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.array(img.convert("RGBA"))
    arr[arr[..., 3] == 0, :3] = 0  # a grey tRNS key decodes as (k, k, k, 0): transparent carries no colour
    return arr


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder and a rename.

    Cheaper than :func:`geohpc.util.atomic_path` per file (no mkstemp), with the same guarantee:
    a killed process leaves ``.name.<pid>.tmp`` files, never a half-written tile.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


_TILE_TMP = re.compile(r"^\.(\d+)\.(?:png|webp)\.\d+\.tmp$")


def sweep_tile_temporaries(folder: Path, rows: tuple[int, int] | None = None) -> int:
    """Remove ``.<y>.<fmt>.<pid>.tmp`` files a killed writer left in one ``z/x`` folder; return how many.

    ``rows`` limits it to tiles ``y0 <= y <= y1`` (the tiles this process owns: shards never touch each
    other's). Only names :func:`write_bytes_atomic` makes are removed.
    """
    n = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for e in entries:
        m = _TILE_TMP.match(e.name)
        if m and (rows is None or rows[0] <= int(m.group(1)) <= rows[1]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(e.path)
                n += 1
    return n


def make_readable(path: Path) -> None:
    """Give a file made through a temporary file (mode 0600) the usual umask permissions.

    Web servers and colleagues must be able to read ``index.html``, ``tiles.json`` and the archive.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def shard_marker(out_dir: Path, shard: int, nshards: int) -> Path:
    """The file a finished shard leaves behind."""
    return out_dir / SHARD_DIR / f"{shard}-of-{nshards}.done"
