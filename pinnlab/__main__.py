"""``python -m pinnlab``: the same as the ``pinnlab`` command."""

import sys

from pinnlab.cli import main

sys.exit(main())
