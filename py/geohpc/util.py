"""Small shared helpers: atomic writes, thread counts, memory budgets, secret redaction."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# the checkout: py/geohpc/util.py -> the repo root (jobs/, sites/, checks/ live there)
REPO = Path(__file__).resolve().parents[2]

R = "REDACTED"
# query parameters whose value is a credential (SAS, signed URLs, OAuth and API keys), in any position of the
# query: after ?, &, ; or their URL-encoded forms
_QUERY_NAMES = (r"sig|signature|se|sv|sp|st|spr|srt|ss|skoid|sktid|skt|ske|sks|skv|x-amz-[a-z-]+|x-goog-[a-z-]+"
                r"|awsaccesskeyid|token|access_token|id_token|refresh_token|auth|auth_token|key|apikey|api_key|api-key"
                r"|password|passwd|pwd|secret|client_secret|sharedaccesssignature|accountkey|sharedaccesskey")
# variable names that hold a secret in env lines, config files and JSON ("export AWS_SECRET_ACCESS_KEY=...")
_SECRET_NAME = (r"[A-Za-z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?|SAS_URL"
                r"|SAS)[A-Za-z0-9_]*|[A-Za-z0-9_]*_KEY|KEY")
_VALUE = r"(?:'[^']*'|\"[^\"]*\"|[^\s\"',;}]+)"



def _keep_quotes(m: re.Match[str]) -> str:
    """``NAME='value'`` -> ``NAME='REDACTED'``: the quoting survives, so JSON and shell lines stay valid."""
    value = m.group(2)
    q = value[0] if value[:1] in ("'", '"') else ""
    return f"{m.group(1)}{q}{R}{q}"


_SECRET_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # PEM private keys, whole
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), f"<{R} PRIVATE KEY>"),
    # https://user:password@host
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s/'\"]+@", re.I), rf"\1{R}@"),
    # Authorization / Proxy-Authorization headers and bare bearer tokens
    (re.compile(r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|aws4-hmac-sha256)\s+)?)"
                r"[^\s\"',]+", re.I), rf"\1{R}"),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.I), rf"\1{R}"),
    # signed-URL and SAS query parameters, any position
    (re.compile(rf"((?:[?&;]|%26|%3F)(?:{_QUERY_NAMES})(?:=|%3D))(?:[^&\s\"'#;<>:]|:(?!\s|$))+", re.I), rf"\1{R}"),
    # a signature outside a query string too: a bare "sig=..." argument or value
    (re.compile(rf"((?:^|(?<=[\s\"'(,=]))(?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)"
                rf"(?:=|%3D))(?!{R}\b)(?:[^&\s\"'#;<>:]|:(?!\s|$))+", re.I), rf"\1{R}"),
    # secret values in env lines, config files ("name = value") and JSON ("name": "value")
    (re.compile(rf"\b((?:{_SECRET_NAME})[\"']?\s*=\s*)(?!{R}\b)({_VALUE})", re.I), _keep_quotes),
    (re.compile(rf"((?:\b[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY)[A-Z0-9_]*"
                rf"|[\"'](?i:{_SECRET_NAME})[\"'])\s*:\s*)(?!{R}\b)({_VALUE})"), _keep_quotes),
    # well-known token shapes wherever they appear
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"), f"AKIA{R}"),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), f"gh_{R}"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), f"glpat-{R}"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), f"xox-{R}"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), f"AIza{R}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), f"hf_{R}"),
    (re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), f"npm_{R}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), f"<{R} JWT>"),
]


def redact(text: str) -> str:
    """Return ``text`` with every credential form we know masked: SAS and signed-URL signatures (``sig=``,
    ``X-Amz-*``) in any position, ``token=``/``key=``-style query values, ``user:password@`` in URLs,
    ``Authorization``/``Bearer`` values, secret-named env and config values, and well-known token shapes
    (AWS key ids, GitHub, GitLab, Slack, Google, Hugging Face, JWTs, PEM private keys).

    The one redaction of geohpc: every message, log line and printed job environment goes through it.
    """
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingStream:
    """A text stream that writes through :func:`redact`, line by line (``python -m geohpc`` wraps stderr in it,
    so argparse errors, warnings and tracebacks carry no secret either)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._buf = ""

    def write(self, text: str) -> int:
        self._buf += text
        cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
        if cut >= 0:
            done, self._buf = self._buf[: cut + 1], self._buf[cut + 1 :]
            self._raw.write(redact(done))
        return len(text)

    def flush(self) -> None:
        if self._buf:
            self._raw.write(redact(self._buf))
            self._buf = ""
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self._raw, name)


