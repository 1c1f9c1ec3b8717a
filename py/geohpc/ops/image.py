"""``make image``: build the site's CPU container ``CPU_SIF`` from ``IMAGE_SOURCE``, on the site.

- a ``docker save`` archive (``*.tar``, ``*.tar.gz``): ``apptainer build <tmp>.sif docker-archive://<archive>``
  (howto-saga.md, sure2.md);
- a definition file (``*.def``): ``apptainer build --fakeroot <tmp>.sif <def>`` (emb-betzy.md: built with
  ``--fakeroot``);
- empty, with a ``CPU_SIF`` under ``/appl/``: LUMI's provided images, nothing to build.

The site's ``CONTAINER_RUNTIME`` (apptainer or singularity) builds. The image is built under a temporary
name beside ``CPU_SIF`` and renamed onto it when complete; a previous image is kept (hard link)
as ``<CPU_SIF>.<UTC time>``, since running jobs may still use it. Paths are the site's; relative ones are
taken from the deployed checkout (``REMOTE_DIR``). ``--dry-run`` prints the exact commands.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from geohpc.core.site import Site, load_site
from geohpc.errors import ConfigError, run_cli
from geohpc.ops import remote

ARCHIVES = (".tar", ".tar.gz", ".tgz")


def build_argv(runtime: str, source: str, tmp: str) -> list[str]:
    """The build command for an archive or a definition file."""
    if source.endswith(ARCHIVES):
        return [runtime, "build", tmp, f"docker-archive://{source}"]
    if source.endswith(".def"):
        return [runtime, "build", "--fakeroot", tmp, source]
    raise ConfigError(f"IMAGE_SOURCE={source} is neither a docker save archive (*.tar, *.tar.gz) nor a definition "
                      "file (*.def): give one of those")


def plan(site: Site) -> tuple[str, str] | None:
    """``(sif, script)`` to run on the site, or None when the site provides the image."""
    sif = remote.require(site, "CPU_SIF", "the container image to build")
    source = site.get("IMAGE_SOURCE")
    if not source:
        if sif.startswith("/appl/"):
            return None
        raise ConfigError(f"IMAGE_SOURCE is empty in sites/{site.path.name} (what the image is built from): set it to a "
                          "docker save archive (*.tar, *.tar.gz) or a definition file (*.def) on the site")
    runtime = site.get("CONTAINER_RUNTIME", "none")
    if runtime == "none":
        raise ConfigError(f"CONTAINER_RUNTIME is none in sites/{site.path.name}: this site runs no container, nothing to build")
    build_argv(runtime, source, "")  # refuses an unknown kind of source, as the site file spells it
    sif, source = remote.resolve(site, sif), remote.resolve(site, source)
    tmp = f"{sif}.building.sif"
    build = shlex.join(build_argv(runtime, source, tmp))
    s, t, src = shlex.quote(sif), shlex.quote(tmp), shlex.quote(source)
    script = f"""set -o errexit -o nounset -o pipefail
fail() {{ echo "geohpc: $*" >&2; exit 3; }}
command -v {runtime} >/dev/null 2>&1 || fail "{runtime} not found on the site: load its module or run make image on a node that has {runtime}"
[ -f {src} ] || fail "IMAGE_SOURCE {source} is not a file on the site: copy it there first (rsync -avP FILE <alias>:{source})"
mkdir -p -- "$(dirname -- {s})"
[ ! -e {t} ] || fail "{tmp} exists: another make image is running, or a killed one left it (remove it yourself)"
trap 'rm -f -- {t}' EXIT
{build} > {t}.log 2>&1 || fail "{runtime} build failed: see {tmp}.log"
if [ -e {s} ]; then old={s}.$(date -u +%Y%m%dT%H%M%SZ); ln -- {s} "$old" || cp -p -- {s} "$old"; echo "image: previous image kept as $old"; fi
mv -f -- {t} {s}
trap - EXIT
echo "image: built {sif} from {source}"
"""
    return sif, script


def image(site_name: str, *, dry_run: bool = False, ssh_config: str = "", cli: dict[str, str] | None = None) -> str:
    """Build (or with ``dry_run`` print the commands for) the site's CPU image; returns what it printed."""
    site = load_site(site_name, cli=cli)
    planned = plan(site)
    if planned is None:
        return f"image: {site.get('CPU_SIF')} is provided by the site ({site.name}): nothing to build"
    sif, script = planned
    argv, where = remote.shell(site, ssh_config)
    if dry_run:
        return f"{remote.show(argv, script)}\nimage: dry run, nothing changed on {where}"
    remote.prepare_control(site)
    return remote.run(argv, "image", where, script=script).stdout.rstrip()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc image --site betzy [--dry-run] [--set IMAGE_SOURCE=...]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc image", description=__doc__.splitlines()[0])
    remote.add_site_args(ap)
    args = ap.parse_args(argv)

    def work() -> int:
        print(image(args.site, dry_run=args.dry_run, ssh_config=args.ssh_config, cli=remote.cli_values(args.set)))
        return 0

    return run_cli(work, "geohpc.image")


if __name__ == "__main__":
    sys.exit(main())
