"""``make deploy``: rsync the repo to ``$REMOTE:$REMOTE_DIR`` over ssh, safely.

What travels is an ALLOW-LIST: the files git tracks in the checkout (``git ls-files``), plus the tile
viewer's vendored JS (``viewer/node_modules``, installed by make setup: compute nodes have no npm). They are
staged into a temporary tree (hard links, or copies across file systems) and that tree is rsynced, so an
untracked file (a key, a token, an ``.envrc``) can never leave, whatever its name.

``--delete`` removes only files an earlier deploy put there and git no longer tracks: each deploy ships its
list (``.geohpc-deployed.files``), and the next one marks just those paths deletable (rsync ``R`` rules)
and protects everything else (``P *``): the site's own files (``.env``, notes, caches, ``*.local.env``) are
never deleted. The top-level ``/data /outputs /logs /runs /.venv /project`` are excluded, anchored (a nested
``py/pkg/data/`` travels), and so neither sent nor touched.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from geohpc.core.site import REPO, Site, load_site
from geohpc.errors import ConfigError, run_cli
from geohpc.ops import remote as ssh_io

# anchored at the repo root; no trailing slash: a remote data/ that is a symlink (to project storage) is protected too
PROTECTED = ("data", "outputs", "logs", "runs", ".venv", "project", ".geohpc-deployed")
MARKER = ".geohpc-deployed"  # written remotely after each deploy: this folder is a deployed checkout
MANIFEST = ".geohpc-deployed.files"  # shipped with each deploy: the files it put there
VENDORED = ("viewer/node_modules",)  # untracked but shipped (make setup installs them; no npm on compute nodes)
ALIAS_RE = ssh_io.ALIAS_RE


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


def rsync_command(src: Path, remote: str, remote_dir: str, *, dry_run: bool, ssh_config: str = "",
                  site: Site | None = None, rules: Path | None = None) -> list[str]:
    """The rsync argument list that mirrors the staged tree ``src`` onto ``remote:remote_dir``.

    ``rules`` is the filter file of :func:`delete_rules`; without it nothing on the remote is deleted.
    """
    # --checksum: an edit that keeps the size within the same second must still travel (code is small)
    cmd = ["rsync", "-rlptz", "--checksum", "--delete", "--itemize-changes", "--stats",
           "-e", ssh_io.rsync_shell(site, ssh_config)]
    if dry_run:
        cmd.append("--dry-run")
    cmd += [f"--exclude=/{p}" for p in PROTECTED]  # excluded: never sent, never deleted
    cmd.append(f"--filter=merge {rules}" if rules else "--filter=P *")
    cmd += [f"{src}/", f"{remote}:{remote_dir.rstrip('/')}/"]
    return cmd


def _pattern(path: str) -> str:
    """``path`` as a literal rsync pattern (a backslash escapes only in a pattern with a wildcard)."""
    return "".join(f"\\{c}" if c in "*?[\\" else c for c in path) if any(c in path for c in "*?[") else path


def delete_rules(previous: list[str], current: list[str]) -> str:
    """rsync filter rules: the files the last deploy shipped that are no longer shipped may go; nothing else."""
    kept = {str(p) for f in current for p in Path(f).parents}
    gone = sorted(f for f in set(previous) - set(current) if f and not f.startswith(tuple(f"{v}/" for v in VENDORED)))
    dirs = sorted({str(p) for f in gone for p in Path(f).parents if str(p) != "."} - kept)
    lines = [f"R /{_pattern(f)}" for f in gone] + [f"R /{_pattern(d)}/" for d in dirs] + ["P *"]
    return "\n".join(lines) + "\n"


def _git(src: Path, *args: str) -> list[str]:
    proc = subprocess.run(["git", "-C", str(src), *args, "-z"], capture_output=True, text=True)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed"
        raise ConfigError(f"{src} is not a git checkout ({why}): deploy ships the files git tracks; deploy from a clone")
    return [f for f in proc.stdout.split("\0") if f]


def allowed_files(src: Path) -> list[str]:
    """The allow-list: files git tracks under ``src`` (present in the working tree), plus the vendored JS."""
    files = [f for f in _git(src, "ls-files", "--cached") if (src / f).is_symlink() or (src / f).is_file()]
    for vendored in VENDORED:
        for root, _dirs, names in os.walk(src / vendored):
            files += [os.path.relpath(os.path.join(root, n), src) for n in names]
    return files


def stage_tree(src: Path, files: list[str], stage: Path) -> None:
    """Hard-link (or copy, across file systems) ``files`` of ``src`` into ``stage``; symlinks stay symlinks."""
    for rel in files:
        source, target = src / rel, stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def summarize(itemized: str) -> str:
    """Count what rsync's ``--itemize-changes`` lines say: new, updated, deleted files."""
    new = updated = deleted = 0
    changed: list[str] = []
    for line in itemized.splitlines():
        if line[12:] == MANIFEST:  # deploy's own list, not the user's code
            continue
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
    """Rsync the allow-listed files of ``src`` to the site's REMOTE:REMOTE_DIR; returns the summary."""
    site = load_site(site_name, cli=cli)
    remote, remote_dir = ssh_io.alias(site), site.get("REMOTE_DIR")
    check_remote_dir(remote_dir)
    check_not_data_dir(remote_dir, site.values)
    files = allowed_files(src)
    untracked = _git(src, "ls-files", "--others", "--exclude-standard")
    ssh_io.prepare_control(site)  # even a dry run connects (the guard, rsync --dry-run)
    ssh = [*ssh_io.ssh_argv(site, ssh_config), remote]
    manifest = shlex.quote(f"{remote_dir.rstrip('/')}/{MANIFEST}")
    probe = f"{remote_guard_command(remote_dir)}; if [ -f {manifest} ]; then cat -- {manifest}; fi"
    answer = ssh_io.run([*ssh, probe], "deploy", remote).stdout.splitlines()
    if "NOT_A_CHECKOUT" in answer:
        raise ConfigError(
            f"{remote}:{remote_dir} holds files but no geohpc checkout (no sites/local.env): deploy --delete would "
            "remove them; choose an empty folder or the repo's own folder as REMOTE_DIR"
        )
    with tempfile.TemporaryDirectory(prefix="geohpc-deploy-") as tmp:
        stage = Path(tmp) / "tree"
        stage.mkdir()
        stage_tree(src, files, stage)
        (stage / MANIFEST).write_text("".join(f"{f}\n" for f in files))
        rules = Path(tmp) / "rules"
        rules.write_text(delete_rules(answer, files))
        cmd = rsync_command(stage, remote, remote_dir, dry_run=dry_run, ssh_config=ssh_config, site=site, rules=rules)
        if not dry_run:  # make the target folder first (rsync creates only the last level)
            ssh_io.run([*ssh, "mkdir", "-p", "--", remote_dir], "deploy", remote)
        proc = ssh_io.run(cmd, "deploy", remote)
    if not dry_run:
        ssh_io.run([*ssh, f"date -u +%FT%TZ > {shlex.quote(remote_dir.rstrip('/') + '/' + MARKER)}"], "deploy", remote)
    what = "would change" if dry_run else "changed"
    lines = [f"deploy {site.name} -> {remote}:{remote_dir} ({what}): {summarize(proc.stdout)}"]
    if untracked:
        shown = ", ".join(untracked[:3]) + (", ..." if len(untracked) > 3 else "")
        lines.append(f"  {len(untracked)} untracked files stay here ({shown}): deploy ships what git tracks; "
                     "git add what should travel")
    if dry_run:
        lines.insert(0, ssh_io.show(cmd))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc deploy --site lumi [--dry-run] [--ssh-config FILE]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc deploy", description=__doc__.splitlines()[0])
    ssh_io.add_site_args(ap)
    ap.add_argument("--src", type=Path, default=REPO, help="checkout to deploy (default: this repo)")
    args = ap.parse_args(argv)

    def work() -> int:
        print(deploy(args.site, dry_run=args.dry_run, ssh_config=args.ssh_config, src=args.src,
                     cli=ssh_io.cli_values(args.set)))
        return 0

    return run_cli(work, "geohpc.deploy")


if __name__ == "__main__":
    sys.exit(main())
