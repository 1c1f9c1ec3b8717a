"""redact: the end of a signed URL in an error line."""

from __future__ import annotations


def test_a_colon_after_a_signed_url_is_kept() -> None:
    """An error line 'file?sig=x: what' keeps its ': what' (the signature ends at the colon before a space)."""
    from geohpc.util import redact

    line = redact("/vsicurl/https://a/x.tif?se=2030-01-01T00:00:00Z&sig=abc: not a readable raster")
    assert line == "/vsicurl/https://a/x.tif?se=REDACTED&sig=REDACTED: not a readable raster"
