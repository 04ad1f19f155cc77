"""``python -m helpers.train``: train a detector from the command line (see :mod:`helpers.train.cli`)."""

import sys

from helpers.train.cli import main

sys.exit(main())
