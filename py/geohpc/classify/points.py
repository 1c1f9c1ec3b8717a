"""Labelled point tables: GeoPackage, GeoJSON, Parquet (x/y or WKB geometry) and CSV (x/y + a CRS).

Every reader returns a :class:`Points` with ids, labels, coordinates and a CRS string. A table whose
CRS cannot be known is an error (never a silent guess), and so is a missing or empty label.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geohpc.errors import InputError


@dataclass
class Points:
    """Point ids, labels (original values), x/y coordinates and their CRS (e.g. ``EPSG:4326``)."""

    ids: np.ndarray
    labels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    crs: str
    source: Path

    def __len__(self) -> int:
        return len(self.ids)


def read_points(path: str | Path, *, label_col: str = "label", id_col: str = "id", crs: str = "",
                x_col: str = "x", y_col: str = "y", require_labels: bool = True) -> Points:
    """Read labelled points from ``path`` (.gpkg, .geojson/.json, .parquet, .csv).

    Parameters
    ----------
    path : points file.
    label_col : column with the class labels (strings or integers).
    id_col : column with point ids; row numbers (or the GeoPackage fid) when absent.
    crs : CRS of the coordinates, needed for CSV and x/y Parquet (a CRS in the file wins when both agree).
    x_col, y_col : coordinate columns for CSV/Parquet.
    require_labels : raise when a label is NaN or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: points file not found (check POINTS=)")
    try:
        df, file_crs = _read_any(p, x_col, y_col)
    except (sqlite3.DatabaseError, KeyError, TypeError, IndexError, AttributeError, struct.error) as exc:
        raise InputError(f"{p}: not a readable points file ({type(exc).__name__}: {exc}); re-export it") from None
    the_crs = file_crs or crs
    if not the_crs:
        raise InputError(f"{p}: points have no CRS; pass --crs (POINTS_CRS=EPSG:xxxx) or write the CRS into the file")
    if label_col not in df.columns:
        cols = ", ".join(c for c in df.columns if c not in ("_x", "_y")) or "(none)"
        raise InputError(f"{p}: no label column {label_col!r}; columns are {cols} (pass LABEL_COL=<name>)")
    labels = _clean_labels(df[label_col], p, label_col, df, id_col, require_labels)
    ids = df[id_col].to_numpy() if id_col in df.columns else (df["_fid"].to_numpy() if "_fid" in df.columns else np.arange(len(df)))
    if len(df) == 0:
        raise InputError(f"{p}: the points table is empty; give a file with labelled points")
    return Points(ids=np.asarray(ids), labels=labels, x=df["_x"].to_numpy(float), y=df["_y"].to_numpy(float), crs=the_crs, source=p)


def _read_any(p: Path, x_col: str, y_col: str) -> tuple[pd.DataFrame, str]:
    suffix = p.suffix.lower()
    if suffix == ".gpkg":
        df, file_crs = _read_gpkg(p)
    elif suffix in (".geojson", ".json"):
        df, file_crs = _read_geojson(p)
    elif suffix in (".parquet", ".pq"):
        df, file_crs = _read_parquet(p, x_col, y_col)
    elif suffix in (".csv", ".txt"):
        try:
            df = pd.read_csv(p)
        except pd.errors.EmptyDataError:
            raise InputError(f"{p}: the CSV is empty (no header, no rows); give a table with x, y and label columns") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]}); re-export it") from None
        df, file_crs = _xy(df, p, x_col, y_col), ""
    else:
        raise InputError(f"{p}: unknown points format {suffix!r}; use .gpkg, .geojson, .parquet or .csv")
    return df, file_crs


def _clean_labels(col: pd.Series, p: Path, label_col: str, df: pd.DataFrame, id_col: str, require: bool) -> np.ndarray:
    if pd.api.types.is_float_dtype(col):
        finite = col.dropna()
        if len(finite) and np.all(np.mod(finite.to_numpy(), 1) == 0) and not col.isna().any():
            col = col.astype(np.int64)
    bad = col.isna() | col.astype(str).str.strip().isin(["", "nan", "NaN", "None"])
    if require and bad.any():
        ids = df[id_col] if id_col in df.columns else pd.Series(np.arange(len(df)))
        first = ", ".join(str(v) for v in ids[bad].head(5).tolist())
        raise InputError(f"{p}: {int(bad.sum())} points have a NaN or empty {label_col!r} (ids {first}); label or remove them")
    if col.dtype == object:
        return col.map(lambda v: v.strip() if isinstance(v, str) else v).to_numpy()
    return col.to_numpy()


