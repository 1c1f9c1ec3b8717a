"""CLI: ``python -m geohpc cog SRC DST [--blocksize N] [--mem 1G] [--threads N] [--force]`` or ``--check PATH...``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import one_line_errors
from geohpc.products.cog.build import DEFAULT_ZSTD_LEVEL, make_cog
from geohpc.products.cog.layout import validate_cog
from geohpc.util import parse_size


def check(paths: list[str], blocksize: int | None) -> int:
    """Print ``ok PATH`` per valid COG on stdout; raise :class:`InputError` naming the first invalid one."""
    bad: list[str] = []
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such file (check the path)")
        problems = validate_cog(p, blocksize)
        if problems:
            bad.append(f"{p}: not a valid COG: {'; '.join(problems)}")
        else:
            print(f"ok {p}")
    if bad:
        more = f" (and {len(bad) - 1} more invalid)" if len(bad) > 1 else ""
        raise InputError(f"{bad[0]}{more}; rebuild it with python -m geohpc cog SRC DST --force")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and build (or check) COGs; errors are one stderr line and exit 2."""
    ap = argparse.ArgumentParser(
        prog="python -m geohpc cog",
        description="Convert a GeoTIFF (striped or tiled, any band count) into a validated Cloud Optimized GeoTIFF.",
    )
    ap.add_argument("src", nargs="?", help="input raster")
    ap.add_argument("dst", nargs="?", help="output COG (written atomically; temp files beside it)")
    ap.add_argument("--blocksize", type=int, default=512, help="internal tile size (default 512)")
    ap.add_argument("--mem", default="1G", help="memory budget for windows + GDAL cache (default 1G)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default SLURM_CPUS_PER_TASK or all CPUs)")
    ap.add_argument("--compress", default=None, help="ZSTD (default), DEFLATE, LZW or NONE")
    ap.add_argument("--zstd-level", type=int, default=DEFAULT_ZSTD_LEVEL, help="ZSTD level (default 1: fastest)")
    ap.add_argument("--resampling", default=None, help="overview resampling (default mode for class maps, else average)")
    ap.add_argument("--force", action="store_true", help="rebuild even if DST is already a valid COG")
    ap.add_argument("--check", nargs="+", metavar="PATH", help="only validate these files as COGs")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*no geotransform.*")  # reported as our own one-line error

    def work() -> int:
        if args.check:
            return check(args.check, None)
        if not args.src or not args.dst:
            raise ConfigError("give SRC and DST (or --check PATH); see --help")
        try:
            budget = parse_size(args.mem)
        except ValueError as exc:
            raise ConfigError(f"--mem: {exc}") from None
        with one_line_errors(args.dst, fix="check the output path and free space"):
            out = make_cog(args.src, args.dst, blocksize=args.blocksize, compress=args.compress, mem_budget=budget,
                           threads=args.threads, overview_resampling=args.resampling,
                           zstd_level=args.zstd_level, force=args.force)
        print(out)
        return 0

    return run_cli(work, "geohpc.cog")


if __name__ == "__main__":
    sys.exit(main())
