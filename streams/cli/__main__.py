"""``python -m streams.cli`` runs the ``relsec`` command."""

import sys

from streams.cli import main

sys.exit(main())
