"""``make deploy``: rsync the repo to ``$REMOTE:$REMOTE_DIR`` over ssh, safely.

Code removed locally is removed remotely (``--delete``), but ``data/``, ``outputs/``, ``logs/``, ``runs/``
and ``.venv`` are excluded, and rsync never deletes excluded paths (no ``--delete-excluded``), so nothing
there is ever deleted or overwritten. Secrets (keys, credentials, local env overrides) never leave.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from geohpc.core.site import REPO, load_site, parse_makeflags
from geohpc.errors import ConfigError, ServiceError, run_cli
from geohpc.util import redact

# no trailing slash: a remote data/ that is a symlink (to project storage, say) is protected too
PROTECTED = ("data", "outputs", "logs", "runs", ".venv", "project", ".geohpc-deployed")
MARKER = ".geohpc-deployed"  # written remotely after each deploy: this folder is a deployed checkout
EXCLUDES = (
    ".git", "__pycache__/", "*.pyc", ".pytest_cache/", ".ruff_cache/", "*.egg-info/", "node_modules/",
    "bench/out/", "build/",
    # secrets: keys, credentials and local overrides never leave this machine
    "*.pem", "*.key", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".env", "*.local.env", ".netrc",
    "credentials*", ".aws/", "*.secret", "secrets/", ".ssh/",
)
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


def check_remote_dir(remote_dir: str) -> None:
    """Refuse an empty, root or home-like REMOTE_DIR: ``--delete`` there would wipe other files."""
    clean = remote_dir.rstrip("/")
    if not remote_dir or clean in ("", "~", ".", "..") or remote_dir == "/" or ".." in Path(remote_dir).parts:
        raise ConfigError(
            f"REMOTE_DIR={remote_dir!r} is empty, '/' or unsafe: give the repo its own folder, e.g. REMOTE_DIR=/scratch/<project>/geohpc"
        )
    if len(Path(clean).parts) < 3 and clean.startswith("/"):
        raise ConfigError(f"REMOTE_DIR={remote_dir!r} is too close to '/': give the repo its own folder below your project")


def check_not_data_dir(remote_dir: str, site_values: dict[str, str]) -> None:
    """Refuse a REMOTE_DIR that is the site's SCRATCH or PROJECT_DIR, or a folder above them."""
    target = Path(remote_dir.rstrip("/"))
    for key in ("SCRATCH", "PROJECT_DIR"):
        value = site_values.get(key, "")
        if value.startswith("/") and (Path(value) == target or target in Path(value).parents):
            raise ConfigError(
                f"REMOTE_DIR={remote_dir} is the site's {key} (or above it): deploy --delete would remove data there; "
                f"use a folder of its own, e.g. REMOTE_DIR={value.rstrip('/')}/geohpc"
            )


def remote_guard_command(remote_dir: str) -> str:
    """A remote shell test that prints NOT_A_CHECKOUT when REMOTE_DIR holds files but no geohpc checkout."""
    d = shlex.quote(remote_dir.rstrip("/"))
    keep = "|".join(p.replace(".", "\\.") for p in PROTECTED)
    return (f"if [ -d {d} ] && [ -n \"$(ls -A {d} | grep -vxE '{keep}')\" ] && ! [ -f {d}/{MARKER} ] "
            f"&& ! [ -f {d}/sites/local.env ]; then echo NOT_A_CHECKOUT; fi")


def rsync_command(src: Path, remote: str, remote_dir: str, *, dry_run: bool, ssh_config: str = "") -> list[str]:
    """The rsync argument list."""
    ssh = ["ssh", "-o", "BatchMode=yes"]
    if ssh_config:
        ssh += ["-F", ssh_config]
    # --checksum: an edit that keeps the size within the same second must still travel (code is small)
    cmd = ["rsync", "-rlptz", "--checksum", "--delete", "--itemize-changes", "--stats", "-e", shlex.join(ssh)]
    if dry_run:
        cmd.append("--dry-run")
    # the tile viewer's Leaflet (installed by make setup) travels: compute nodes have no npm registry
    cmd.append("--include=/viewer/node_modules/***")
    for pattern in PROTECTED + EXCLUDES:
        cmd.append(f"--exclude={pattern}")
    cmd += [f"{src}/", f"{remote}:{remote_dir.rstrip('/')}/"]
    return cmd


