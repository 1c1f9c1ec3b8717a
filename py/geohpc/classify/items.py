"""Work items of classify (``RASTER::i/n`` shards of block rows) and their output names; standard library only."""

from __future__ import annotations

from pathlib import Path

from geohpc.util import split_shard


def parse_item(item: str) -> tuple[str, int, int]:
    """``'<raster>::i/n'`` -> ``(raster, i, n)``; a bare raster path is shard 0 of 1 (ValueError if bad)."""
    return split_shard(item)


def shard_name(raster: str, i: int, n: int) -> str:
    """Output file name of shard ``i`` of ``n`` for ``raster`` (same grid as the input, so a VRT joins them)."""
    stem = Path(raster).stem
    return f"{stem}.tif" if n == 1 else f"{stem}_shard{i:03d}of{n:03d}.tif"
