"""Array planning: which manifest lines to run, split into arrays that fit MaxArraySize, with a throttle.

Manifest line ``i`` (0-based) belongs to chunk ``i // max_array_size``; inside a chunk the array index is
``i - offset``, so every index stays below MaxArraySize and a resubmission of a few lines reuses the same
chunk offsets (``--array=3,7,12-15%4``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from geohpc.errors import ConfigError

SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001


@dataclass
class Chunk:
    """One sbatch array: lines ``offset + i`` for ``i`` in ``indices``."""

    offset: int
    indices: list[int]
    job_id: str = ""
    command: list[str] = field(default_factory=list)

    def array_spec(self, throttle: int | None) -> str:
        """``--array`` value: compact index list plus ``%throttle``."""
        spec = compact(self.indices)
        return f"{spec}%{throttle}" if throttle else spec

    def lines(self) -> list[int]:
        """The 0-based manifest lines this chunk runs."""
        return [self.offset + i for i in self.indices]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def compact(indices: list[int]) -> str:
    """``[3, 7, 12, 13, 14, 15]`` -> ``"3,7,12-15"``."""
    if not indices:
        raise ValueError("no indices")
    out: list[str] = []
    values = sorted(set(indices))
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(out)


def expand(spec: str) -> list[int]:
    """Inverse of :func:`compact` (a ``%N`` suffix and ``:step`` forms are accepted)."""
    spec = spec.split("%", 1)[0]
    out: list[int] = []
    for part in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise ValueError(f"bad array spec part {part!r}")
        a = int(m.group(1))
        b = int(m.group(2) or a)
        step = int(m.group(3) or 1)
        out.extend(range(a, b + 1, step))
    return out


def parse_throttle(value: str | None) -> int | None:
    """A THROTTLE value: empty -> None, a positive integer -> int, anything else -> ConfigError."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise ConfigError(f"THROTTLE={value!r} is not a positive integer (e.g. THROTTLE=20)")
    return int(value)


def plan_chunks(lines: list[int], max_array_size: int | None) -> list[Chunk]:
    """Group 0-based manifest ``lines`` into arrays whose indices stay below ``max_array_size``."""
    size = max_array_size or SLURM_DEFAULT_MAX_ARRAY_SIZE
    if size < 1:
        raise ConfigError(f"MAX_ARRAY_SIZE={size} must be at least 1")
    chunks: dict[int, Chunk] = {}
    for line in sorted(set(lines)):
        offset = (line // size) * size
        chunks.setdefault(offset, Chunk(offset=offset, indices=[])).indices.append(line - offset)
    return [chunks[k] for k in sorted(chunks)]


def effective_throttle(throttle: int | None, max_jobs: int | None, n_chunks: int) -> int | None:
    """The ``%N`` to use: the user's THROTTLE, else the site's job cap shared between the arrays."""
    if throttle:
        return throttle
    if max_jobs:
        return max(1, max_jobs // max(1, n_chunks))
    return None