def summarize(itemized: str) -> str:
    """Count what rsync's ``--itemize-changes`` lines say: new, updated, deleted files."""
    new = updated = deleted = 0
    changed: list[str] = []
    for line in itemized.splitlines():
        if line.startswith("*deleting"):
            deleted += 1
            changed.append("- " + line.split(None, 1)[1])
        elif re.match(r"^[<>ch.][fdLDS]", line) and line[1] == "f":
            if "+++++++" in line[:12]:
                new += 1
                changed.append("+ " + line[12:])
            else:
                updated += 1
                changed.append("~ " + line[12:])
    shown = "\n".join(f"  {c}" for c in changed[:40])
    more = f"\n  ... and {len(changed) - 40} more" if len(changed) > 40 else ""
    return f"{new} new, {updated} updated, {deleted} deleted" + (f"\n{shown}{more}" if changed else "")


def deploy(
    site_name: str, *, dry_run: bool = False, ssh_config: str = "", src: Path = REPO, cli: dict[str, str] | None = None
) -> str:
    """Rsync ``src`` to the site's REMOTE:REMOTE_DIR; returns the summary."""
    site = load_site(site_name, cli=cli)
    remote, remote_dir = site.get("REMOTE"), site.get("REMOTE_DIR")
    if not remote or not ALIAS_RE.match(remote):
        raise ConfigError(f"REMOTE={remote!r} in {site.path.name} is not an ssh alias: pass REMOTE=<alias from ~/.ssh/config>")
    check_remote_dir(remote_dir)
    check_not_data_dir(remote_dir, site.values)
    cmd = rsync_command(src, remote, remote_dir, dry_run=dry_run, ssh_config=ssh_config)
    ssh = ["ssh", "-o", "BatchMode=yes", *(["-F", ssh_config] if ssh_config else []), remote]
    if "NOT_A_CHECKOUT" in _run([*ssh, remote_guard_command(remote_dir)], "deploy").stdout:
        raise ConfigError(
            f"{remote}:{remote_dir} holds files but no geohpc checkout (no sites/local.env): deploy --delete would "
            "remove them; choose an empty folder or the repo's own folder as REMOTE_DIR"
        )
    if not dry_run:  # make the target folder first (rsync creates only the last level)
        _run([*ssh, "mkdir", "-p", "--", remote_dir], "deploy")
    proc = _run(cmd, "deploy")
    if not dry_run:
        _run([*ssh, f"date -u +%FT%TZ > {shlex.quote(remote_dir.rstrip('/') + '/' + MARKER)}"], "deploy")
    what = "would change" if dry_run else "changed"
    return f"deploy {site.name} -> {remote}:{remote_dir} ({what}): {summarize(proc.stdout)}"


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = redact((proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout).strip() else "")
        raise ServiceError(f"{what}: {cmd[0]} exited {proc.returncode}: {err} (check 'ssh <alias>' works)")
    return proc


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc deploy --site lumi [--dry-run] [--ssh-config FILE]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--site", required=True)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--ssh-config", default=os.environ.get("SSH_CONFIG", ""))
    ap.add_argument("--src", type=Path, default=REPO, help="folder to deploy (default: this repo)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as if given on the make line")
    args = ap.parse_args(argv)

    def work() -> int:
        cli = parse_makeflags(os.environ.get("MAKEFLAGS", ""))
        cli.update(kv.split("=", 1) for kv in args.set if "=" in kv)
        print(deploy(args.site, dry_run=args.dry_run, ssh_config=args.ssh_config, src=args.src, cli=cli))
        return 0

    return run_cli(work, "geohpc.deploy")


if __name__ == "__main__":
    sys.exit(main())
