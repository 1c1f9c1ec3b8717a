"""The field list (GeoJSON, EPSG:4326): load, validate, centroids, bounds, and the shard a task takes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geohpc.errors import InputError

SHARD_RE = re.compile(r"^shard_(\d{4})_of_(\d{4})$")


@dataclass(frozen=True)
class Field:
    """One field-year: id, county, year, the polygon's outer ring and its centroid (lon, lat)."""

    field_id: str
    county: str
    year: int
    ring: tuple[tuple[float, float], ...]
    geometry: dict[str, Any]

    @property
    def centroid(self) -> tuple[float, float]:
        """Area centroid of the outer ring (shoelace); the vertex mean for a degenerate ring."""
        pts = self.ring
        a = cx = cy = 0.0
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
            cross = x0 * y1 - x1 * y0
            a += cross
            cx += (x0 + x1) * cross
            cy += (y0 + y1) * cross
        if abs(a) < 1e-18:
            return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
        return cx / (3 * a), cy / (3 * a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self.ring], [p[1] for p in self.ring]
        return min(xs), min(ys), max(xs), max(ys)


def load_fields(path: str | Path) -> list[Field]:
    """Read the fields GeoJSON; InputError naming the file and the feature when one is unusable."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the fields GeoJSON ({exc})") from exc
    out: list[Field] = []
    seen: set[str] = set()
    for n, feat in enumerate(doc.get("features", [])):
        props, geom = feat.get("properties") or {}, feat.get("geometry") or {}
        fid = str(props.get("field_id", ""))
        if not fid or "year" not in props:
            raise InputError(f"{p}: feature {n} lacks field_id or year (each field needs field_id, county, year)")
        if fid in seen:
            raise InputError(f"{p}: field_id {fid} appears twice (field ids must be unique)")
        seen.add(fid)
        coords = geom.get("coordinates") or []
        if geom.get("type") == "MultiPolygon":
            coords = max(coords, key=lambda poly: len(poly[0])) if coords else []
        elif geom.get("type") != "Polygon":
            raise InputError(f"{p}: field {fid}: geometry {geom.get('type')!r}, expected Polygon (EPSG:4326)")
        ring = tuple((float(x), float(y)) for x, y, *_ in coords[0]) if coords else ()
        if len(ring) < 4 or not all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring):
            raise InputError(f"{p}: field {fid}: polygon is empty or not lon/lat degrees (EPSG:4326 expected)")
        out.append(Field(fid, str(props.get("county", "")), int(props["year"]), ring[:-1] if ring[0] == ring[-1] else ring,
                         {"type": "Polygon", "coordinates": [list(map(list, ring))]}))
    if not out:
        raise InputError(f"{p}: no fields in the GeoJSON")
    return out


def shard_name(i: int, n: int) -> str:
    """The work item of shard ``i`` of ``n``: ``shard_0003_of_0040``."""
    return f"shard_{i:04d}_of_{n:04d}"


def parse_shard(item: str) -> tuple[int, int]:
    """``shard_0003_of_0040`` -> ``(3, 40)``; InputError for anything else."""
    m = SHARD_RE.match(item)
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise InputError(f"work item {item!r}: expected shard_IIII_of_NNNN with I < N (e.g. shard_0003_of_0040)")
    return int(m.group(1)), int(m.group(2))


def shard_fields(fields: list[Field], item: str) -> list[Field]:
    """The fields a shard takes: ``fields[i::n]``."""
    i, n = parse_shard(item)
    return fields[i::n]
