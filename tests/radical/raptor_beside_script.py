"""A module beside the "workflow script": functions from it are pickled by reference, so the
Raptor worker must be able to import it (tests/radical is on the client's sys.path)."""

import os


def where(x):
    return x * 3, os.getpid()
