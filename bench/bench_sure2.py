#!/usr/bin/env python3
"""Benchmark: the Sure2 engine on synthetic counties, measured against their truth and against the naive loops.

1. Accuracy at a 5-day revisit for each --clouds level (default 0, 0.3, 0.45, 0.6): planting error in days
   (mean, MAE, RMSE, detection rate), not-emerged share error in percentage points, claim agreement, drought-
   gate agreement, and the identical-score guard (bug 8).
2. Drought throughput: fields/s of ``drought_field`` on pre-loaded weather (a task's context loaded once) for
   --drought-fields fields spread over the county's region, against the users' 6-7 fields/s (sure2.md).
3. Planting + emergence throughput with the S2 COGs on the local S3 server (``/vsis3/``, unsigned,
   GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR): ours (one process; each process keeps its datasets open across
   the fields of a tile) against the naive per-field loop (every band file opened, read and closed for each
   field), the same fields and the same results checked equal; ours runs first, so whatever GDAL's /vsis3/
   cache keeps helps the naive loop, not ours. Uses GEOHPC_S3_ENDPOINT when a server
   answers there, else starts moto in-process.

Writes bench/RESULTS-sure2.md. Usage: python bench/bench_sure2.py [--clouds 0,0.3,0.45,0.6] [--per 25]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc.sure2 import accuracy, drought, emergence, planting, s2  # noqa: E402
from geohpc.sure2.climatology import build_climatology  # noqa: E402
from geohpc.sure2.collect import read_assessments  # noqa: E402
from geohpc.sure2.fields import Field, load_fields  # noqa: E402
from geohpc.sure2.weather import normalise  # noqa: E402
from geohpc.synth.county import make_county  # noqa: E402

CLIM = (2018, 2019, 2020, 2021, 2022)


def _chain(c: Any, root: Path, workers: int) -> list[dict[str, Any]]:
    """planting -> emergence -> drought -> assess on one county, in-process through the batch CLIs."""
    from geohpc.sure2 import assess

    f = ["--fields", str(c.fields), "--workers", str(workers)]
    quiet = open(os.devnull, "w")
    old, sys.stderr = sys.stderr, quiet
    try:
        assert planting.main(f + ["--stac", str(c.stac), "--weather", str(root / "w"), "--out", str(root / "p")]) == 0
        assert emergence.main(f + ["--stac", str(c.stac), "--planting", str(root / "p"), "--out", str(root / "e")]) == 0
        assert drought.main(f + ["--weather", str(root / "w"), "--climatology", str(root / "cl"), "--planting",
                                 str(root / "p"), "--out", str(root / "d")]) == 0
        assert assess.main(f + ["--planting", str(root / "p"), "--emergence", str(root / "e"), "--drought",
                                str(root / "d"), "--out", str(root / "a")]) == 0
    finally:
        sys.stderr = old
        quiet.close()
    return read_assessments(root / "a")


def accuracy_at(cloud: float, per: int, out: Path, workers: int) -> dict[str, Any]:
    root = out / f"cloud{int(cloud * 100):02d}"
    shutil.rmtree(root, ignore_errors=True)
    c = make_county(root / "county", clusters=6, fields_per_cluster=per, clim_years=CLIM, cloud=cloud, revisit=5, seed=21)
    normalise(c.raw, root / "w", list(CLIM))
    build_climatology(root / "w", list(CLIM), root / "cl")
    rows = _chain(c, root, workers)
    truth = accuracy.read_truth(c.truth)
    return {"cloud": cloud, **accuracy.accuracy(rows, truth), "identical": accuracy.identical_scores(rows),
            "county": c, "root": root}


def drought_rate(c: Any, root: Path, n: int) -> dict[str, Any]:
    """drought_field over n fields on pre-loaded weather: the load once, then the per-field lookups."""
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = 25.95, 44.95, 26.45, 45.25
    fields = []
    for i in range(n):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        ring = ((x, y), (x + 0.002, y), (x + 0.002, y + 0.002), (x, y + 0.002))
        fields.append(Field(f"D{i:06d}", "c", 2021 + i % 2, ring, {}))
    t0 = time.perf_counter()
    ctx = drought._context(str(root / "w"), str(root / "cl"), str(root / "p"))(fields)
    load_s = time.perf_counter() - t0
    held = sum(a.nbytes for src in ("era5", "chirps") for z in ctx[src].values() if z for a in z.values())
    t0 = time.perf_counter()
    res = [drought.drought_field(f, ctx) for f in fields]
    secs = time.perf_counter() - t0
    assert len({r["D"] for r in res}) > 1  # bug 8's guard
    return {"fields": n, "load_s": round(load_s, 3), "held_mb": round(held / 2**20, 1), "seconds": round(secs, 3),
            "fields_per_s": round(n / secs), "with_load_fields_per_s": round(n / (secs + load_s))}


def _s3(county: Any) -> tuple[Path, Any]:
    """The county's S2 on an S3 server (GEOHPC_S3_ENDPOINT, else moto in-process); its s3:// STAC."""
    from geohpc.synth.s12 import endpoint_up
    from geohpc.synth.sure2_demo import publish_s2

    server = None
    endpoint = os.environ.get("GEOHPC_S3_ENDPOINT", "127.0.0.1:9000")
    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    if not endpoint_up(endpoint):
        import socket

        from moto.server import ThreadedMotoServer

        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
    stac = publish_s2(county, endpoint)
    os.environ.update({"AWS_S3_ENDPOINT": endpoint.split("://", 1)[1], "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                       "AWS_NO_SIGN_REQUEST": "YES", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"})
    return stac, server


