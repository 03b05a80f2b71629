"""``python -m pintu``: the same as the ``pintu`` command."""

import sys

from pintu.cli import main

sys.exit(main())
