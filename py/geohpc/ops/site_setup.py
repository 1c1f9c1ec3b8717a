"""``make site-setup``: prepare a site the way the field guide does by hand, in one bash script on the site.

What it makes, in order (each step says what it did):

- the folders: ``LOG_DIR`` (default: the checkout's ``logs/``, where jobs write), ``JOB_TMPDIR``, ``MODELS_DIR`` and ``<SCRATCH>/outputs`` (never under PROJECT_SPACE);
- the ``LINKS`` (``link=target,...``) between project and work space: a link that exists is kept, a real
  folder in its place is left alone (emb-betzy.md: "These already exist -- do NOT recreate");
- on sites without a container, the ``VENV`` as ``make setup`` makes it (from the deployed checkout);
- the deps: ``pip install --target`` into a NEW folder ``$DEPS_ROOT/v<N+1>`` every time (installed as
  ``.v<N+1>.partial`` and renamed when complete), then ``$DEPS_ROOT/current`` flips to it atomically
  (``ln -s`` + ``mv -T``). Nothing is installed in place (Lustre stale handles, sure2.md bug 5) and old
  folders are never deleted: running jobs keep the folder they started with.

``--dry-run`` prints the exact ssh command and script and changes nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from geohpc.core.site import REPO, Site, load_site
from geohpc.errors import ConfigError, run_cli
from geohpc.ops import remote

REQ_EOF = "GEOHPC_REQUIREMENTS"
HEAD = """set -o errexit -o nounset -o pipefail
fail() { echo "geohpc: $*" >&2; exit 3; }"""


def folders(site: Site, base: str) -> list[tuple[str, str]]:
    """``(key, path)`` of the folders to make; empty keys are skipped (printed as such)."""
    scratch = remote.site_path(remote.require(site, "SCRATCH", "outputs/ lives under it"), base)
    # jobs write --output=logs/... under their --chdir (the checkout): that is the logs folder unless LOG_DIR says
    out = [("LOG_DIR", remote.site_path(site.get("LOG_DIR", "logs"), base))]
    out += [(k, remote.site_path(site.get(k), base)) for k in ("JOB_TMPDIR", "MODELS_DIR")]
    out.append(("SCRATCH", f"{scratch}/outputs"))
    for key, path in out:
        if path:
            remote.refuse_project_space(site, key, path)
    return out


def links(site: Site, base: str) -> list[tuple[str, str]]:
    """``(link, target)`` pairs from ``LINKS=link=target,link=target``."""
    pairs = []
    for item in site.list("LINKS"):
        link, sep, target = item.partition("=")
        if not sep or not link or not target:
            raise ConfigError(f"LINKS item {item!r} in sites/{site.path.name} is not link=target (comma-separated pairs)")
        pairs.append((remote.site_path(link, base), remote.site_path(target, base)))
    return pairs


def venv_script(site: Site, base: str) -> str:
    """Create or update the venv as sh/setup.sh does (same stamp file), from the deployed checkout."""
    venv = shlex.quote(remote.site_path(site.get("VENV"), base))
    pyproject = shlex.quote(f"{base}/pyproject.toml")
    return f"""[ -f {pyproject} ] || fail "no {base}/pyproject.toml: run make deploy SITE={site.name} first (the venv installs the deployed checkout)"
want="$(sha256sum -- {pyproject} | cut -c1-16)"
if [ -f {venv}/.geohpc-installed ] && [ "$(cat {venv}/.geohpc-installed)" = "$want" ]; then
  echo "site-setup: venv {venv} is up to date"
else
  [ -x {venv}/bin/python ] || python3 -m venv {venv}
  {venv}/bin/python -m pip install -q --upgrade pip
  {venv}/bin/python -m pip install -q -e {shlex.quote(base + "[test]")}
  printf '%s\\n' "$want" > {venv}/.geohpc-installed
  echo "site-setup: venv {venv} ready"
fi"""


def pip_argv(site: Site, base: str) -> list[str]:
    """The python that installs the deps: the CPU container's (``<runtime> exec CPU_SIF python3``), or the venv's."""
    runtime = site.get("CONTAINER_RUNTIME", "none")
    if runtime == "none":
        venv = site.get("VENV")
        return [f"{remote.site_path(venv, base)}/bin/python" if venv else "python3", "-m", "pip"]
    sif = remote.site_path(remote.require(site, "CPU_SIF", "the container the deps are installed with"), base)
    bind = ["--bind", site.get("CONTAINER_BIND")] if site.get("CONTAINER_BIND") else []
    return [runtime, "exec", *bind, sif, "python3", "-m", "pip"]


def deps_script(site: Site, base: str, requirements: str) -> str:
    """pip --target into a new ``v<N+1>`` (via ``.v<N+1>.partial``), then flip ``current``."""
    root = remote.site_path(remote.require(site, "DEPS_ROOT", "the deps folders v1, v2, ... live there"), base)
    if any(line.strip() == REQ_EOF for line in requirements.splitlines()):
        raise ConfigError(f"DEPS_REQUIREMENTS has a line {REQ_EOF}: remove it")
    r, pip = shlex.quote(root), shlex.join(pip_argv(site, base))
    return f"""root={r}
