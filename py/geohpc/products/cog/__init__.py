"""cog: any GeoTIFF -> a validated Cloud Optimized GeoTIFF, fast on striped many-band input.

``make_cog`` builds one (see :mod:`geohpc.products.cog.build` for the method), ``validate_cog`` lists the
layout problems of an existing file. CLI: ``python -m geohpc cog SRC DST`` or ``--check PATH``.
"""

from geohpc.products.cog.build import make_cog, overview_factors, predictor_for
from geohpc.products.cog.layout import read_ifds, validate_cog

__all__ = ["make_cog", "overview_factors", "predictor_for", "read_ifds", "validate_cog"]
