"""Parsers for the site quota commands: ``lfs quota``, ``lumi-quota``/``lumi-workspaces``,
``csc-workspaces``, ``dusage`` (every generation) and ``df``/``df -i``.

Each parser turns the text a command prints into :class:`QuotaEntry` rows (bytes and files used,
soft and hard limits, over-quota markers). Units follow what each tool really prints:

- ``lfs quota``: without ``-h`` block values are KiB; with ``-h`` they carry binary suffixes
  (``k M G T P E``). A ``*`` after a used value means over quota; ``[n]`` means not authoritative.
  A mount path longer than 15 characters is printed alone and the numbers follow on the next line.
- ``lumi-quota`` / ``lumi-workspaces`` / ``csc-workspaces``: ``used/max`` pairs in decimal SI
  (``numfmt --to si``: ``19G`` = 19e9 bytes, ``2.0M`` files = 2e6).
- ``dusage``: IEC sizes with a space (``14.5 GiB``), counts with space thousands separators
  (``1 036 089``); blank or ``-`` means no quota; old NIRD ``dusage -p`` prints decimal ``8.844TB``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from geohpc.errors import ServiceError
from geohpc.preflight.quota.model import (
    QuotaEntry,
    QuotaParseError,
    _clean,
    iec_size,
    lfs_bytes,
    lfs_count,
    si_value,
    spaced_count,
)
from geohpc.preflight.quota.parsers import (
    parse_df,
    parse_dusage,
    parse_lfs_quota,
    parse_lumi_quota,
    statvfs_entry,
)


class QuotaUnavailable(ServiceError):
    """The site's quota command does not exist on this machine (preflight run off-site)."""


__all__ = ["QuotaUnavailable", "QuotaEntry", "QuotaParseError", "detect_kind", "entry_for", "iec_size", "lfs_bytes", "lfs_count",
           "parse_df", "parse_dusage", "parse_lfs_quota", "parse_lumi_quota", "parse_quota_output", "read_quota",
           "si_value", "spaced_count", "statvfs_entry"]


# ----------------------------------------------------------------------------------------------- glue
def detect_kind(text: str) -> str:
    """Which tool printed ``text``: ``lfs``, ``lumi-quota``, ``dusage`` or ``df``."""
    body = "\n".join(_clean(text))
    if re.search(r"\d+-blocks|IUsed|Mounted on", body):
        return "df"
    if "Disk quotas for" in body or re.search(r"Filesystem\s+(used|kbytes)\s", body):
        return "lfs"
    if ("Capacity" in body and "/" in body) or re.search(r"Filesystem\s+Used\s+Quota\s+Limit\s+Files", body):
        return "lumi-quota"
    if re.search(r"dusage|space used|Block quota usage|Soft Limit", body):
        return "dusage"
    if "not on a mounted Lustre" in body:
        return "lfs"
    raise QuotaParseError("quota output not recognised (expected lfs quota, lumi-quota, dusage or df output)")


PARSERS = {"lfs": parse_lfs_quota, "lumi-quota": parse_lumi_quota, "csc-workspaces": parse_lumi_quota,
           "lumi-workspaces": parse_lumi_quota, "dusage": parse_dusage, "df": parse_df}


def parse_quota_output(text: str, kind: str | None = None) -> list[QuotaEntry]:
    """Parse ``text`` with the parser for ``kind`` (detected from the text when None)."""
    kind = kind if kind in PARSERS else detect_kind(text)
    return PARSERS[kind](text)


def entry_for(entries: list[QuotaEntry], path: str) -> QuotaEntry | None:
    """The entry covering ``path``: the longest path prefix, else the only entry of a command that was
    asked about ``path`` itself (``lfs quota ... PATH``, ``dusage -p``, ``df``)."""
    best: QuotaEntry | None = None
    target = path.rstrip("/") + "/"
    for e in entries:
        p = e.path.rstrip("/") + "/"
        if e.path.startswith("/") and target.startswith(p) and (best is None or len(p) > len(best.path)):
            best = e
    if best is None and len(entries) == 1 and entries[0].source in ("lfs", "dusage-p", "df"):
        best = entries[0]  # the command was asked about this very path
    return best


def quota_command(kind: str, path: str) -> list[str]:
    """The command line for QUOTA_CMD ``kind`` run about ``path``."""
    user = os.environ.get("USER", "")
    return {
        "lumi-quota": ["lumi-quota"],
        "dusage": ["dusage"],
        "lfs": ["lfs", "quota", "-h", "-u", user, path],
    }.get(kind, ["df", "-Pk", path])


def read_quota(kind: str, path: str, recorded: str | None = None,
               env: Mapping[str, str] | None = None) -> list[QuotaEntry]:
    """Quota entries for ``path``: from ``recorded`` text (or the file named by GEOHPC_QUOTA_OUTPUT in
    ``env``), else by running the site's quota command; ``df``/unknown kinds use statvfs (df, df -i)."""
    recorded_file = (os.environ if env is None else env).get("GEOHPC_QUOTA_OUTPUT", "")
    if recorded is None and recorded_file:
        recorded = Path(recorded_file).read_text()
    if recorded is not None:
        return parse_quota_output(recorded, kind)
    if kind not in ("lfs", "lumi-quota", "dusage"):
        return [statvfs_entry(path)]
    cmd = quota_command(kind, path)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise QuotaUnavailable(f"{cmd[0]} is not installed here: run make preflight on the site's login node "
                               "(or give a recorded output: GEOHPC_QUOTA_OUTPUT=file)") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{cmd[0]}: could not run ({exc}); set QUOTA_CMD=df in the site file") from exc
    return parse_quota_output(out.stdout + out.stderr, kind)
