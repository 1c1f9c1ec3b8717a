"""Pack the tile folder into one PMTiles v3 archive (one file instead of millions of inodes).

Uses the ``pmtiles`` package's writer. Its tile-data spool file is moved from ``/tmp`` (RAM on
LUMI compute nodes, counted against the job) to the output folder, and the archive is written to
a temporary name and renamed, so a killed job never leaves a truncated archive.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from geohpc.guards import sweep_temporaries
from geohpc.products.tiles.core import Settings, make_readable, tile_path, tile_range
from geohpc.util import atomic_path


def _e7(v: float) -> int:
    return int(round(v * 10_000_000))


def write_pmtiles(out_dir: Path, settings: Settings, target: Path | None = None) -> tuple[Path, int]:
    """Write every tile of the pyramid found in ``out_dir`` into ``<out_dir>/<name>.pmtiles``.

    Parameters
    ----------
    out_dir : Path
        The ``z/x/y`` tile folder.
    settings : Settings
        The job's settings (zoom range, bounds, format, name).
    target : Path, optional
        Archive path; default ``out_dir / f"{settings.name}.pmtiles"``.

    Returns
    -------
    (Path, int)
        The archive and the number of tiles in it.
    """
    target = target or out_dir / f"{settings.name}.pmtiles"
    sweep_temporaries(target)  # a killed earlier archive write: as large as the pyramid
    ids: list[tuple[int, int, int, int]] = []
    for z in range(settings.minzoom, settings.maxzoom + 1):
        for x, y, _z in tile_range(settings.bounds, z):
            if os.path.exists(tile_path(out_dir, x, y, z, settings.fmt)):
                ids.append((zxy_to_tileid(z, x, y), z, x, y))
    ids.sort()  # clustered archive: tiles in tile-id (Hilbert) order
    w, s, e, n = settings.bounds
    header = {
        "tile_type": TileType.PNG if settings.fmt == "png" else TileType.WEBP,
        "tile_compression": Compression.NONE,
        "min_lon_e7": _e7(w), "min_lat_e7": _e7(s), "max_lon_e7": _e7(e), "max_lat_e7": _e7(n),
        "center_zoom": settings.minzoom, "center_lon_e7": _e7((w + e) / 2), "center_lat_e7": _e7((s + n) / 2),
    }
    metadata = {
        "name": settings.name, "format": settings.fmt, "type": "overlay", "minzoom": settings.minzoom,
        "maxzoom": settings.maxzoom, "bounds": list(settings.bounds), "generator": "geohpc.tiles",
        "render_mode": settings.render.get("mode"),
    }
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        writer = Writer(f)
        writer.tile_f.close()
        writer.tile_f = tempfile.TemporaryFile(dir=out_dir)  # not /tmp: RAM on LUMI compute nodes
        for tid, z, x, y in ids:
            writer.write_tile(tid, tile_path(out_dir, x, y, z, settings.fmt).read_bytes())
        if ids:
            writer.finalize(header, metadata)
    make_readable(target)
    return target, len(ids)
