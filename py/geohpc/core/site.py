"""Load a site file (``sites/<name>.env``) and resolve every value with where it came from.

Precedence, highest first: the make command line, the site file, a shell variable (only for keys the
site file leaves empty). A shell variable that disagrees with a non-empty site value is *ignored* and
reported as shadowing: silent overrides by a stray shell variable are a known pitfall.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.errors import ConfigError, run_cli
from geohpc.util import REPO, redact

SITES_DIR = REPO / "sites"

REQUIRED_KEYS = (
    "SITE_NAME ACCOUNT PARTITION_CPU PARTITION_GPU GPUS_PER_NODE GPU_VENDOR REMOTE REMOTE_DIR SCRATCH "
    "PROJECT_DIR VENV PYTORCH_SIF CONTAINER_RUNTIME CONTAINER_BIND MODULES INTERNET PURGE_DAYS "
    "MAX_ARRAY_SIZE MAX_JOBS QUOTA_CMD GDAL_CLI"
).split()
# keys a site file may have, and that the make line may give even where the site file has none
OPTIONAL_KEYS = (
    "FLASH_PURGE_DAYS PYTORCH_MODULES MAX_WALLTIME CPUS_PER_NODE MEM_PER_NODE EXECUTOR CONTAINER_PYTHONPATH "
    "CPU_SIF CONTAINER_ENV JOB_ENV PROJ_DATA_FROM GPU_ENV DEPS_DIR DEPS_ROOT DEPS_REQUIREMENTS IMAGE_SOURCE MODELS_DIR "
    "LOG_DIR JOB_TMPDIR MIN_TMP_GB PROJECT_SPACE RESCUE_DIR LINKS SSH_CONTROL BILLING ALLOC_CMD QOS ALLOCATION ALLOCATION_UNIT"
).split()
CHOICES = {
    "GPU_VENDOR": {"cuda", "rocm", "none"},
    "CONTAINER_RUNTIME": {"singularity", "apptainer", "none"},
    "INTERNET": {"yes", "no"},
    "GDAL_CLI": {"yes", "no"},
    "QUOTA_CMD": {"lumi-quota", "dusage", "lfs", "df"},
    "EXECUTOR": {"auto", "slurm", "local"},
    "PROJ_DATA_FROM": {"container"},
    "BILLING": {"lumi", "nris"},
    "SSH_CONTROL": {"yes", "no"},
}
INTEGER_KEYS = ("GPUS_PER_NODE", "PURGE_DAYS", "FLASH_PURGE_DAYS", "MAX_ARRAY_SIZE", "MAX_JOBS", "CPUS_PER_NODE")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LINE_RE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
BAD_VALUE_RE = re.compile(r"[\s\"'`$;&|<>()\\*?!{}]")

SRC_FILE, SRC_CLI, SRC_SHELL, SRC_UNSET = "site file", "command line", "shell variable", "unset"


@dataclass
class Site:
    """A resolved site: ``values[key]`` and ``sources[key]`` (site file / command line / shell variable)."""

    name: str
    path: Path
    values: dict[str, str]
    sources: dict[str, str]
    shadowed: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (shell value, site value)
    file_values: dict[str, str] = field(default_factory=dict)  # the site file as written
    cli: dict[str, str] = field(default_factory=dict)  # everything given on the make line

    def get(self, key: str, default: str = "") -> str:
        """The value of ``key``, or ``default`` when empty."""
        return self.values.get(key, "") or default

    def int(self, key: str, default: int = 0) -> int:
        """The value of an integer key, or ``default`` when empty."""
        value = self.values.get(key, "")
        return int(value) if value else default

    def list(self, key: str) -> list[str]:
        """A comma-separated value as a list (empty value -> [])."""
        return [v for v in self.values.get(key, "").split(",") if v]

    def report(self) -> str:
        """Lines 'KEY=value  (source)' for every non-empty value, then the shadowing warnings."""
        lines = [f"  {k}={v}  ({self.sources[k]})" for k, v in sorted(self.values.items()) if v]
        for key, (shell, site) in sorted(self.shadowed.items()):
            lines.append(
                f"  warning: shell variable {key}={shell} ignored: {self.path.name} says {site} "
                f"(put {key}={shell} on the make line to use it)"
            )
        return "\n".join(lines)


def site_names(sites_dir: Path = SITES_DIR) -> list[str]:
    """The sites that have a file in ``sites/``."""
    return sorted(p.stem for p in sites_dir.glob("*.env") if "." not in p.stem)


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse plain ``KEY=value`` lines; comments (#) and blank lines allowed; no quotes, ``$`` or spaces."""
    values: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE_RE.match(line)
        if not m:
            raise ConfigError(f"{path}:{n}: not a KEY=value line: {raw!r} (keys are UPPER_CASE, no 'export')")
        key, value = m.group(1), m.group(2).split(" #", 1)[0].strip()
        if BAD_VALUE_RE.search(value):
            raise ConfigError(
                f"{path}:{n}: {key} has quotes, spaces, '$' or shell characters; write plain values, lists comma-separated"
            )
        values[key] = value
    return values


