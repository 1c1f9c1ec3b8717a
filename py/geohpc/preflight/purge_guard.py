"""purge_guard: find files the work-storage purge will delete soon, and rescue them to a safe place.

A file's age is the newest of its ctime, mtime and atime (the NRIS rule; on LUMI the same reading is
the conservative one). A file is *at risk* when ``PURGE_DAYS - age <= margin``; ``/flash`` paths use
``FLASH_PURGE_DAYS``. Only ``lstat`` is used to look, and copies are made with ``rsync -a
--open-noatime``: this tool never touches access times (dodging the purge that way is forbidden).

Usage::

    python -m geohpc purge-guard --site saga list          # at-risk files grouped by folder
    python -m geohpc purge-guard --site saga rescue        # rsync them to RESCUE_DIR, verify

The rescue target is ``RESCUE_DIR``, else ``PROJECT_DIR/rescue``, and never a folder under
``PROJECT_SPACE`` (NRIS ``/cluster/projects``: tiny quota, rsync fails there; emb-betzy.md), with paths
resolved (symlinks included). Where no safe target exists the rescue refuses and says to ``make fetch``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from geohpc.errors import ConfigError, ServiceError, run_cli
from geohpc.util import human_bytes

DAY = 86400.0
DEFAULT_MARGIN_DAYS = 7.0


@dataclass(frozen=True)
class AtRisk:
    """One file and how long it has left before the purge may delete it."""

    path: Path
    size: int
    age_days: float
    days_left: float


def age_days(st: os.stat_result, now: float) -> float:
    """Age in days by the NRIS rule: time since the newest of ctime, mtime and atime."""
    return (now - max(st.st_ctime, st.st_mtime, st.st_atime)) / DAY


def purge_days_for(path: Path, site: Mapping[str, str]) -> float | None:
    """The purge age (days) that applies to ``path``: FLASH_PURGE_DAYS under /flash, else PURGE_DAYS."""
    key = "FLASH_PURGE_DAYS" if str(path).startswith("/flash") and site.get("FLASH_PURGE_DAYS") else "PURGE_DAYS"
    value = str(site.get(key, "")).strip()
    try:
        days = float(value)
    except ValueError:
        return None
    return days if days > 0 else None


def iter_files(paths: Iterable[Path], limit: int = 2_000_000) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``paths`` (files or folders) with their ``lstat``; symlinks are not followed."""
    seen = 0
    for root in paths:
        try:
            st = os.lstat(root)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield os.fspath(root), st
            seen += 1
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        stack = [os.fspath(root)]
        while stack:
            try:
                it = os.scandir(stack.pop())
            except (FileNotFoundError, PermissionError):
                continue
            with it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        try:
                            fst = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        yield entry.path, fst
                        seen += 1
                        if seen >= limit:
                            return


def scan(paths: Iterable[Path], purge_days: float, margin_days: float = DEFAULT_MARGIN_DAYS,
         now: float | None = None) -> list[AtRisk]:
    """Files under ``paths`` with at most ``margin_days`` left before a ``purge_days`` purge."""
    now = time.time() if now is None else now
    cutoff = now - (purge_days - margin_days) * DAY  # at risk: newest of c/m/atime before this
    out = []
    for p, st in iter_files(paths):
        if max(st.st_ctime, st.st_mtime, st.st_atime) <= cutoff:
            age = age_days(st, now)
            out.append(AtRisk(Path(p), st.st_size, age, purge_days - age))
    return out


def group_by_folder(files: Iterable[AtRisk]) -> dict[Path, tuple[int, int, float]]:
    """``{folder: (count, bytes, fewest days left)}`` sorted by fewest days left."""
    groups: dict[Path, list[AtRisk]] = {}
    for f in files:
        groups.setdefault(f.path.parent, []).append(f)
    rows = {d: (len(fs), sum(f.size for f in fs), min(f.days_left for f in fs)) for d, fs in groups.items()}
    return dict(sorted(rows.items(), key=lambda kv: (kv[1][2], str(kv[0]))))


def summary(files: list[AtRisk]) -> str:
    """``'3 files, 1.2 GiB in 2 folders, 1.5 days left at most'``-style one-liner."""
    if not files:
        return "no files at risk"
    folders = len({f.path.parent for f in files})
    soonest = min(f.days_left for f in files)
    left = "already past the purge age" if soonest <= 0 else f"{soonest:.1f} days left"
    return f"{len(files)} files, {human_bytes(sum(f.size for f in files))} in {folders} folders ({left})"


@functools.cache
def _rsync_noatime() -> list[str]:
    try:
        out = subprocess.run(["rsync", "--help"], capture_output=True, text=True, check=False).stdout
    except OSError as exc:
        raise ServiceError("rsync not found: install rsync or load its module") from exc
    return ["--open-noatime"] if "--open-noatime" in out else []


