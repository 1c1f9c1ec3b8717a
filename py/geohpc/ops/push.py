"""``make push``: rsync one model or checkpoint (a file or a folder) to the site's ``MODELS_DIR``.

Never deletes, and never overwrites a different remote file silently: rsync compares contents
(``--checksum``); an identical file is left as it is, a different one is replaced and the old one KEPT
beside it as ``<name>.<UTC time>`` (``--backup --suffix``). The copy lands under a temporary name and is
renamed when complete (rsync's default), so a job never reads half a model. ``--dry-run`` prints the
exact commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geohpc.core.site import load_site
from geohpc.errors import InputError, run_cli
from geohpc.ops import remote


def push(site_name: str, file: Path, *, dry_run: bool = False, ssh_config: str = "",
         cli: dict[str, str] | None = None) -> str:
    """Send ``file`` to ``MODELS_DIR``; returns the summary (or, with ``dry_run``, the commands)."""
    site = load_site(site_name, cli=cli)
    if not file.exists():
        raise InputError(f"FILE={file} does not exist here: give the model or checkpoint to push")
    models = remote.resolve(site, remote.require(site, "MODELS_DIR", "where models and checkpoints go"))
    remote.refuse_project_space(site, "MODELS_DIR", models)
    suffix = f".{remote.stamp()}"
    rsync = ["rsync", "-rlpt", "--checksum", "--backup", f"--suffix={suffix}", "--itemize-changes"]
    if remote.is_local(site):
        where, mkdir, dest = "this machine", ["mkdir", "-p", "--", models], f"{models}/"
    else:
        where = remote.alias(site)
        mkdir = [*remote.ssh_argv(site, ssh_config), where, "mkdir", "-p", "--", models]
        rsync += ["-e", remote.rsync_shell(site, ssh_config)]
        dest = f"{where}:{models}/"
    rsync += [str(file).rstrip("/"), dest]
    if dry_run:
        return f"{remote.show(mkdir)}\n{remote.show(rsync)}\npush: dry run, nothing changed on {where}"
    remote.prepare_control(site)
    remote.run(mkdir, "push", where)
    new, updated = remote.itemized(remote.run(rsync, "push", where).stdout)
    lines = [f"push: {file.name} -> {where}:{models}/: {len(new)} new, {len(updated)} replaced"]
    lines += [f"  replaced {u} (the old one is kept as {u}{suffix})" for u in updated]
    if not new and not updated:
        lines[0] += " (the site already has the same bytes)"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc push --site lumi --file model.pt [--dry-run]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc push", description=__doc__.splitlines()[0])
    remote.add_site_args(ap)
    ap.add_argument("--file", type=Path, default=None, help="the model or checkpoint, file or folder (default: FILE= of the make line)")
    args = ap.parse_args(argv)

    def work() -> int:
        cli = remote.cli_values(args.set)
        file = args.file or Path(cli.get("FILE", ""))
        if not str(file) or str(file) == ".":
            raise InputError("no FILE given: make push SITE=x FILE=path/to/model.pt")
        print(push(args.site, file, dry_run=args.dry_run, ssh_config=args.ssh_config, cli=cli))
        return 0

    return run_cli(work, "geohpc.push")


if __name__ == "__main__":
    sys.exit(main())