def _xy(df: pd.DataFrame, p: Path, x_col: str, y_col: str) -> pd.DataFrame:
    for xc, yc in ((x_col, y_col), ("lon", "lat"), ("longitude", "latitude"), ("easting", "northing"), ("X", "Y")):
        if xc in df.columns and yc in df.columns:
            out = df.copy()
            out["_x"] = pd.to_numeric(out[xc], errors="coerce")
            out["_y"] = pd.to_numeric(out[yc], errors="coerce")
            if out[["_x", "_y"]].isna().any().any():
                raise InputError(f"{p}: some {xc}/{yc} values are empty or not numbers; fix those rows")
            return out
    raise InputError(f"{p}: no coordinate columns {x_col!r}/{y_col!r}; columns are {', '.join(map(str, df.columns))} (pass X_COL=/Y_COL=)")


def _crs_from_name(name: str) -> str:
    name = name.strip()
    if name.upper() in ("CRS84", "OGC:CRS84", "URN:OGC:DEF:CRS:OGC:1.3:CRS84"):
        return "EPSG:4326"
    if "EPSG" in name.upper():
        code = name.replace("::", ":").split(":")[-1]
        if code.isdigit():
            return f"EPSG:{code}"
    return name


def _read_geojson(p: Path) -> tuple[pd.DataFrame, str]:
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p}: not valid GeoJSON ({exc}); re-export it") from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if feats is None:
        raise InputError(f"{p}: not a GeoJSON FeatureCollection; export the points as one")
    rows = []
    for f in feats:
        geom = f.get("geometry") or {}
        if geom.get("type") != "Point":
            raise InputError(f"{p}: feature {f.get('id', len(rows))} is a {geom.get('type')}, not a Point; convert to points")
        props = dict(f.get("properties") or {})
        if "id" not in props and "id" in f:
            props["id"] = f["id"]
        props["_x"], props["_y"] = geom["coordinates"][0], geom["coordinates"][1]
        rows.append(props)
    df = pd.DataFrame(rows, columns=None if rows else ["_x", "_y"])
    crs_member = (doc.get("crs") or {}).get("properties", {}).get("name", "")
    if crs_member:
        return df, _crs_from_name(crs_member)
    # RFC 7946 GeoJSON is WGS84 lon/lat; coordinates outside that range mean a CRS was lost on export.
    if len(df) and (df["_x"].abs().max() > 180 or df["_y"].abs().max() > 90):
        return df, ""
    return df, "EPSG:4326"


def _read_parquet(p: Path, x_col: str, y_col: str) -> tuple[pd.DataFrame, str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         "re-export it") from None
    meta = table.schema.metadata or {}
    df = table.to_pandas()
    crs = ""
    if b"geo" in meta and "geometry" in df.columns:
        geo = json.loads(meta[b"geo"])
        col = geo.get("columns", {}).get(geo.get("primary_column", "geometry"), {})
        c = col.get("crs", "missing")
        if c is None:
            crs = ""
        elif c == "missing":
            crs = "EPSG:4326"  # GeoParquet default when the key is absent
        elif isinstance(c, dict) and c.get("id", {}).get("authority") == "EPSG":
            crs = f"EPSG:{c['id']['code']}"
        else:
            crs = json.dumps(c) if isinstance(c, dict) else str(c)
        xy = np.array([_wkb_point(bytes(b), p) for b in df["geometry"]]).reshape(-1, 2)
        df["_x"], df["_y"] = xy[:, 0], xy[:, 1]
        return df.drop(columns=["geometry"]), crs
    if b"geohpc" in meta:
        crs = json.loads(meta[b"geohpc"]).get("crs", "")
    return _xy(df, p, x_col, y_col), crs


