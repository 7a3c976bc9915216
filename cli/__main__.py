"""``python -m waha_sync``: the same entry point as the ``waha-sync`` script."""

import sys

from waha_sync.main import main

sys.exit(main())
