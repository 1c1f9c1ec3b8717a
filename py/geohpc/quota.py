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

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import GeohpcError, ServiceError, run_cli

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BIN = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_SI = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


class QuotaParseError(GeohpcError):
    """The text is not a quota report we know (or the command reported an error)."""


@dataclass
class QuotaEntry:
    """One quota row: a path (or mount, or project) with usage and limits in bytes and files.

    ``None`` for a limit means none is set. ``over`` is True when the tool marked the row over quota
    (``*``) or usage reached the hard limit; ``approximate`` when lfs bracketed a value.
    """

    path: str
    used: int
    soft: int | None = None
    hard: int | None = None
    files: int | None = None
    files_soft: int | None = None
    files_hard: int | None = None
    over: bool = False
    files_over: bool = False
    approximate: bool = False
    source: str = ""

    @property
    def limit(self) -> int | None:
        """The byte limit that stops writes: the hard one, else the soft one (None = unlimited)."""
        return self.hard or self.soft or None

    @property
    def files_limit(self) -> int | None:
        """The file-count limit that stops writes (None = unlimited)."""
        return self.files_hard or self.files_soft or None

    @property
    def free(self) -> int | None:
        """Bytes left under the limit (never negative), None when unlimited."""
        return None if self.limit is None else max(0, self.limit - self.used)

    @property
    def files_free(self) -> int | None:
        """Files left under the limit (never negative), None when unlimited or unknown."""
        if self.files_limit is None or self.files is None:
            return None
        return max(0, self.files_limit - self.files)


def _clean(text: str) -> list[str]:
    """Lines without ANSI colours, with a recorded ``$ command`` first line dropped."""
    lines = _ANSI.sub("", text).splitlines()
    if lines and lines[0].startswith("$ "):
        lines = lines[1:]
    return lines


# ----------------------------------------------------------------------------------------------- units
def _num_unit(token: str) -> tuple[float, str]:
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([A-Za-z]*)", token.strip())
    if not m:
        raise QuotaParseError(f"not a quota value: {token!r}")
    return float(m.group(1)), m.group(2)


def lfs_bytes(token: str) -> tuple[int, bool, bool]:
    """``'700.1M*'`` -> (bytes, over, approximate). Unsuffixed values are KiB (lfs without ``-h``)."""
    over = token.endswith("*")
    tok = token.rstrip("*")
    approx = tok.startswith("[") and tok.endswith("]")
    tok = tok.strip("[]")
    value, unit = _num_unit(tok)
    if unit == "":
        return int(value * 1024), over, approx
    return int(value * _BIN[unit[0].upper()]), over, approx


def lfs_count(token: str) -> tuple[int, bool, bool]:
    """``'2002*'`` or ``'[0]'`` -> (files, over, approximate)."""
    over = token.endswith("*")
    tok = token.rstrip("*")
    approx = tok.startswith("[")
    value, _ = _num_unit(tok.strip("[]"))
    return int(value), over, approx


def si_value(token: str, borrow_unit: str = "") -> int:
    """``'8.2K'`` -> 8200, ``'.68k'`` -> 680, ``'10TB'`` -> 1e13 (decimal SI, numfmt style)."""
    value, unit = _num_unit(token)
    unit = (unit or borrow_unit).upper().rstrip("B")
    if unit not in _SI:
        raise QuotaParseError(f"unknown unit in {token!r}")
    return int(round(value * _SI[unit]))


def iec_size(text: str) -> int | None:
    """``'14.5 GiB'`` -> bytes (binary), ``'8.844TB'`` -> decimal, ``'0 Bytes'`` -> 0, blank/``-`` -> None."""
    text = text.strip()
    if text in ("", "-"):
        return None
    value, unit = _num_unit(text)
    u = unit.upper()
    if u in ("", "B", "BYTES", "BYTE"):
        return int(value)
    if u.endswith("IB"):
        return int(round(value * _BIN[u[0]]))
    return int(round(value * _SI[u[0]]))


def spaced_count(text: str) -> int | None:
    """``'1 036 089'`` -> 1036089; blank or ``-`` -> None."""
    text = text.strip().replace(" ", "").replace(",", "")
    if text in ("", "-"):
        return None
    return int(float(text))


