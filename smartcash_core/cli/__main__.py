"""``python -m smartcash_core.cli`` (and ``torchrun ... -m smartcash_core.cli validate ...``)."""

import sys

from smartcash_core.cli import main

sys.exit(main())
