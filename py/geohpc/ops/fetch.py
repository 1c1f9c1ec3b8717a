"""``make fetch``: bring a stage's results back from a site into ``fetched/<site>/<stage>/``.

rsync from ``<SCRATCH>/outputs/<stage>/`` (or ``OUT_DIR``) on the site, with include filters:
``ONLY=reports`` brings only ``*.json *.html *.csv *.png *.md *.txt`` (folders kept), ``ONLY='*.tif,*.json'``
the files matching those globs. Never ``--delete``; a local file that differs from the site's is kept as
``<name>.<UTC time>`` before the new one takes its name (``--backup --suffix``). ``--dry-run`` prints the
exact command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geohpc.core.site import NAME_RE, REPO, load_site
from geohpc.errors import ConfigError, run_cli
from geohpc.ops import remote

REPORTS = ("*.json", "*.html", "*.csv", "*.png", "*.md", "*.txt")
FETCHED = REPO / "fetched"


def filters(only: str) -> list[str]:
    """rsync filter options for ``ONLY=`` (empty: everything)."""
    if not only:
        return []
    globs = list(REPORTS) if only == "reports" else [g.strip() for g in only.split(",") if g.strip()]
    if not globs:
        raise ConfigError(f"ONLY={only!r}: give 'reports' or comma-separated globs, e.g. ONLY='*.json,*.tif'")
    return ["--include=*/", *(f"--include={g}" for g in globs), "--exclude=*"]


def fetch(site_name: str, stage: str, *, only: str = "", out_dir: str = "", dest: Path | None = None,
          dry_run: bool = False, ssh_config: str = "", cli: dict[str, str] | None = None) -> str:
    """rsync the stage's output folder from the site into ``dest``; returns the summary or the command."""
    if not NAME_RE.match(stage or ""):
        raise ConfigError(f"STAGE={stage!r} is not a stage name: give STAGE=<stage> (make fetch SITE=x STAGE=y)")
    site = load_site(site_name, cli=cli)
    scratch = remote.resolve(site, remote.require(site, "SCRATCH", "outputs/ lives under it"))
    source = remote.site_path(out_dir, scratch) if out_dir else f"{scratch}/outputs/{stage}"
    dest = dest or FETCHED / site.name / stage
    suffix = f".{remote.stamp()}"
    rsync = ["rsync", "-rlpt", "--backup", f"--suffix={suffix}", "--itemize-changes", *filters(only)]
    if remote.is_local(site):
        where = "this machine"
        rsync += [f"{source}/", f"{dest}/"]
    else:
        where = remote.alias(site)
        rsync += ["-e", remote.rsync_shell(site, ssh_config), f"{where}:{source}/", f"{dest}/"]
    if dry_run:
        return f"{remote.show(rsync)}\nfetch: dry run, nothing changed"
    remote.prepare_control(site)
    dest.mkdir(parents=True, exist_ok=True)
    new, updated = remote.itemized(remote.run(rsync, "fetch", where).stdout)
    lines = [f"fetch: {where}:{source}/ -> {dest}/: {len(new)} new, {len(updated)} updated"]
    lines += [f"  updated {u} (your copy is kept as {u}{suffix})" for u in updated]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc fetch --site saga --stage validate [--only reports] [--out-dir DIR]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc fetch", description=__doc__.splitlines()[0])
    remote.add_site_args(ap)
    ap.add_argument("--stage", required=True)
    ap.add_argument("--only", default=None, help="'reports' or comma-separated globs (default: ONLY= of the make line)")
    ap.add_argument("--out-dir", default=None,
                    help="the stage's OUT_DIR on the site (default: OUT_DIR= of the make line, else <SCRATCH>/outputs/<stage>)")
    ap.add_argument("--dest", type=Path, default=None, help="local folder (default fetched/<site>/<stage>)")
    args = ap.parse_args(argv)

    def work() -> int:
        cli = remote.cli_values(args.set)  # ONLY= and OUT_DIR= come from the make line, never through a shell
        only = cli.get("ONLY", "") if args.only is None else args.only
        out_dir = cli.get("OUT_DIR", "") if args.out_dir is None else args.out_dir
        print(fetch(args.site, args.stage, only=only, out_dir=out_dir, dest=args.dest, dry_run=args.dry_run,
                    ssh_config=args.ssh_config, cli=cli))
        return 0

    return run_cli(work, "geohpc.fetch")


if __name__ == "__main__":
    sys.exit(main())
