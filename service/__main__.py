"""``python -m service`` is the ``densehead`` command (see :mod:`service.cli`)."""

import sys

from .cli import main

sys.exit(main())
