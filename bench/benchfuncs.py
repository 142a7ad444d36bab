"""Workload functions shared by scalems and its peers.

They live in an importable module (bench/ is put on ``sys.path`` / ``PYTHONPATH``
for every benchmark process) so that every system under test ships them by
reference, the cheapest way each one has.
"""

import os
import subprocess


def noop(i):
    """W2/W4: the smallest possible function task."""
    return i


def run_true(i):
    """W1 (Dask): run ``/bin/true`` from inside a worker."""
    return subprocess.run(["/bin/true"], check=True).returncode


def tally(i, path):
    """W3: like :func:`noop`, but leaves one byte in *path* per call, so executions can be counted."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return i