def parse_makeflags(makeflags: str) -> dict[str, str]:
    """The variables given on the make command line, from ``$MAKEFLAGS`` (the part after `` -- ``)."""
    if " -- " not in f" {makeflags} ":
        return {}
    tail = f" {makeflags} ".split(" -- ", 1)[1]
    words, cur, i = [], "", 0
    while i < len(tail):
        ch = tail[i]
        if ch == "\\" and i + 1 < len(tail):
            cur += tail[i + 1]
            i += 2
            continue
        if ch == " ":
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur:
        words.append(cur)
    out = {}
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            out[key.rstrip(":")] = value
    return out


def validate_name(kind: str, name: str, valid: list[str]) -> None:
    """Refuse names with shell metacharacters or not in ``valid``, listing the valid ones."""
    if not NAME_RE.match(name or "") or name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}: valid {kind}s are {', '.join(valid)}")


def load_site(
    name: str,
    *,
    cli: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    sites_dir: Path = SITES_DIR,
) -> Site:
    """Load ``sites/<name>.env`` and apply command-line and shell values with their sources.

    Parameters
    ----------
    name : site name (``local``, ``lumi``, ...)
    cli : variables from the make command line (default: parsed from ``$MAKEFLAGS``)
    env : the shell environment (default: ``os.environ``)
    """
    validate_name("SITE", name, site_names(sites_dir))
    env = os.environ if env is None else env
    cli = parse_makeflags(env.get("MAKEFLAGS", "")) if cli is None else cli
    path = sites_dir / f"{name}.env"
    raw = parse_env_file(path)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ConfigError(f"{path}: missing required key(s) {', '.join(missing)}; add them (empty value if unknown)")
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    shadowed: dict[str, tuple[str, str]] = {}
    for key in list(REQUIRED_KEYS) + [k for k in raw if k not in REQUIRED_KEYS]:
        file_value = raw.get(key, "")
        shell_value = env.get(key, "")
        if key in cli:
            values[key], sources[key] = cli[key], SRC_CLI
        elif file_value:
            values[key], sources[key] = file_value, SRC_FILE
            if shell_value and shell_value != file_value:
                shadowed[key] = (shell_value, file_value)
        elif shell_value:
            values[key], sources[key] = shell_value, SRC_SHELL
        else:
            values[key], sources[key] = "", SRC_UNSET
    for key, value in cli.items():  # optional keys given only on the command line
        if (key in OPTIONAL_KEYS or key.startswith(("PART_", "QOS_"))) and key not in values:
            values[key], sources[key] = value, SRC_CLI
    _check_values(path, values, sources)
    return Site(name=name, path=path, values=values, sources=sources, shadowed=shadowed, file_values=dict(raw),
                cli=dict(cli))


def _check_values(path: Path, values: Mapping[str, str], sources: Mapping[str, str]) -> None:
    for key, value in values.items():
        where = path if sources.get(key) == SRC_FILE else f"{key} ({sources.get(key)})"
        if not value:
            continue
        if BAD_VALUE_RE.search(value):
            raise ConfigError(f"{where}: {key}={value!r} has shell characters; use a plain value")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{where}: {key}={value} is not one of {', '.join(sorted(CHOICES[key]))}")
        if key in INTEGER_KEYS and not value.isdigit():
            raise ConfigError(f"{where}: {key}={value} must be a non-negative integer")


def main(argv: list[str] | None = None) -> int:
    """CLI: show a site's resolved values and their sources."""
    ap = argparse.ArgumentParser(prog="python -m geohpc site", description=__doc__.splitlines()[0])
    ap.add_argument("site", nargs="?", help="site name; omit to list the sites")
    ap.add_argument("--get", metavar="KEY", help="print one resolved value")
    args = ap.parse_args(argv)

    def work() -> int:
        if not args.site:
            print("\n".join(site_names()))
            return 0
        site = load_site(args.site)
        if args.get:
            print(site.get(args.get))
        else:
            print(f"site {site.name} ({site.path}):\n{redact(site.report())}")  # values on the make line may be secret
        return 0

    return run_cli(work, "geohpc.site")


if __name__ == "__main__":
    sys.exit(main())
