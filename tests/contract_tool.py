"""The program the contract suite's executables run, so that every backend can run them.

Process backends run it as ``python contract_tool.py STEP + STEP ...``; the
in-memory backend calls :func:`run` in-process as the stand-in program
``contract-tool``. It knows a few steps, run in order (``+`` separates them);
the arguments scalems appends (``inputs=`` / ``outputs=`` flags) go to the last:

- ``echo WORD...``: the words on stdout
- ``cat [FILE...]`` or ``cat -i FILE``: the files (stdin when none) on stdout
- ``write TEXT FILE``: *TEXT* and a newline into *FILE*
- ``append TEXT FILE``: a line onto *FILE* (a launch counter)
- ``copy SRC DST`` or ``copy -i SRC -o DST``: copy a file
- ``env NAME``: the variable's value on stdout
- ``fail CODE MESSAGE``: *MESSAGE* on stderr, exit status *CODE*
- ``wait-for FILE``: wait (at most 120 s) until *FILE* exists
- ``sleep SECONDS``: sleep
- ``fail-until N FILE``: append a line to *FILE*; fail (status 1) while it has fewer than *N* lines
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import threading
import time
import typing


def run(argv, *, stdin: typing.Callable[[], str], stdout, stderr, env, cwd, cancelled=None) -> int:
    """Run the steps of *argv* (without the program name); returns the exit status.

    *cancelled* (an Event) ends waits early: the in-memory backend sets it instead of killing.
    """
    cancelled = cancelled or threading.Event()
    cwd = pathlib.Path(cwd)
    steps, current = [], []
    for arg in argv:
        if arg == "+":
            steps.append(current)
            current = []
        else:
            current.append(arg)
    steps.append(current)
    for name, *args in steps:
        if name == "echo":
            stdout.write(" ".join(args) + "\n")
        elif name == "cat":
            args = [a for a in args if a != "-i"]
            if args:
                for path in args:
                    stdout.write((cwd / path).read_text())
            else:
                stdout.write(stdin())
        elif name in ("write", "append"):
            with open(cwd / args[1], "w" if name == "write" else "a") as fh:
                fh.write(args[0] + "\n")
        elif name == "copy":
            paths = [a for a in args if a not in ("-i", "-o")]
            shutil.copyfile(cwd / paths[0], cwd / paths[1])
        elif name == "env":
            stdout.write(env.get(args[0], "") + "\n")
        elif name == "fail":
            stderr.write(" ".join(args[1:]) + "\n")
            return int(args[0])
        elif name == "wait-for":
            deadline = time.monotonic() + 120
            while not (cwd / args[0]).exists():
                if time.monotonic() > deadline or cancelled.wait(0.02):
                    stderr.write(f"gave up waiting for {args[0]}\n")
                    return 2
        elif name == "sleep":
            if cancelled.wait(float(args[0])):
                return 130
        elif name == "fail-until":
            with open(cwd / args[1], "a") as fh:
                fh.write("attempt\n")
            if len((cwd / args[1]).read_text().splitlines()) < int(args[0]):
                stderr.write("not yet\n")
                return 1
        else:
            stderr.write(f"contract_tool: unknown step {name!r}\n")
            return 64
    return 0


def stand_in(program_run) -> int:
    """The in-memory backend's stand-in (:class:`scalems.memory.ProgramRun`)."""
    return run(
        program_run.argv[1:],
        stdin=lambda: program_run.stdin or "",
        stdout=program_run.stdout,
        stderr=program_run.stderr,
        env=program_run.env,
        cwd=program_run.directory,
        cancelled=program_run.cancelled,
    )


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=False)
    sys.exit(run(sys.argv[1:], stdin=sys.stdin.read, stdout=sys.stdout, stderr=sys.stderr, env=os.environ, cwd=os.getcwd()))
