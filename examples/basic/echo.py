"""The smallest workflow: run ``echo`` with this script's arguments.

    python -m scalems.local examples/basic/echo.py hello world
"""

import sys

import scalems


@scalems.app
def main():
    task = scalems.executable(["echo", *sys.argv[1:]], label="echo")
    print(f"echo wrote: {open(task.result().stdout).read().strip()!r} to {task.result().stdout}")
