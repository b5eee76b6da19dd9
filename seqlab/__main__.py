"""``python -m seqlab ...`` is the ``seqlab`` command."""

import sys

from seqlab.tools.cli import main

sys.exit(main())
