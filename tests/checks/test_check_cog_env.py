"""cog_env: unsigned S3 reads need AWS_NO_SIGN_REQUEST; every remote open wants GDAL_DISABLE_READDIR_ON_OPEN."""

from __future__ import annotations

import json


def _stac(tmp_path, href):
    p = tmp_path / "items.json"
    p.write_text(json.dumps({"features": [{"assets": {"red": {"href": href}}}]}))
    return str(p)


def test_cog_env_ok_when_the_site_passes_both(make_ctx, run_check, tmp_path) -> None:
    stac = _stac(tmp_path, "s3://sentinel-cogs/a/B04.tif")
    site = {"SITE_NAME": "saga", "CONTAINER_ENV": "AWS_NO_SIGN_REQUEST:YES,GDAL_DISABLE_READDIR_ON_OPEN:EMPTY_DIR"}
    assert run_check("cog_env", make_ctx(site=site, stage="planting", params={"STAC": stac})).status == "ok"
    local = _stac(tmp_path, "../s2/a/B04.tif")
    assert run_check("cog_env", make_ctx(stage="planting", params={"STAC": local})).status == "ok"


def test_cog_env_fails_without_unsigned_and_warns_without_readdir(make_ctx, run_check, tmp_path) -> None:
    stac = _stac(tmp_path, "s3://sentinel-cogs/a/B04.tif")
    res = run_check("cog_env", make_ctx(site={"SITE_NAME": "betzy", "CONTAINER_ENV": "PYTHONUNBUFFERED:1"},
                                       stage="emergence", params={"STAC": stac}))
    assert res.status == "fail" and "AWS_NO_SIGN_REQUEST" in res.message and "sites/betzy.env" in res.fix
    res = run_check("cog_env", make_ctx(stage="planting", params={"STAC": _stac(tmp_path, "https://x.org/B04.tif")},
                                       env={"HOME": str(tmp_path)}))
    assert res.status == "warn" and "GDAL_DISABLE_READDIR_ON_OPEN" in res.message


def test_cog_env_takes_a_venv_sites_job_env_and_betzy_ships_both(make_ctx, run_check, tmp_path) -> None:
    from geohpc.core.site import load_site

    stac = _stac(tmp_path, "s3://sentinel-cogs/a/B04.tif")
    site = {"SITE_NAME": "local", "JOB_ENV": "AWS_NO_SIGN_REQUEST:YES,GDAL_DISABLE_READDIR_ON_OPEN:EMPTY_DIR"}
    assert run_check("cog_env", make_ctx(site=site, stage="planting", params={"STAC": stac})).status == "ok"
    betzy = load_site("betzy", cli={}, env={})
    site = {"SITE_NAME": "betzy", "CONTAINER_ENV": betzy.get("CONTAINER_ENV")}
    assert run_check("cog_env", make_ctx(site=site, stage="planting", params={"STAC": stac})).status == "ok"
