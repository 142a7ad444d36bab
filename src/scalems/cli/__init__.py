"""``python -m scalems COMMAND``: see what happened in a work directory, and forget results.

One module per command, on a shared model of a run:

- :mod:`.runview`: one run of a work directory, assembled from the record's run history.
- :mod:`.status`: ``status [WORK_DIR]``, counts and a table of the tasks (``--failed``, ``--json``).
- :mod:`.forget`: ``forget [--work-dir DIR] LABEL... | --failed``, so the next run executes them again.
- :mod:`.report`: ``report [WORK_DIR] -o report.html``, one self-contained page (with :mod:`.plots`,
  matplotlib from the optional extra ``scalems[report]``).
- :mod:`.text`: durations, times and aligned tables.

Exit statuses: 0 success (``status``: nothing failed), 1 failure (``status``: something
failed; ``forget``: the work directory is in use), 2 usage error (no record there,
unknown label, missing extra).
"""

from __future__ import annotations

__all__ = ("main", "parser")

import argparse
import os
import sys
import typing

from scalems._version import __version__
from scalems.invocation import EXIT_USAGE, HelpFormatter

from . import forget, report, status
from .runview import UsageError


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m scalems",
        formatter_class=HelpFormatter,
        description="See what happened in a scalems work directory, and forget results so they are computed again. "
        "Workflows themselves run with python -m scalems.local or python -m scalems.radical.",
    )
    top.add_argument("--version", action="version", version=f"scalems {__version__}")
    commands = top.add_subparsers(title="commands", metavar="COMMAND")
    for module in (status, forget, report):
        module.add_parser(commands, HelpFormatter)
    return top


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    """Run one command; returns its exit status."""
    top = parser()
    args = top.parse_args(sys.argv[1:] if argv is None else list(argv))
    command = getattr(args, "command", None)
    if command is None:
        top.print_usage(sys.stderr)
        print("python -m scalems: error: give a command: status, forget or report (-h for help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except UsageError as error:
        print(f"python -m scalems {args.command_name}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into head: what was wanted was written; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
