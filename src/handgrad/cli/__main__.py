"""``python -m handgrad.cli``: the ``handgrad`` command."""

import sys

from . import main

sys.exit(main())
