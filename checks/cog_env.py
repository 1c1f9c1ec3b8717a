"""cog_env: Sentinel-2 COGs read over S3/HTTP without AWS_NO_SIGN_REQUEST and GDAL_DISABLE_READDIR_ON_OPEN.

sure2.md ("Environment Variables -- The Critical Ones"): without ``AWS_NO_SIGN_REQUEST=YES`` rasterio looks
for AWS credentials HPC nodes do not have and fails with an opaque error on the public Earth Search bucket;
without ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` GDAL lists the S3 folder before every open (reads ~12 s
instead of ~3 s). Both belong in the site (``CONTAINER_ENV``, passed into the container; ``JOB_ENV``, exported by
every job, venv sites included) or in the environment the jobs inherit; never set by hand in a script.
"""

from __future__ import annotations

import json

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "cog_env"
DESCRIPTION = "S2 COGs over S3/HTTP without AWS_NO_SIGN_REQUEST=YES / GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR"
STAGES = ("planting", "emergence", "download")


def _remote(ctx: PreflightContext) -> set[str]:
    """'s3' and/or 'http' when the STAC's first items point there."""
    path = ctx.params.get("STAC", "")
    kinds: set[str] = set()
    try:
        feats = json.loads(open(path).read()).get("features", [])[:5] if path else []
    except (OSError, ValueError, AttributeError):
        return kinds
    for f in feats:
        for a in (f.get("assets") or {}).values():
            href = str(a.get("href", ""))
            kinds |= {"s3"} if href.startswith(("s3://", "/vsis3/")) else set()
            kinds |= {"http"} if href.startswith(("http://", "https://", "/vsicurl/")) else set()
    return kinds


def check(ctx: PreflightContext) -> Result:
    """Fail: unsigned S3 reads would look for credentials; warn: every open lists the folder."""
    kinds = _remote(ctx)
    if not kinds:
        return ok("the STAC's assets are local files (or no STAC=): no S3/HTTP reads")
    pairs = dict(p.split(":", 1) for key in ("CONTAINER_ENV", "JOB_ENV")
                 for p in ctx.site.get(key, "").split(",") if ":" in p)
    seen = {**ctx.env, **ctx.job_env, **pairs}
    site = ctx.site.get("SITE_NAME", "?")
    fix = (f"add AWS_NO_SIGN_REQUEST:YES,GDAL_DISABLE_READDIR_ON_OPEN:EMPTY_DIR to CONTAINER_ENV in sites/{site}.env "
           "(a venv site: the same pairs in JOB_ENV, which every job exports)")
    creds = any(k in seen for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SESSION_TOKEN"))
    if "s3" in kinds and seen.get("AWS_NO_SIGN_REQUEST", "").upper() != "YES" and not creds:
        return fail("the STAC points at s3:// and neither AWS_NO_SIGN_REQUEST=YES nor AWS credentials reach the jobs: "
                    "every read fails looking for credentials (sure2.md)", fix)
    if seen.get("GDAL_DISABLE_READDIR_ON_OPEN", "").upper() != "EMPTY_DIR":
        return warn("GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR is not set for the jobs: GDAL lists the bucket folder "
                    "before each COG open (sure2.md: reads ~12 s instead of ~3 s)", fix)
    return ok(f"{'/'.join(sorted(kinds))} reads with AWS_NO_SIGN_REQUEST and GDAL_DISABLE_READDIR_ON_OPEN set")
