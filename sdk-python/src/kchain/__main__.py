"""python -m kchain: the command line (see kchain.cli)."""

import sys

from .cli import main

sys.exit(main())
