"""Quota rows and the unit helpers every site-command parser shares."""

from __future__ import annotations

import re
from dataclasses import dataclass

from geohpc.errors import GeohpcError

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


def _finish(e: QuotaEntry) -> QuotaEntry:
    if e.limit and e.used >= e.limit:
        e.over = True
    if e.files_limit and e.files is not None and e.files >= e.files_limit:
        e.files_over = True
    return e

