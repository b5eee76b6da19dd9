"""``python -m seqlab ...`` is the ``seqlab`` command (heavy commands re-execute once with
huge-page malloc, as the console script does: ``seqlab_entry.reexec_with_hugepages``)."""

import sys

from seqlab_entry import reexec_with_hugepages

reexec_with_hugepages(sys.argv)

from seqlab.tools.cli import main  # noqa: E402

sys.exit(main())
