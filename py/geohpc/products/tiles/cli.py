"""``python -m geohpc tiles SRC OUT_DIR --zoom 0-14``: web-mercator XYZ tiles, PMTiles and a viewer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geohpc.errors import ConfigError, run_cli
from geohpc.products.tiles.core import FORMATS, parse_shard, parse_zoom
from geohpc.products.tiles.paint import MODES
from geohpc.util import parse_size

RESAMPLINGS = ("nearest", "bilinear", "cubic", "average", "lanczos")


def _bands(text: str) -> list[int]:
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--bands {text!r}: give 1-based band numbers like 4,3,2") from None
    if not out or any(b < 1 for b in out):
        raise ConfigError(f"--bands {text!r}: give 1-based band numbers like 4,3,2")
    return out


def _percentiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--percentiles {text!r}: give two numbers like 2,98") from None
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"--percentiles {text!r}: need 0 <= low < high <= 100")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate for the docs and tests)."""
    p = argparse.ArgumentParser(
        prog="python -m geohpc tiles",
        description="Cut a raster into web-mercator XYZ tiles (z/x/y.png, XYZ not TMS) with lower zooms "
        "built from their children, optionally one PMTiles archive, and an index.html Leaflet viewer "
        "(legend, opacity, base map, click for values; serve it with python -m geohpc tiles-serve OUT_DIR "
        "for the PMTiles archive and values).",
        epilog="Array jobs: run --shard i/n for i in 0..n-1; the shard that finishes last builds the lower "
        "zooms, the archive and the viewer (or run --finalize by hand). A rerun skips finished tiles.",
    )
    p.add_argument("src", help="source raster (GeoTIFF/COG; any CRS)")
    p.add_argument("out_dir", type=Path, help="output folder for z/x/y tiles, tiles.json, index.html")
    p.add_argument("--zoom", default="0-14", help="zoom range min-max within 0-24 (default 0-14)")
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="classes (colour table), rgb (Byte bands as is), percentile (1 band grey or 3 bands, "
                   "stretched), bands (3 chosen bands stretched), pca (3 principal components); default auto")
    p.add_argument("--bands", default=None, help="1-based bands, e.g. 4,3,2")
    p.add_argument("--percentiles", default="2,98", help="stretch range (default 2,98)")
    p.add_argument("--format", dest="fmt", default="png", choices=FORMATS, help="tile format (default png)")
    p.add_argument("--resampling", default="bilinear", choices=RESAMPLINGS,
                   help="base-zoom warp resampling for continuous data (class maps always nearest)")
    p.add_argument("--pmtiles", action="store_true", help="also pack the tiles into OUT_DIR/<name>.pmtiles")
    p.add_argument("--no-viewer", dest="viewer", action="store_false", help="do not write index.html")
    p.add_argument("--name", default=None, help="layer name shown in the viewer (default: source file stem)")
    p.add_argument("--basemap", default=None, metavar="URL",
                   help="viewer base map, an XYZ URL template like https://host/{z}/{x}/{y}.png shown under the "
                   "layer when it answers (default OpenStreetMap; 'none' for a plain background only)")
    p.add_argument("--skip-empty", action="store_true",
                   help="do not write tiles without any data pixel (gdal2tiles -x); default writes the full set")
    p.add_argument("--processes", type=int, default=None, help="worker processes (default: SLURM_CPUS_PER_TASK or all)")
    p.add_argument("--shard", default=None, metavar="I/N", help="render only shard I of N")
    p.add_argument("--no-finalize", action="store_true", help="with --shard: never run the finalize step")
    p.add_argument("--finalize", dest="finalize_only", action="store_true",
                   help="only build lower zooms, archive and viewer from finished shards (source not read)")
    p.add_argument("--mem", default="512M", help="memory budget for reads (default 512M)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: parse arguments, build the tiles, print a JSON summary on stdout."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def work() -> int:
        from geohpc.products.tiles.build import build, iter_summary_lines

        # values are checked here, not by argparse types, so a mistake is one line and exit 2
        zoom = parse_zoom(args.zoom)
        if args.processes is not None and args.processes < 1:
            raise ConfigError("--processes must be 1 or more")
        try:
            mem = parse_size(args.mem)
        except ValueError as exc:
            raise ConfigError(f"--mem: {exc}") from None
        summary = build(args.src, args.out_dir, zoom=zoom, mode=args.mode,
                        bands=_bands(args.bands) if args.bands else None, fmt=args.fmt,
                        resampling=args.resampling, make_pmtiles=args.pmtiles, viewer=args.viewer,
                        processes=args.processes, shard=parse_shard(args.shard) if args.shard else None,
                        finalize_only=args.finalize_only, no_finalize=args.no_finalize,
                        skip_empty=args.skip_empty, name=args.name, percentiles=_percentiles(args.percentiles),
                        budget=mem, basemap="" if (args.basemap or "").lower() == "none" else args.basemap)
        for line in iter_summary_lines(summary):
            print(line)
        return 0

    return run_cli(work, "geohpc.tiles")


if __name__ == "__main__":
    sys.exit(main())
