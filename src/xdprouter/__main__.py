"""`python -m xdprouter`: the xdprouter command."""

import sys

from .cli import main

sys.exit(main())