mkdir -p -- "$root"
n=0
for d in "$root"/v[0-9]* "$root"/.v[0-9]*.partial; do
  b="${{d##*/}}"; b="${{b#.}}"; b="${{b#v}}"; b="${{b%.partial}}"
  case "$b" in ''|*[!0-9]*) continue ;; esac
  if [ "$b" -gt "$n" ]; then n="$b"; fi
done
new="v$((n + 1))"; part="$root/.$new.partial"
mkdir -- "$part" || fail "cannot make $part (another site-setup running?)"
cat > "$part/.geohpc-requirements.txt" <<'{REQ_EOF}'
{requirements.rstrip()}
{REQ_EOF}
{pip} install --disable-pip-version-check --no-warn-script-location --target "$part" -r "$part/.geohpc-requirements.txt" \\
  > "$part/.geohpc-pip.log" 2>&1 || fail "pip install --target $part failed: see $part/.geohpc-pip.log ($root/current is unchanged)"
mv -T -- "$part" "$root/$new"
ln -s -- "$new" "$root/.current.$$"
mv -T -- "$root/.current.$$" "$root/current"
echo "site-setup: deps installed in $root/$new; $root/current -> $new"
echo "site-setup: older folders are kept: running jobs keep the deps folder they started with"
"""


def script(site: Site) -> str:
    """The whole bash script site-setup runs on the site."""
    base = remote.checkout(site)
    parts = [HEAD, f"if [ -d {shlex.quote(base)} ]; then cd -- {shlex.quote(base)}; fi"]
    for key, path in folders(site, base):
        if not path:
            parts.append(f'echo "site-setup: {key} is empty in sites/{site.path.name}: no folder made for it"')
            continue
        p = shlex.quote(path)
        parts.append(f'mkdir -p -- {p} && echo "site-setup: folder {path}"')
    for link, target in links(site, base):
        q, t = shlex.quote(link), shlex.quote(target)
        parts.append(f"""if [ -L {q} ]; then echo "site-setup: link {link} kept (-> $(readlink -- {q}))"
elif [ -e {q} ]; then echo "site-setup: warning: {link} is a real file or folder: left as it is, no link made" >&2
else mkdir -p -- {t} "$(dirname -- {q})" && ln -s -- {t} {q} && echo "site-setup: link {link} -> {target}"; fi""")
    if site.get("CONTAINER_RUNTIME", "none") == "none" and site.get("VENV"):
        parts.append(venv_script(site, base))
    req = site.get("DEPS_REQUIREMENTS")
    if not req:
        parts.append(f'echo "site-setup: DEPS_REQUIREMENTS is empty in sites/{site.path.name}: no deps to install"')
    else:
        path = (REPO / req) if not req.startswith("/") else Path(req)
        if not path.is_file():
            raise ConfigError(f"DEPS_REQUIREMENTS={req} (sites/{site.path.name}) is not a file here: give a requirements file of the repo")
        parts.append(deps_script(site, base, path.read_text()))
    return "\n".join(parts) + "\n"


def site_setup(site_name: str, *, dry_run: bool = False, ssh_config: str = "", cli: dict[str, str] | None = None) -> str:
    """Run (or with ``dry_run`` print) the site-setup script; returns what it printed."""
    site = load_site(site_name, cli=cli)
    text = script(site)
    argv, where = remote.shell(site, ssh_config)
    if dry_run:
        return f"{remote.show(argv, text)}\nsite-setup: dry run, nothing changed on {where}"
    remote.prepare_control(site)
    proc = remote.run(argv, "site-setup", where, script=text)
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    return proc.stdout.rstrip()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc site-setup --site saga [--dry-run] [--ssh-config FILE] [--set KEY=VALUE]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc site-setup", description=__doc__.splitlines()[0])
    remote.add_site_args(ap)
    args = ap.parse_args(argv)

    def work() -> int:
        print(site_setup(args.site, dry_run=args.dry_run, ssh_config=args.ssh_config, cli=remote.cli_values(args.set)))
        return 0

    return run_cli(work, "geohpc.site_setup")


if __name__ == "__main__":
    sys.exit(main())