def rescue(files: list[AtRisk], root: Path, dest: Path) -> int:
    """Copy ``files`` (all under ``root``) to ``dest`` with ``rsync -a`` (no --delete) and verify.

    Verification is an ``rsync --checksum --dry-run --itemize-changes`` that must list nothing, plus a
    size comparison of every copied file. Returns the number of files copied.
    """
    rel = []
    for f in files:
        try:
            rel.append(str(f.path.relative_to(root)))
        except ValueError as exc:
            raise ConfigError(f"{f.path} is outside {root}: rescue one root at a time (--root)") from exc
    if not rel:
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".files", delete=False) as lst:
        lst.write("\n".join(rel) + "\n")
    base = ["rsync", "-a", *_rsync_noatime(), f"--files-from={lst.name}", f"{root}/", f"{dest}/"]
    try:
        run = subprocess.run(base, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise ServiceError(f"rsync to {dest} failed ({run.returncode}): {run.stderr.strip()[:300]}")
        check = subprocess.run([*base[:2], "--checksum", "--dry-run", "--itemize-changes", *base[2:]],
                               capture_output=True, text=True, check=False)
    finally:
        os.unlink(lst.name)
    changed = [ln for ln in check.stdout.splitlines() if ln.strip() and not ln.startswith(".d")]
    if check.returncode != 0 or changed:
        raise ServiceError(f"verify of {dest} failed: rsync --checksum still lists {changed[:3]}; rerun make rescue")
    for r, f in zip(rel, files, strict=True):
        if (dest / r).stat().st_size != f.size:
            raise ServiceError(f"verify failed: {dest / r} size differs from {f.path}; rerun make rescue")
    return len(rel)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def under_space(path: Path, space: str) -> bool:
    """True when ``path`` is ``space`` or below it, as given or with symlinks resolved (either side)."""
    if not space:
        return False
    sp, p = Path(os.path.normpath(space)), Path(os.path.normpath(path))
    return any(s == q or s in q.parents for s in (sp, _real(sp)) for q in (p, _real(p)))


def rescue_target(site: Mapping[str, str], site_name: str, dest: Path | None, resolve: Callable[[str], Path | None]) -> Path:
    """Where ``rescue`` may write: ``dest``, else RESCUE_DIR, else PROJECT_DIR/rescue; never under PROJECT_SPACE.

    Raises ConfigError (one line, suggesting ``make fetch``) when no safe target exists.
    """
    space = str(site.get("PROJECT_SPACE", "") or "")
    fetch = f"bring the results home instead: make fetch SITE={site_name} STAGE=<stage>"
    if dest is not None:
        if under_space(dest, space):
            raise ConfigError(f"--dest {dest} is under PROJECT_SPACE={space}, where the guide says never to write data: {fetch}")
        return dest
    rescue_dir, project = resolve("RESCUE_DIR"), resolve("PROJECT_DIR")
    for key, path in (("RESCUE_DIR", rescue_dir), ("PROJECT_DIR", project / "rescue" if project else None)):
        if path is None:
            continue
        if not under_space(path, space):
            return path
        if key == "RESCUE_DIR":
            raise ConfigError(f"RESCUE_DIR={path} (sites/{site_name}.env) resolves under PROJECT_SPACE={space}: "
                              f"never rescue there; set RESCUE_DIR to a safe space, or {fetch}")
    why = (f"RESCUE_DIR is empty and PROJECT_DIR is under PROJECT_SPACE={space}" if project
           else "RESCUE_DIR and PROJECT_DIR are empty")
    raise ConfigError(f"site {site_name} has no safe rescue target ({why}; the guide says never to write data there): {fetch}")


def main(argv: list[str] | None = None) -> int:
    """CLI: ``list`` at-risk files grouped by folder, or ``rescue`` them to PROJECT_DIR."""
    ap = argparse.ArgumentParser(prog="python -m geohpc purge-guard", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["list", "rescue"], nargs="?", default="list")
    ap.add_argument("--site", default="local", help="site name (sites/<name>.env)")
    ap.add_argument("--root", type=Path, default=None, help="folder to scan (default: the site's SCRATCH)")
    ap.add_argument("--dest", type=Path, default=None,
                    help="rescue target (default: RESCUE_DIR, else PROJECT_DIR/rescue; never under PROJECT_SPACE)")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN_DAYS, help="days of warning (default 7)")
    ap.add_argument("--json", action="store_true", help="print the folders as JSON")
    args = ap.parse_args(argv)

    def work() -> int:
        from geohpc.preflight.context import REPO, load_site

        site, _ = load_site(args.site)

        def site_path(key: str) -> Path | None:
            value = site.get(key, "")
            return None if not value else (REPO / Path(value).expanduser()).resolve()

        dest = rescue_target(site, args.site, args.dest, site_path) if args.action == "rescue" else None
        root = args.root or site_path("SCRATCH")
        if root is None or not root.exists():
            raise ConfigError(f"scan root {root!s} is not on this machine: run make purge-guard on the site's "
                              f"login node, or fix SCRATCH in sites/{args.site}.env (or give --root)")
        days = purge_days_for(root, site)
        if days is None:
            print(f"purge-guard: site {args.site} has no PURGE_DAYS: nothing is purged", file=sys.stderr)
            return 0
        files = scan([root], days, args.margin)
        groups = group_by_folder(files)
        if args.json:
            print(json.dumps([{"folder": str(d), "files": n, "bytes": b, "days_left": round(left, 2)}
                              for d, (n, b, left) in groups.items()], indent=2))
        else:
            for d, (n, b, left) in groups.items():
                print(f"{left:7.1f}d  {n:6d} files  {human_bytes(b):>10}  {d}")
            print(f"purge-guard: {summary(files)} (purge after {days:g} days, margin {args.margin:g})",
                  file=sys.stderr)
        if dest is not None and files:
            n = rescue(files, root, dest.expanduser())
            print(f"purge-guard: rescued and verified {n} files into {dest}", file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.purge_guard")


if __name__ == "__main__":
    sys.exit(main())
