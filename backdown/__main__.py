"""`python -m backdown` runs the command line (no arguments: the menu)."""

import sys

from backdown.cli import main

sys.exit(main())
