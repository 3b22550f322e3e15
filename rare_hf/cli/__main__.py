"""``python -m rare_hf.cli``."""

import sys

from . import main

sys.exit(main())
