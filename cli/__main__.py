"""``python -m waha_sync.cli``: the same entry point as the ``waha-sync`` script."""

import sys

from waha_sync.cli.main import main

sys.exit(main())
