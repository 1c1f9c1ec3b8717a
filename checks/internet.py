"""internet: a stage that downloads cannot run on compute nodes without internet."""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "internet"
DESCRIPTION = "a downloading stage on a site whose compute nodes have no internet (INTERNET=no)"
STAGES = "all"
REMOTE_PREFIXES = ("http://", "https://", "s3://", "/vsis3/", "/vsicurl/", "/vsiaz/", "gs://")


def _downloading_stages() -> list[str]:
    from geohpc.core.stages import get_stage, stage_names

    return [n for n in stage_names() if get_stage(n).downloads]


def check(ctx: PreflightContext) -> Result:
    """Fail when the stage downloads and the site says INTERNET=no."""
    site = ctx.site.get("SITE_NAME", "?")
    online = ctx.site.get("INTERNET", "yes").strip().lower() != "no"
    fix = (f"pre-stage the data: run the download stage on a machine with internet (SITE=local or the login "
           f"node), rsync it to {ctx.work}/data, then submit the next stage on {site}")
    if ctx.stage is None:
        dl = _downloading_stages()
        if dl and not online:
            return warn(f"stages {', '.join(dl)} download, and {site}'s compute nodes have no internet", fix)
        return ok(f"site {site} INTERNET={'yes' if online else 'no'}")
    if not ctx.downloads:
        remote = [f"{k}={v}" for k, v in ctx.params.items() if v.startswith(REMOTE_PREFIXES)]
        if remote and not online:
            return warn(f"stage {ctx.stage} reads {remote[0]}, and {site} compute nodes have no internet "
                        "(only some http(s) passes a proxy)", fix)
        return ok(f"stage {ctx.stage} does not download")
    if online:
        return ok(f"stage {ctx.stage} downloads; {site} compute nodes have internet")
    proxy = [k for k in ctx.env if k.lower() in ("http_proxy", "https_proxy")]
    note = f" (a proxy is set: {', '.join(proxy)}, but downloads through it time out at scale)" if proxy else ""
    return fail(f"stage {ctx.stage} downloads, but {site} compute nodes have no internet{note}", fix)
