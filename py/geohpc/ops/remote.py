"""What every site-facing command shares: the ssh argv, required site keys, running a command with a
one-line error, and the ``DRY_RUN`` rendering.

One function builds the ssh options (:func:`ssh_options`): ``BatchMode``, the test bed's ``-F`` config,
and, when the site says ``SSH_CONTROL=yes``, a ControlMaster socket under ``~/.ssh/sockets`` so one
one-time-password login serves deploy, push, fetch, image and site-setup (tips.md, howto-*.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import time
from pathlib import Path, PurePosixPath

from geohpc.core.site import REPO, Site, parse_makeflags
from geohpc.errors import ConfigError, ServiceError
from geohpc.util import redact

ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
SOCKETS = Path("~/.ssh/sockets")
CONTROL = ("-o", "ControlMaster=auto", "-o", "ControlPath=~/.ssh/sockets/%r@%h-%p", "-o", "ControlPersist=7d")
SCRIPT_ERROR = 3  # a remote script of ours exits 3 after printing "geohpc: <what to do>" on stderr
SCRIPT_PREFIX = "geohpc: "


def require(site: Site, key: str, why: str) -> str:
    """The value of ``key``, or a one-line ConfigError naming the key and the site file."""
    value = site.get(key)
    if not value:
        raise ConfigError(f"{key} is empty in sites/{site.path.name} ({why}): set it there or give {key}=... on the make line")
    return value


def alias(site: Site) -> str:
    """The site's ssh alias (REMOTE); refused when empty or not a plain ``Host`` name."""
    remote = require(site, "REMOTE", "the ssh alias of the site")
    if not ALIAS_RE.match(remote):
        raise ConfigError(f"REMOTE={remote!r} in sites/{site.path.name} is not an ssh alias: pass REMOTE=<alias from ~/.ssh/config>")
    return remote


def is_local(site: Site) -> bool:
    """True for the local site with no REMOTE: the command runs on this machine, no ssh."""
    return site.name == "local" and not site.get("REMOTE")


def ssh_options(site: Site | None, ssh_config: str = "") -> list[str]:
    """The ssh options every geohpc connection to ``site`` uses (one place for deploy, push, fetch, ...)."""
    opts = ["-o", "BatchMode=yes"]
    if ssh_config:
        opts += ["-F", ssh_config]
    if site is not None and site.get("SSH_CONTROL") == "yes":
        opts += list(CONTROL)
    return opts


def ssh_argv(site: Site | None, ssh_config: str = "") -> list[str]:
    """``ssh <options>`` (without the alias)."""
    return ["ssh", *ssh_options(site, ssh_config)]


def rsync_shell(site: Site | None, ssh_config: str = "") -> str:
    """The ``rsync -e`` value: the same ssh as :func:`ssh_argv`."""
    return shlex.join(ssh_argv(site, ssh_config))


def prepare_control(site: Site) -> None:
    """Create ``~/.ssh/sockets`` (mode 700) when the site uses a ControlMaster; only before a real run."""
    if site.get("SSH_CONTROL") == "yes":
        sockets = SOCKETS.expanduser()
        sockets.mkdir(parents=True, exist_ok=True)
        os.chmod(sockets, 0o700)


def site_path(value: str, base: str) -> str:
    """A site path: absolute as given, relative ones under ``base`` (the deployed checkout or the repo)."""
    if not value or value.startswith("/"):
        return value.rstrip("/") or value
    return str(PurePosixPath(base) / value)


def checkout(site: Site) -> str:
    """Where relative site paths are taken from: this repo for the local site, else REMOTE_DIR."""
    return str(REPO) if is_local(site) else require(site, "REMOTE_DIR", "the deployed checkout")


def resolve(site: Site, value: str) -> str:
    """:func:`site_path` of ``value``, asking for REMOTE_DIR only when ``value`` is relative."""
    return site_path(value, "" if value.startswith("/") else checkout(site))