# ----------------------------------------------------------------------------------------------- lfs
def parse_lfs_quota(text: str) -> list[QuotaEntry]:
    """Parse ``lfs quota [-h] [-q] -u|-g|-p ID PATH`` output (classic and newer header, wrapped paths)."""
    entries: list[QuotaEntry] = []
    pending: str | None = None
    errors = False
    for line in _clean(text):
        s = line.strip()
        if not s:
            continue
        if s.startswith("lfs quota:") or "not on a mounted Lustre" in s:
            raise QuotaParseError(f"lfs quota failed: {s}")
        if "errors happened" in s.lower():
            errors = True
            continue
        if s.startswith("Disk quotas for") or s.startswith("Filesystem") or " is using default " in s:
            continue
        toks = s.split()
        if len(toks) == 1:  # a long mount path alone on its line; numbers follow
            pending = toks[0]
            continue
        if pending is not None and len(toks) == 8:
            toks = [pending, *toks]
        pending = None
        if len(toks) < 9:
            continue
        used, over, ap1 = lfs_bytes(toks[1])
        soft, _, ap2 = lfs_bytes(toks[2])
        hard, _, ap3 = lfs_bytes(toks[3])
        files, fover, ap4 = lfs_count(toks[5])
        fsoft, _, _ = lfs_count(toks[6])
        fhard, _, _ = lfs_count(toks[7])
        entries.append(
            QuotaEntry(
                path=toks[0], used=used, soft=soft or None, hard=hard or None, files=files,
                files_soft=fsoft or None, files_hard=fhard or None,
                over=over or bool(hard and used >= hard), files_over=fover or bool(fhard and files >= fhard),
                approximate=ap1 or ap2 or ap3 or ap4 or errors, source="lfs",
            )
        )
    if errors:
        for e in entries:
            e.approximate = True
    return entries


# ------------------------------------------------------------------------------ lumi-quota / csc-workspaces
_PAIR_ROW = re.compile(
    r"^(?P<path>/\S+)\s+(?:Capacity:\s*)?(?P<used>[0-9.]+[A-Za-z]*\*?)/(?P<max>[0-9.]+[A-Za-z]*)"
    r"\s+(?:Files:\s*)?(?P<fused>[0-9.]+[A-Za-z]*\*?)/(?P<fmax>[0-9.]+[A-Za-z]*)"
)


def _pair(used: str, mx: str) -> tuple[int, int, bool]:
    over = used.endswith("*")
    used = used.rstrip("*")
    # numfmt never prints a fraction without a unit, so "7.2/10TB" (hand-typed docs) means 7.2 TB,
    # while "3/100K" means 3.
    borrow = _num_unit(mx)[1] if "." in used and not _num_unit(used)[1] else ""
    return si_value(used, borrow_unit=borrow), si_value(mx), over


def parse_lumi_quota(text: str) -> list[QuotaEntry]:
    """Parse ``lumi-quota``, ``lumi-workspaces`` and ``csc-workspaces`` (all layouts) ``used/max`` rows.

    A used value without a unit borrows the max's unit (``7.2/10TB`` in hand-typed docs).
    """
    entries = []
    for line in _clean(text):
        m = _PAIR_ROW.match(line.strip())
        if not m:
            continue
        used, mx, over = _pair(m["used"], m["max"])
        fused, fmax, fover = _pair(m["fused"], m["fmax"])
        entries.append(
            QuotaEntry(
                path=m["path"], used=used, hard=mx or None, files=fused, files_hard=fmax or None,
                over=over or (mx > 0 and used >= mx), files_over=fover or (fmax > 0 and fused >= fmax),
                source="lumi-quota",
            )
        )
    return entries


# ----------------------------------------------------------------------------------------------- dusage
def _spans(dash_line: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", dash_line)]


def _dusage_entry(names: list[str], cells: list[str]) -> QuotaEntry | None:
    row: dict[str, object] = {"files": None}
    seen_files = False
    for name, cell in zip(names, cells, strict=False):
        n = name.strip().lower()
        c = cell.strip()
        if n == "path":
            row["path"] = c
        elif n.startswith("space used"):
            row["used"] = iec_size(c)
        elif n.startswith("files"):
            seen_files = True
            row["files"] = spaced_count(c)
        elif n.startswith("quota"):
            kind = "soft" if "(s)" in n else "hard"
            if seen_files:
                row[f"files_{kind}"] = spaced_count(c)
            else:
                row[kind] = iec_size(c)
    if "path" not in row or row.get("used") is None:
        return None
    return QuotaEntry(source="dusage", **row)  # type: ignore[arg-type]


def _finish(e: QuotaEntry) -> QuotaEntry:
    if e.limit and e.used >= e.limit:
        e.over = True
    if e.files_limit and e.files is not None and e.files >= e.files_limit:
        e.files_over = True
    return e


def parse_dusage(text: str) -> list[QuotaEntry]:
    """Parse ``dusage`` output: v0.3 (soft/hard), v0.2 (backup column), 2021 framed table, the
    pre-2021 SAGA "Block quota usage" report, and old NIRD ``dusage -p``."""
    lines = _clean(text)
    entries: list[QuotaEntry] = []
    framed = [ln for ln in lines if ln.startswith("|")]
    if framed:
        names = [c.strip() for c in framed[0].strip("|").split("|")]
        for ln in framed[1:]:
            if set(ln) <= set("|-+ "):
                continue
            e = _dusage_entry(names, ln.strip().strip("|").split("|"))
            if e:
                entries.append(_finish(e))
        return entries
    if any("Block quota usage" in ln for ln in lines):
        in_rows = False
        for ln in lines:
            if ln.startswith("---"):
                in_rows = True
                continue
            if not in_rows or ln.startswith("==="):
                in_rows = in_rows and not ln.startswith("===")
                continue
            cells = re.split(r"\s{2,}", ln.strip())
            if len(cells) >= 5:
                used, soft, hard = (iec_size(c) for c in cells[2:5])
                entries.append(_finish(QuotaEntry(
                    path=f"{cells[0]} {cells[1]}", used=used or 0, soft=soft or None, hard=hard or None,
                    source="dusage")))
        return entries
    header = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("Project") and "Hard Limit" in ln), None)
    if header is not None:  # old NIRD dusage -p: one Disk row and one Files row per project
        by_project: dict[str, QuotaEntry] = {}
        for ln in lines[header + 1:]:
            cells = re.split(r"\s{2,}", ln.strip())
            if len(cells) < 7:
                continue
            proj, kind, usage, soft, hard = cells[0], cells[3], cells[4], cells[5], cells[6]
            e = by_project.setdefault(proj, QuotaEntry(path=proj, used=0, source="dusage-p"))
            if kind.lower() == "disk":
                e.used, e.soft, e.hard = iec_size(usage) or 0, iec_size(soft), iec_size(hard)
            elif kind.lower() == "files":
                e.files, e.files_soft, e.files_hard = spaced_count(usage), spaced_count(soft), spaced_count(hard)
        return [_finish(e) for e in by_project.values()]
    for i, ln in enumerate(lines[:-1]):
        nxt = lines[i + 1]
        if "path" in ln and nxt.startswith("---") and " " in nxt.strip():
            spans = _spans(nxt)
            bounds = [0] + [end for _, end in spans[:-1]]
            ends = [end for _, end in spans[:-1]] + [None]
            names = [ln[b:e] for b, e in zip(bounds, ends, strict=True)]
            for row in lines[i + 2:]:
                if not row.strip() or not row.lstrip().startswith("/"):
                    if entries:
                        break
                    continue
                cells = [row[b:e] for b, e in zip(bounds, ends, strict=True)]
                e = _dusage_entry(names, cells)
                if e:
                    entries.append(_finish(e))
            return entries
    return entries


