"""Parsers for ``lfs quota``, ``lumi-quota``/``lumi-workspaces``/``csc-workspaces``, ``dusage`` and ``df``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from geohpc.preflight.quota.model import (
    QuotaEntry,
    QuotaParseError,
    _clean,
    _finish,
    _num_unit,
    iec_size,
    lfs_bytes,
    lfs_count,
    si_value,
    spaced_count,
)


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
        if len(toks) < 9 or toks[0].endswith("_UUID"):  # -v prints one row per MDT/OST: not the total
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


_VERBOSE_ROW = re.compile(r"^(/\S+)\s+" + r"\s+".join([r"([0-9.]+[A-Za-z]*\*?)"] * 6) + r"\s*$")


def parse_lumi_quota(text: str) -> list[QuotaEntry]:
    """Parse ``lumi-quota``, ``lumi-workspaces`` and ``csc-workspaces`` (all layouts) ``used/max`` rows,
    and ``lumi-quota -v`` rows (``path used quota limit files quota limit``).

    A used value without a unit borrows the max's unit (``7.2/10TB`` in hand-typed docs).
    """
    entries = []
    for line in _clean(text):
        if "is not an active project with quota" in line:
            raise QuotaParseError(f"lumi-quota: {line.strip()} (check ACCOUNT/SCRATCH in the site file)")
        v = _VERBOSE_ROW.match(line.strip())
        if v:
            used, soft, hard, files, fsoft, fhard = (si_value(t.rstrip("*")) for t in v.groups()[1:])
            entries.append(_finish(QuotaEntry(
                path=v.group(1), used=used, soft=soft or None, hard=hard or None, files=files,
                files_soft=fsoft or None, files_hard=fhard or None, over=v.group(2).endswith("*"),
                files_over=v.group(5).endswith("*"), source="lumi-quota")))
            continue
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

