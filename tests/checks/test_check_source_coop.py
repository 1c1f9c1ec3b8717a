"""source_coop: at most 12 downloads at once from data.source.coop (emb-errors.md: HTTP 502 past ~12-20)."""

from __future__ import annotations

import json

from geohpc.preflight.context import Resources

AEF = "https://data.source.coop/tge-labs/aef/v1/annual/2023/35T/x.tiff"


def _stac(tmp_path, href):
    p = tmp_path / "items.json"
    p.write_text(json.dumps({"features": [{"assets": {"emb": {"href": href}}}]}))
    return str(p)


def test_source_coop_ok_elsewhere_and_within_twelve(make_ctx, run_check, tmp_path) -> None:
    other = _stac(tmp_path, "https://earth-search.aws.element84.com/v1/B04.tif")
    res = run_check("source_coop", make_ctx(stage="download", params={"STAC": other},
                                            resources=Resources(array_size=500)))
    assert res.status == "ok" and "no reads" in res.message
    stac = _stac(tmp_path, AEF)
    res = run_check("source_coop", make_ctx(stage="download", params={"STAC": stac},
                                            resources=Resources(array_size=500, throttle=12)))
    assert res.status == "ok" and "12 downloads" in res.message


def test_source_coop_warns_above_twelve_and_fails_above_twenty(make_ctx, run_check, tmp_path) -> None:
    stac = _stac(tmp_path, AEF)
    res = run_check("source_coop", make_ctx(stage="download", params={"STAC": stac},
                                            resources=Resources(array_size=500, throttle=16)))
    assert res.status == "warn" and "THROTTLE=12" in res.fix
    res = run_check("source_coop", make_ctx(stage="download", params={"STAC": stac},
                                            resources=Resources(array_size=40)))
    assert res.status == "fail" and "502" in res.message and "40 downloads" in res.message


def test_source_coop_counts_packed_workers(make_ctx, run_check, tmp_path) -> None:
    stac = _stac(tmp_path, AEF)
    params = {"STAC": stac, "PACK": "50", "WORKERS": "4"}
    res = run_check("source_coop", make_ctx(stage="download", params=params,
                                            resources=Resources(array_size=10, throttle=6)))
    assert res.status == "fail" and "24 downloads" in res.message and "THROTTLE=3" in res.fix
    res = run_check("source_coop", make_ctx(stage="download", params=params,
                                            resources=Resources(array_size=10, throttle=3)))
    assert res.status == "ok"
