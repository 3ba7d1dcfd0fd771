"""``python -m aurora_backend.simulator``: run the simulator from the command line."""

import sys

from aurora_backend.simulator.cli import main

sys.exit(main())
