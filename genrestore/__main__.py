"""``python -m genrestore ...``: the ``genrestore`` command."""

import sys

from .cli import main

sys.exit(main())