# ----------------------------------------------------------------------------------------------- df
def parse_df(text: str) -> list[QuotaEntry]:
    """Parse POSIX ``df -Pk`` and/or ``df -Pi`` output (both may be concatenated), keyed by mount."""
    by_mount: dict[str, QuotaEntry] = {}
    mode = ""
    for ln in _clean(text):
        toks = ln.split()
        if not toks:
            continue
        if toks[0] == "Filesystem":
            mode = "inodes" if "Inodes" in toks or "IUsed" in toks else "blocks"
            unit = 1024
            m = re.match(r"(\d+)-blocks", toks[1])
            if m:
                unit = int(m.group(1))
            continue
        if len(toks) < 6 or not toks[1].isdigit():
            continue
        mount = " ".join(toks[5:])
        e = by_mount.setdefault(mount, QuotaEntry(path=mount, used=0, source="df"))
        used, avail = int(toks[2]), int(toks[3])  # used + available: root's reserve is not ours
        if mode == "inodes":
            e.files, e.files_hard = used, (used + avail) or None
        else:
            e.used, e.hard = used * unit, (used + avail) * unit
    return [_finish(e) for e in by_mount.values()]


def statvfs_entry(path: str | os.PathLike[str]) -> QuotaEntry:
    """What ``df`` and ``df -i`` report for the filesystem holding ``path`` (nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    total = st.f_blocks * st.f_frsize
    used = total - st.f_bavail * st.f_frsize
    files_total = st.f_files
    files_used = files_total - st.f_favail
    return _finish(QuotaEntry(path=str(p), used=used, hard=total or None, files=files_used,
                              files_hard=files_total or None, source="df"))


# ----------------------------------------------------------------------------------------------- glue
def detect_kind(text: str) -> str:
    """Which tool printed ``text``: ``lfs``, ``lumi-quota``, ``dusage`` or ``df``."""
    body = "\n".join(_clean(text))
    if re.search(r"\d+-blocks|IUsed|Mounted on", body):
        return "df"
    if "Disk quotas for" in body or re.search(r"Filesystem\s+(used|kbytes)\s", body):
        return "lfs"
    if "Capacity" in body and "/" in body:
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
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{cmd[0]}: could not run ({exc}); set QUOTA_CMD=df in the site file") from exc
    return parse_quota_output(out.stdout + out.stderr, kind)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse a recorded quota output file (or run the command) and print entries as JSON lines."""
    ap = argparse.ArgumentParser(prog="python -m geohpc.quota", description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", help="recorded output of lfs quota / lumi-quota / dusage / df")
    ap.add_argument("--kind", choices=sorted(PARSERS), help="parser to use (detected when omitted)")
    ap.add_argument("--path", default=".", help="path to ask about when running the command")
    args = ap.parse_args(argv)

    def work() -> int:
        import json

        if args.file:
            entries = parse_quota_output(Path(args.file).read_text(), args.kind)
        else:
            entries = read_quota(args.kind or "df", args.path)
        for e in entries:
            print(json.dumps(asdict(e)))
        return 0

    return run_cli(work, "geohpc.quota")


if __name__ == "__main__":
    sys.exit(main())
