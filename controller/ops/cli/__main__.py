"""`python -m controller.ops.cli`."""

import sys

from controller.ops.cli import main

sys.exit(main())
