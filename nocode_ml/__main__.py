"""``python -m nocode_ml`` runs the CLI."""

import sys

from nocode_ml.cli import main

sys.exit(main())
