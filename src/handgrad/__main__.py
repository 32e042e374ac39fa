"""``python -m handgrad``: the ``handgrad`` command."""

import sys

from .cli import main

sys.exit(main())