def _wkb_point(buf: bytes, p: Path, offset: int = 0) -> tuple[float, float]:
    order = "<" if buf[offset] == 1 else ">"
    (gtype,) = struct.unpack_from(order + "I", buf, offset + 1)
    base = (gtype & 0xFFFF) % 1000
    if base != 1:
        raise InputError(f"{p}: geometry type {gtype} is not a Point; convert the layer to points")
    off = offset + 5 + (4 if gtype & 0x20000000 else 0)  # EWKB with an SRID
    x, y = struct.unpack_from(order + "dd", buf, off)
    if math.isnan(x) or math.isnan(y):
        raise InputError(f"{p}: an empty point geometry; remove it")
    return x, y


def _read_gpkg(p: Path) -> tuple[pd.DataFrame, str]:
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        layers = con.execute("SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns").fetchall()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{p}: not a readable GeoPackage ({exc}); re-export it") from None
    if not layers:
        raise InputError(f"{p}: GeoPackage has no feature layer; export the points as a layer")
    table, geom_col, srs_id = layers[0]
    crs = ""
    if srs_id not in (0, -1):
        row = con.execute("SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id=?", (srs_id,)).fetchone()
        if row and str(row[0]).upper() == "EPSG":
            crs = f"EPSG:{row[1]}"
        elif row and row[2] and row[2] != "undefined":
            crs = row[2]
    cur = con.execute(f'SELECT * FROM "{table}"')
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    con.close()
    df = pd.DataFrame(rows, columns=cols)
    pk = next((c for c in ("fid", "ogc_fid") if c in cols), None)
    if pk:
        df["_fid"] = df[pk]
    xy = []
    for blob in df[geom_col]:
        b = bytes(blob)
        if b[:2] != b"GP":
            raise InputError(f"{p}: a geometry is not a GeoPackage blob; re-export with GDAL/QGIS")
        flags = b[3]
        env = (flags >> 1) & 0b111
        header = 8 + {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get(env, 0)
        xy.append(_wkb_point(b, p, header))
    arr = np.array(xy, dtype=float).reshape(-1, 2)
    df["_x"], df["_y"] = arr[:, 0], arr[:, 1]
    return df.drop(columns=[geom_col]), crs


def write_gpkg_points(path: Path, x: np.ndarray, y: np.ndarray, props: dict[str, list[object]], epsg: int | None) -> None:
    """Write a minimal GeoPackage point layer ``points`` (used by the synthetic scene and the tests)."""
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id=1196444487")
    con.execute("PRAGMA user_version=10300")
    con.execute("CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, organization TEXT, "
                "organization_coordsys_id INTEGER, definition TEXT, description TEXT)")
    con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('undefined', -1, 'NONE', -1, 'undefined', NULL)")
    srs = epsg if epsg else -1
    if epsg:
        con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, 'EPSG', ?, 'undefined', NULL)", (f"EPSG:{epsg}", epsg, epsg))
    con.execute("CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT, identifier TEXT, description TEXT, "
                "last_change TEXT, min_x REAL, min_y REAL, max_x REAL, max_y REAL, srs_id INTEGER)")
    con.execute("CREATE TABLE gpkg_geometry_columns (table_name TEXT, column_name TEXT, geometry_type_name TEXT, srs_id INTEGER, z INTEGER, m INTEGER)")
    con.execute("INSERT INTO gpkg_contents VALUES ('points', 'features', 'points', '', '', NULL, NULL, NULL, NULL, ?)", (srs,))
    con.execute("INSERT INTO gpkg_geometry_columns VALUES ('points', 'geom', 'POINT', ?, 0, 0)", (srs,))
    names = list(props)
    cols = ", ".join(f'"{n}"' for n in names)
    con.execute(f'CREATE TABLE points (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB{"".join(", " + repr(n) for n in names)})')
    for i in range(len(x)):
        blob = b"GP\x00\x01" + struct.pack("<i", srs) + struct.pack("<BIdd", 1, 1, float(x[i]), float(y[i]))
        vals = [props[n][i] for n in names]
        con.execute(f'INSERT INTO points (geom{", " + cols if names else ""}) VALUES (?{", ?" * len(names)})', [blob, *vals])
    con.commit()
    con.close()