def work_path(value: str | os.PathLike[str], work: str | os.PathLike[str] | None = None) -> str:
    """The one rule for a path a user gives a stage: absolute paths, URLs and ``/vsi`` paths as given;
    relative ones under the work dir (``work``, else $GEOHPC_WORK, else the current directory).

    ``make submit`` resolves every path parameter with this into job.env, so jobs see absolute paths.
    """
    text = os.fspath(value)
    if not text or text.startswith("/") or "://" in text:
        return text
    base = os.fspath(work) if work is not None else os.environ.get("GEOHPC_WORK", "")
    return os.path.join(base, text) if base else text


def work_paths(value: str, work: str | os.PathLike[str] | None = None) -> str:
    """:func:`work_path` on each comma-separated part (lists and globs of rasters)."""
    return ",".join(work_path(part.strip(), work) for part in value.split(",") if part.strip())


def split_shard(item: str) -> tuple[str, int, int]:
    """A work item ``PATH::i/n`` -> ``(PATH, i, n)``; a bare ``PATH`` is shard 0 of 1.

    Raises ValueError unless ``0 <= i < n``.
    """
    path, sep, shard = item.rpartition("::")
    if not sep:
        return item, 0, 1
    i, _, n = shard.partition("/")
    if not (i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise ValueError(f"work item {item!r}: expected PATH::i/n with 0 <= i < n (e.g. scene.tif::0/4)")
    return path, int(i), int(n)


def cpu_threads() -> int:
    """Threads this process may use: SLURM_CPUS_PER_TASK in a job, else the CPUs we are allowed on."""
    for var in ("SLURM_CPUS_PER_TASK", "GEOHPC_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def human_bytes(n: float) -> str:
    """Bytes as ``12.3 GiB`` (``512 B`` below a KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def parse_size(text: str) -> int:
    """Parse ``512M``, ``2G``, ``1.5GiB``, ``4096`` (bytes) into bytes; K/M/G/T are powers of 1024."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGTP]?)(i?B)?\s*", text, re.I)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 2G)")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The temporary file lives in the target's directory (same filesystem, so the rename is
    atomic and scratch, not a RAM-backed /tmp, holds the bytes). On error it is removed.
    ``mode`` (e.g. ``0o600`` for files that hold secrets) replaces the usual umask-derived mode.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sfx = target.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists() and mode is not None:
            os.chmod(tmp_path, mode)
        elif tmp_path.exists():  # mkstemp makes 0600; give outputs the usual umask-derived mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(target: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``target`` through a temporary file and a rename (``mode``: see :func:`atomic_path`)."""
    with atomic_path(target, mode=mode) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike[str], data: Any, mode: int | None = None) -> None:
    """Write ``data`` as indented JSON to ``target`` atomically."""
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", mode=mode)


def verify_table(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a readable CSV or Parquet table with a header and at least one row, else the reason.

    Parquet is checked from its footer (schema and row count) and its last row group is read; a CSV's header
    and last line are read, so a table truncated by a kill or a full disk is caught without reading it all.
    """
    p = Path(path)
    if not p.is_file():
        return f"{p}: no such file"
    if p.stat().st_size == 0:
        return f"{p}: empty file (0 bytes)"
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(p)
            if pf.metadata.num_rows < 1 or pf.metadata.num_row_groups < 1:
                return f"{p}: the table has no rows"
            pf.read_row_group(pf.metadata.num_row_groups - 1)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            return f"{p}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        return None
    try:
        with open(p, "rb") as fh:
            header = fh.readline()
            fh.seek(max(0, p.stat().st_size - 65536))
            tail = fh.read().rstrip(b"\r\n").splitlines()
        header.decode()
    except (OSError, UnicodeDecodeError) as exc:
        return f"{p}: not a readable table ({exc})"
    if not header.strip():
        return f"{p}: no header line"
    if len(tail) < 1 or tail[-1] == header.rstrip(b"\r\n"):
        return f"{p}: the table has a header but no rows"
    if tail[-1].count(b",") != header.count(b","):
        return f"{p}: the last row has {tail[-1].count(b',') + 1} fields, the header {header.count(b',') + 1} (truncated?)"
    return None


def verify_json(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` holds one complete JSON document, else the reason."""
    p = Path(path)
    try:
        json.loads(p.read_text())
    except FileNotFoundError:
        return f"{p}: no such file"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{p}: not valid JSON ({exc})"
    return None


def verify_html(path: str | os.PathLike[str]) -> str | None:
    """None when the HTML page ``path`` is whole (written last, it ends with ``</html>``), else the reason."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            fh.seek(max(0, p.stat().st_size - 64))
            whole = fh.read().rstrip().endswith(b"</html>")
    except OSError as exc:
        return f"{p}: cannot read ({exc.strerror or exc})"
    return None if whole else f"{p}: truncated (no closing </html>)"
