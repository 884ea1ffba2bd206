"""``python -m datago``: the ``datago`` command (datago.cli)."""

import sys

from .cli import main

sys.exit(main())
