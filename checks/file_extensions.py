"""file_extensions: .tif vs .tiff (and case) mismatches between the manifest and the files on disk."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "file_extensions"
DESCRIPTION = ".tif vs .tiff and case mismatches between a manifest and the files on disk"
STAGES = "all"
TIFF = (".tif", ".tiff")


def _norm(suffix: str) -> str:
    return ".tif" if suffix.lower() in TIFF else suffix.lower()


def _variant(path: Path, listing: dict[Path, list[str]]) -> str | None:
    names = listing.setdefault(path.parent, sorted(os.listdir(path.parent)) if path.parent.is_dir() else [])
    want_stem, want_ext = path.stem.lower(), _norm(path.suffix)
    for name in names:
        p = Path(name)
        if p.stem.lower() == want_stem and _norm(p.suffix) == want_ext and name != path.name:
            return name
    return None


def check(ctx: PreflightContext) -> Result:
    """Fail when manifest items are missing but a .tif/.tiff or case variant exists; warn on mixed inputs."""
    listing: dict[Path, list[str]] = {}
    mismatched = []
    files = [Path(it) for it in ctx.items if Path(it).suffix]
    files = [p if p.is_absolute() else ctx.work / p for p in files]
    for p in files:
        if not p.exists():
            alt = _variant(p, listing)
            if alt:
                mismatched.append((p, alt))
    if mismatched:
        p, alt = mismatched[0]
        return fail(f"{len(mismatched)} of {len(files)} manifest items are missing but exist under another "
                    f"extension or case: {p.name} -> {alt} in {p.parent}",
                    "rebuild the manifest from the files on disk (make submit re-plans it), or rename with one "
                    "extension: for f in *.tiff; do mv \"$f\" \"${f%.tiff}.tif\"; done")
    dirs = [d for d in ctx.inputs if d.is_dir()]
    for d in dirs:
        exts = Counter(Path(n).suffix for n in os.listdir(d) if Path(n).suffix.lower() in TIFF)
        if len(exts) > 1:
            desc = ", ".join(f"{n} {e}" for e, n in exts.most_common())
            return warn(f"{d} mixes {desc}: a '*{exts.most_common(1)[0][0]}' glob misses the others",
                        "use one extension (rename), or match case-insensitively (*.tif *.tiff *.TIF)")
    item_exts = Counter(p.suffix for p in files if p.suffix.lower() in TIFF)
    if len(item_exts) > 1:
        return warn(f"manifest mixes {', '.join(f'{n} {e}' for e, n in item_exts.most_common())}",
                    "use one extension for all items")
    return ok(f"{len(files)} manifest paths and {len(dirs)} input folders agree on extensions")