def is_under(path: str, space: str) -> bool:
    """True when ``path`` is ``space`` or below it (lexically, ``..`` resolved)."""
    if not space:
        return False
    p, s = (PurePosixPath(os.path.normpath(x)) for x in (path, space))
    return p == s or s in p.parents


def refuse_project_space(site: Site, key: str, path: str) -> None:
    """Refuse a data, logs, models or outputs folder under PROJECT_SPACE (emb-betzy.md: rsync fails there)."""
    space = site.get("PROJECT_SPACE")
    if is_under(path, space):
        raise ConfigError(f"{key}={path} is under PROJECT_SPACE={space} (sites/{site.path.name}): the guide says never "
                          "to write data, logs, models or outputs there; point it at work space")


def stamp() -> str:
    """A UTC timestamp for backup suffixes: ``20260107T101500Z``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def show(cmd: list[str], script: str | None = None) -> str:
    """The command as a user would type it, redacted; a script sent on stdin follows as a heredoc."""
    line = redact(shlex.join(cmd))
    return f"{line} <<'GEOHPC_EOF'\n{redact(script.rstrip())}\nGEOHPC_EOF" if script is not None else line


def run(cmd: list[str], what: str, where: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (``script`` on stdin); a failure is one line naming ``where`` (an alias or 'this machine').

    Our remote scripts report what the user must do on stderr as ``geohpc: ...`` and exit 3: that line is
    the error. Anything else is an ssh/rsync failure: the last line of its output and 'check ssh <alias>'.
    """
    try:
        proc = subprocess.run(cmd, input=script, capture_output=True, text=True)
    except OSError as exc:
        raise ServiceError(f"{what}: cannot run {cmd[0]}: {exc.strerror}: install it") from exc
    if proc.returncode == 0:
        return proc
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith(SCRIPT_PREFIX)]
    if proc.returncode == SCRIPT_ERROR and ours:
        raise ConfigError(f"{what} on {where}: {redact(ours[-1][len(SCRIPT_PREFIX):])}")
    # the first line names the cause (rsync's closing "rsync error: ... (code N)" and broken pipes follow it)
    causes = [ln for ln in lines if not ln.startswith("rsync error:") and "Broken pipe" not in ln]
    last = redact((causes or lines or ["no output"])[0])
    hint = "check this machine's rsync and paths" if where == "this machine" else f"check 'ssh {where}' works"
    raise ServiceError(f"{what}: {cmd[0]} to {where} exited {proc.returncode}: {last} ({hint})")


def shell(site: Site, ssh_config: str = "") -> tuple[list[str], str]:
    """``(argv, where)`` that runs a bash script given on stdin on the site (or here for the local site)."""
    if is_local(site):
        return ["bash", "-s"], "this machine"
    remote = alias(site)
    return [*ssh_argv(site, ssh_config), remote, "bash", "-s"], remote


def add_site_args(ap: argparse.ArgumentParser) -> None:
    """``--site --dry-run --ssh-config --set``: the options every site-facing command takes."""
    ap.add_argument("--site", required=True, help="site name (sites/<name>.env)")
    ap.add_argument("--dry-run", action="store_true", help="print the exact commands, change nothing")
    ap.add_argument("--ssh-config", default=os.environ.get("SSH_CONFIG", ""), help="ssh -F file (the test bed's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as if given on the make line")


def cli_values(sets: list[str]) -> dict[str, str]:
    """The make line's variables (``$MAKEFLAGS``) plus the ``--set KEY=VALUE`` ones."""
    cli = parse_makeflags(os.environ.get("MAKEFLAGS", ""))
    cli.update(kv.split("=", 1) for kv in sets if "=" in kv)
    return cli


def itemized(stdout: str) -> tuple[list[str], list[str]]:
    """``(new, updated)`` file names from rsync ``--itemize-changes`` output."""
    new, updated = [], []
    for line in stdout.splitlines():
        if len(line) > 12 and line[0] in "<>ch" and line[1] == "f":
            (new if "+++++++" in line[2:11] else updated).append(line[12:])
    return new, updated
