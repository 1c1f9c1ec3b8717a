"""assess + collect on the synthetic county: versioned assessment JSONs, portfolio tables, summaries, report."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from geohpc.sure2 import assess, collect, drought, emergence, planting
from geohpc.sure2.assess import SCHEMA, decide
from geohpc.sure2.climatology import build_climatology
from geohpc.sure2.weather import normalise
from geohpc.synth.county import make_county


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    c = make_county(root / "county", clusters=2, fields_per_cluster=10, seed=8)
    normalise(c.raw, c.root / "weather", list(c.clim_years))
    build_climatology(c.root / "weather", list(c.clim_years), c.root / "clim")
    f = ["--fields", str(c.fields), "--workers", "2"]
    assert planting.main(f + ["--stac", str(c.stac), "--weather", str(c.root / "weather"), "--out", str(root / "p")]) == 0
    assert emergence.main(f + ["--stac", str(c.stac), "--planting", str(root / "p"), "--out", str(root / "e")]) == 0
    assert drought.main(f + ["--weather", str(c.root / "weather"), "--climatology", str(c.root / "clim"),
                             "--planting", str(root / "p"), "--out", str(root / "d")]) == 0
    return c, root


def _assess(c, root, out, drought_dir="d"):
    return assess.main(["--fields", str(c.fields), "--planting", str(root / "p"), "--emergence", str(root / "e"),
                        "--drought", str(root / drought_dir) if drought_dir else "", "--out", str(out), "--workers", "2"])


def test_decision_rule():
    ok = {"pass": True, "planting_date": "2021-04-20"}
    assert decide(None, None, None)["code"] == "not_assessable"
    assert decide({"pass": False, "reason": "gaps too long"}, None, None)["reason"].endswith("gaps too long")
    assert decide(ok, {"not_emerged_share": 0.1}, {"D": 0.9, "gate": True})["code"] == "no_claim"
    assert decide(ok, {"not_emerged_share": 0.3}, {"D": 0.6, "gate": True})["code"] == "claim"
    assert decide(ok, {"not_emerged_share": 0.4}, {"D": 0.2, "gate": False})["code"] == "claim_no_drought"
    assert "unknown" in decide(ok, {"not_emerged_share": 0.4}, None)["reason"]


def test_assessments_are_versioned_and_complete(chain, tmp_path):
    c, root = chain
    out = tmp_path / "a"
    assert _assess(c, root, out) == 0
    ids = [f["properties"]["field_id"] for f in json.loads(c.fields.read_text())["features"]]
    docs = {p.stem: json.loads(p.read_text()) for p in out.glob("F*.json")}
    assert sorted(docs) == sorted(ids)
    d = docs[ids[0]]
    assert d["schema"] == SCHEMA and d["year"] in (2021, 2022) and d["county"] and len(d["centroid"]) == 2
    assert d["inputs"]["planting"]["modified"] and d["inputs"]["drought"]["window_start"]
    assert {d["decision"]["code"] for d in docs.values()} >= {"no_claim"}
    assert all(x["decision"]["code"] != "claim" or x["drought"]["gate"] for x in docs.values())
    assert not list(out.glob(".*tmp*"))  # atomic: no temporaries left


def test_missing_drought_output_is_a_warning_not_a_claim(chain, tmp_path):
    c, root = chain
    (tmp_path / "nod").mkdir()
    assert _assess(c, root, tmp_path / "a", drought_dir=None) == 0
    docs = [json.loads(p.read_text()) for p in (tmp_path / "a").glob("F*.json")]
    assert all(any("drought: output missing" in w for w in d["warnings"]) for d in docs)
    assert not any(d["decision"]["code"] == "claim" for d in docs)


def test_collect_tables_summaries_and_report(chain, tmp_path, capsys):
    c, root = chain
    _assess(c, root, tmp_path / "a")
    assert collect.main(["--assess", str(tmp_path / "a"), "--out", str(tmp_path / "c"), "--truth", str(c.truth)]) == 0
    out = tmp_path / "c"
    df = pd.read_parquet(out / "portfolio.parquet")
    assert len(df) == 40 and set(df["decision"]) <= {"claim", "claim_no_drought", "no_claim", "not_assessable"}
    assert len(pd.read_csv(out / "portfolio.csv")) == 40
    years = {r["year"]: r for r in csv.DictReader(open(out / "summary_by_year.csv"))}
    assert set(years) == {"2021", "2022", "all"} and int(years["all"]["fields"]) == 40
    # the drought year of the synthetic county scores higher than the wet year
    assert float(years["2022"]["mean_D"]) > float(years["2021"]["mean_D"])
    passed = df[df.planting_pass & df.not_emerged_share.notna()]
    assert float(years["all"]["claim_rate_pct"]) == round(100 * passed.claim_eligible.mean(), 1)
    counties = {r["county"] for r in csv.DictReader(open(out / "summary_by_county.csv"))}
    assert counties == {"Buzau", "Braila", "all"}
    page = (out / "report.html").read_text()
    assert page.rstrip().endswith("</html>") and page.count("data:image/png;base64,") == 2
    assert "Measured against the truth" in page and "planting: mae_days" in page
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["report"] == str(out / "report.html")


def test_collect_refuses_another_schema_in_one_line(chain, tmp_path, capsys):
    a = tmp_path / "a"
    a.mkdir()
    (a / "F1.json").write_text(json.dumps({"schema": "sure2.assessment/0", "field_id": "F1"}))
    assert collect.main(["--assess", str(a), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sure2.assessment/1" in err[0] and "F1.json" in err[0]
    assert not (tmp_path / "c" / "report.html").exists()
