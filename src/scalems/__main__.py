"""``python -m scalems``: the commands that look into a work directory (see :mod:`scalems.cli`)."""

import sys

from scalems.cli import main

if __name__ == "__main__":
    sys.exit(main())
