"""Work items of predict and their output names: standard library only (the plan imports this too)."""

from __future__ import annotations

from pathlib import Path

from geohpc.errors import ConfigError
from geohpc.util import split_shard


def parse_item(item: str) -> tuple[str, int, int]:
    """``"a.tif::2/4"`` -> ``("a.tif", 2, 4)``; ``"a.tif"`` -> ``("a.tif", 0, 1)``."""
    try:
        return split_shard(item)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def output_name(raster: str, i: int, n: int) -> str:
    """The output file name for strip ``i`` of ``n`` of ``raster``."""
    stem = Path(raster).name.rsplit(".", 1)[0]
    return f"{stem}.tif" if n == 1 else f"{stem}.part{i:03d}of{n:03d}.tif"
