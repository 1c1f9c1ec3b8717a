"""cache_leftovers: zero-byte files and ``*_download`` temporaries a killed download left in a cache.

sure2.md bug 7: an interrupted CDS API download left ``*_download`` files and 0-byte ERA5-Land files;
xarray could not open them, and every later job that trusted the cache failed or, worse, skipped the
month. The folders scanned are the stage's inputs, ``CACHE_DIRS`` (site value or make line, comma list)
and ``<SCRATCH>/cache``. Nothing is deleted: the fix names the files to remove.
"""

from __future__ import annotations

import os
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok

NAME = "cache_leftovers"
DESCRIPTION = "0-byte files and *_download / *.part leftovers of killed downloads in caches and stage inputs"
STAGES = "all"
LEFTOVER_SUFFIXES = ("_download", ".part", ".partial", ".crdownload", ".download")
MAX_ENTRIES = 200_000  # a scan stops here: preflight stays quick on a cache of millions of files


def folders(ctx: PreflightContext) -> list[Path]:
    """The caches to scan (existing folders only, each once)."""
    raw = [*ctx.inputs]
    for value in (ctx.params.get("CACHE_DIRS", ""), ctx.site.get("CACHE_DIRS", "")):
        raw += [Path(p) if Path(p).is_absolute() else ctx.work / p for p in value.split(",") if p.strip()]
    raw.append(ctx.work / "cache")
    seen: dict[Path, None] = {}
    for p in raw:
        if p.is_dir():
            seen.setdefault(p.resolve(), None)
    return list(seen)


def leftovers(folder: Path, budget: int) -> tuple[list[Path], int]:
    """(leftover files, entries looked at) under ``folder``, at most ``budget`` entries."""
    found: list[Path] = []
    looked = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            looked += 1
            if looked > budget:
                return found, looked
            p = Path(root) / name
            try:
                empty = p.stat().st_size == 0
            except OSError:
                continue
            if name.endswith(LEFTOVER_SUFFIXES) or (empty and not name.startswith(".")):
                found.append(p)
    return found, looked


def check(ctx: PreflightContext) -> Result:
    """Fail when a cache holds 0-byte files or download temporaries."""
    scanned = folders(ctx)
    if not scanned:
        return ok("no cache or input folder to scan")
    found: list[Path] = []
    budget = MAX_ENTRIES
    for folder in scanned:
        got, looked = leftovers(folder, budget)
        found += got
        budget -= looked
        if budget <= 0:
            break
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        return fail(f"{len(found)} leftover(s) of killed downloads (0-byte or *_download files): {shown}; jobs that "
                    "trust the cache fail to open them or skip them (sure2.md bug 7)",
                    f"remove them and download again: find {' '.join(str(p) for p in scanned[:2])} "
                    "\\( -name '*_download' -o -size 0 \\) -type f -print -delete")
    return ok(f"{len(scanned)} cache/input folder(s): no 0-byte or *_download files")
