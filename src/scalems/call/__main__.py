"""``python -m scalems.call IN OUT``: run one serialized call in a fresh process (see :func:`scalems.call.cli`)."""

import sys

from scalems.call import cli

if __name__ == "__main__":
    sys.exit(cli(*sys.argv))
