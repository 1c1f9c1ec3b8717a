"""tiles: web-mercator XYZ tiles of one raster, split into shards of metatiles (one array task each).

Make-line parameters: ``SRC=<raster>`` (required; relative paths are under SCRATCH), ``SHARDS=<n>``
(array tasks, default 4), ``ZOOM=min-max`` (default 0-14), ``MODE``, ``BANDS``, ``FORMAT``,
``NAME`` (output folder and layer name, default the source's stem), ``PMTILES=no`` to skip the archive.
The manifest is ``0/n`` .. ``n-1/n``; each task renders its shard and leaves
``<out>/.shards/i-of-n.done``; the task that completes the set builds the lower zooms, the PMTiles
archive and the viewer (``python -m geohpc tiles ... --finalize`` does it by hand).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError


def _folder(ctx: StageContext) -> Path:
    src = ctx.path_param("SRC")
    return ctx.out_dir / ctx.param("NAME", src.stem)


def _derived(ctx: StageContext) -> dict[str, str]:
    """NAME defaults to the source's stem (the output folder and layer name)."""
    return {"NAME": ctx.path_param("SRC").stem} if ctx.param("SRC") else {}


def _manifest(ctx: StageContext) -> list[str]:
    ctx.path_param("SRC")  # fail early without SRC
    text = ctx.param("SHARDS")
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"SHARDS={text!r}: give the number of array tasks, e.g. SHARDS=8")
    n = int(text)
    return [f"{i}/{n}" for i in range(n)]


def _output(item: str, ctx: StageContext) -> Path:
    i, n = item.split("/")
    return _folder(ctx) / ".shards" / f"{i}-of-{n}.done"


def _done(item: str, ctx: StageContext) -> bool:
    """A shard is done when its marker exists and, once every shard has finished, the set is finalized.

    So if the finalizing task died, every item looks unfinished again and a resubmit reruns them all:
    each skips its finished tiles in seconds and one of them finalizes.
    """
    if _json(_output(item, ctx)) is None:  # a marker that does not read is no marker
        return False
    folder = _folder(ctx)
    n = int(item.split("/")[1])
    every = all((folder / ".shards" / f"{i}-of-{n}.done").exists() for i in range(n))
    return _finalized_ok(folder) or not every


def _json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _finalized_ok(folder: Path) -> bool:
    """The finalize summary reads, and the archive and viewer it names are whole (PMTiles: header and the
    directory/data sizes it declares fit in the file)."""
    summary = _json(folder / ".shards" / "finalized")
    if summary is None:
        return False
    if summary.get("pmtiles"):
        archive = Path(str(summary["pmtiles"]))
        try:
            with open(archive, "rb") as f:
                head = f.read(127)
            size = archive.stat().st_size
        except OSError:
            return False
        if len(head) < 127 or head[:7] != b"PMTiles":
            return False
        # v3 header: root dir, metadata, leaf dirs, tile data as (offset, length) uint64 pairs from byte 8
        spans = [struct.unpack_from("<QQ", head, 8 + 16 * k) for k in range(4)]
        if any(off + length > size for off, length in spans):
            return False
    return not summary.get("viewer") or Path(str(summary["viewer"])).is_file()


def output_bytes(item: str, ctx: StageContext) -> int:
    """A rough share of the pyramid for one shard: twice the source's bytes over the shards.

    PNG tiles at the zoom nearest the source's resolution take about 1.5-2x an uncompressed 8-bit
    source (web mercator oversamples at mid latitudes; the lower zooms add a third). Plans import only
    the standard library, so this looks at the file size, not the raster.
    """
    src = ctx.path_param("SRC")
    n = int(item.split("/")[1])
    try:
        size = src.stat().st_size
    except OSError:
        return 0
    return 2 * size // max(1, n)


def memory_bytes(item: str, ctx: StageContext) -> int:
    """Peak memory of one task: about 200 MB per worker process (one 8x8-tile metatile each) + 300 MB."""
    cpus = int(ctx.param("CPUS") or 8)
    return (cpus * 200 + 300) << 20


STAGE = Stage(
    name="tiles",
    summary="XYZ tiles (PNG/WebP), a PMTiles archive and a Leaflet viewer of one raster, in shards",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("cog", "mosaic"),
    output_bytes=output_bytes,
    defaults={"ZOOM": "0-14", "MODE": "auto", "FORMAT": "png", "PMTILES": "yes", "SHARDS": "4"},
    paths=("SRC",),
    derived=_derived,
)