def _close_all() -> None:
    while s2._OPEN:
        s2._OPEN.popitem()[1].close()  # type: ignore[attr-defined]


def io_rate(county: Any, root: Path, limit: int) -> dict[str, Any]:
    """planting + emergence per field, ours vs the naive open-read-close loop, from /vsis3/."""
    stac, server = _s3(county)
    from geohpc.sure2.weather import load_npz

    fields = load_fields(county.fields)[:limit]
    ctx_p = {"items": s2.load_items(stac), "weather": {y: load_npz(root / "w" / f"era5land_{y}.npz") for y in (2021, 2022)}}
    out = root / "io"
    out.mkdir(exist_ok=True)

    def one(f: Field, naive: bool) -> tuple[Any, Any]:
        p = planting.planting_field(f, ctx_p)
        (out / f"{f.field_id}.json").write_text(json.dumps(p))
        if naive:
            _close_all()
        e = emergence.emergence_field(f, {"items": ctx_p["items"], "planting": out})
        if naive:
            _close_all()
        return p.get("planting_date"), e.get("not_emerged_share")

    res = {}
    try:
        for name, naive in (("ours", False), ("naive", True)):  # ours first: any warm cache helps the naive loop
            _close_all()
            t0 = time.perf_counter()
            got = [one(f, naive) for f in fields]
            res[name] = {"seconds": round(time.perf_counter() - t0, 2), "results": got}
        _close_all()
    finally:
        if server is not None:
            server.stop()
    assert res["naive"]["results"] == res["ours"]["results"], "ours and the naive loop disagree"
    n = len(fields)
    return {"fields": n, **{k: {"seconds": v["seconds"], "fields_per_s": round(n / v["seconds"], 1)} for k, v in res.items()},
            "ratio": round(res["ours"]["seconds"] / res["naive"]["seconds"], 3)}


