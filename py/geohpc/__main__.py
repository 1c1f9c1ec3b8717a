"""``python -m geohpc <command>``: see :mod:`geohpc.cli`."""

import sys

from geohpc.cli import main

sys.exit(main())