def _md(accs: list[dict[str, Any]], dr: dict[str, Any], io: dict[str, Any], args: argparse.Namespace) -> str:
    load = os.getloadavg()
    lines = ["# Sure2 benchmark", "",
             f"`make bench BENCH=sure2` on {platform.node()} ({os.cpu_count()} CPUs, load {load[0]:.1f}), "
             f"{dt.date.today()}; synthetic counties of 6 S2 tiles x {args.per} fields x 2 years "
             f"({12 * args.per} field-years), 5-day revisit, clouds on 80 m cells with the chance given.", "",
             "## Accuracy against the synthetic truth (5-day revisit)", "",
             "| cloud | planting detected | mean err (d) | MAE (d) | RMSE (d) | not-emerged MAE (pp) | bias (pp) "
             "| claim agreement | drought-gate agreement | identical scores |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a in accs:
        p, e, d = a["planting"], a["emergence"], a["drought"]
        lines.append(f"| {a['cloud']:.0%} | {p['detection_rate']:.1%} ({p['detected']}/{p['fields']}) | {p['mean_days']} | "
                     f"{p['mae_days']} | {p['rmse_days']} | {e['mae_pp']} ({e['fields']} fields) | {e['bias_pp']} | "
                     f"{e['claim_agreement']:.1%} | {d['gate_agreement']:.1%} | {', '.join(a['identical']) or 'none'} |")
    lines += ["", "Published references for S2/HLS green-up (SURE2-NOTES): MAE under 7 d, RMSE under 9 d, ~95% found "
              "with a clear look every 10 days.", "",
              "## Drought scoring from pre-loaded weather", "",
              "| fields | weather held | load once | scoring | fields/s | fields/s incl. load | users (sure2.md) | ratio |",
              "|---|---|---|---|---|---|---|---|",
              f"| {dr['fields']} | {dr['held_mb']} MB | {dr['load_s']} s | {dr['seconds']} s | {dr['fields_per_s']} | "
              f"{dr['with_load_fields_per_s']} | 6-7 | {dr['fields_per_s'] / 6.5:.0f}x |", "",
              "## Planting + emergence from S2 COGs on the local S3 server (/vsis3/, one process)", "",
              "| fields | ours | naive open-read-close per field | ratio (ours/naive) |", "|---|---|---|---|",
              f"| {io['fields']} | {io['ours']['seconds']} s ({io['ours']['fields_per_s']} fields/s) | "
              f"{io['naive']['seconds']} s ({io['naive']['fields_per_s']} fields/s) | {io['ratio']}x |", "",
              "Same planting dates and not-emerged shares from both (checked). Ours keeps each process's datasets open "
              "across the fields of a tile (geohpc.sure2.s2, at most 128); the naive loop opens, reads and closes "
              "every band file for every field, as the users' first pipeline did.", "",
              "## What these numbers do and do not say", "",
              "- The synthetic truth follows the engine's own thermal-time rule (daily-mean GDD, base 4 C, 110 C.d) "
              "and the green-up lag was set on the synthetic canopy curve: the planting errors are a floor for real "
              "fields, where emergence, canopy shape and temperature differ. tests/sure2 hold the bounds (MAE < 7 d, "
              "RMSE < 9 d, not-emerged < 5 pp) on counties of other seeds.",
              "- Errors grow with clouds mostly through fewer clear dates near green-up and near DAP30: at 60% "
              "cloud a quarter of the fields have under 60% of their pixels clear within 10 days of DAP30 and get "
              "no not-emerged share (a reason instead).",
              "- Drought-gate agreement compares D > 0.5 with the truth's severity > 0.5 at the field's ERA5 cell: "
              "the two scales are not the same quantity, so fields near the threshold disagree.",
              "- The drought region here is a few ERA5/CHIRPS cells (0.3 MB); the users' 32 counties held ~700 MB. "
              "The per-field cost is a centroid index lookup either way, so the rate does not depend on the "
              "region's size; the load does.",
              "- The local S3 server answers in microseconds: on a real bucket each open costs a round trip or "
              "more (sure2.md: ~3 s a COG read with EMPTY_DIR), which the naive loop pays per field and ours once "
              "per process.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clouds", default="0,0.3,0.45,0.6")
    ap.add_argument("--per", type=int, default=25, help="fields a tile a year (6 tiles, 2 years)")
    ap.add_argument("--drought-fields", type=int, default=20000)
    ap.add_argument("--io-fields", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "sure2"))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS-sure2.md"))
    args = ap.parse_args()
    out = Path(args.out)
    accs = []
    for cloud in (float(x) for x in args.clouds.split(",")):
        t0 = time.perf_counter()
        a = accuracy_at(cloud, args.per, out, args.workers)
        accs.append(a)
        print(f"cloud {cloud:.0%}: planting {a['planting']}, emergence {a['emergence']}, drought {a['drought']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    ref = next((a for a in accs if abs(a["cloud"] - 0.3) < 1e-9), accs[0])
    dr = drought_rate(ref["county"], ref["root"], args.drought_fields)
    print(f"drought: {dr}", flush=True)
    io = io_rate(ref["county"], ref["root"], args.io_fields)
    print(f"planting+emergence on S3: {io}", flush=True)
    text = _md(accs, dr, io, args)
    Path(args.results).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
