"""A task's stderr file holds the program's stderr, not the lines srun adds around it on Slurm."""

from __future__ import annotations

import pytest

pytest.importorskip("radical.pilot")

from scalems.radical.task import _drop_launcher_lines  # noqa: E402

WAITED = b"srun: Job 84 step creation temporarily disabled, retrying (Requested nodes are busy)\nsrun: Step created for job 84\n"
FAILED = b"srun: error: vm: task 0: Exited with exit code 3\n"


@pytest.mark.parametrize(
    "content, failed, expected",
    [
        (b"oops\n" + FAILED, True, b"oops\n"),
        (WAITED + b"not yet\n", True, b"not yet\n"),
        (WAITED + b"fine\n", False, b"fine\n"),
        (WAITED + b"oops\n" + FAILED, True, b"oops\n"),
        # A program's own line that merely mentions srun stays; so does a successful task's last line.
        (b"calling srun: no\nsrun: the program said this last\n", False, b"calling srun: no\nsrun: the program said this last\n"),
        (b"", True, b""),
    ],
)
def test_launcher_lines_leave_the_program_stderr(tmp_path, caplog, content, failed, expected):
    path = tmp_path / "stderr"
    path.write_bytes(content)
    with caplog.at_level("INFO", logger="scalems.radical.task"):
        _drop_launcher_lines(path, "task", failed=failed)
    assert path.read_bytes() == expected
    if expected != content:
        assert "srun: " in caplog.text  # what srun said goes to the log


def test_long_stderr_keeps_everything_before_the_report(tmp_path):
    path = tmp_path / "stderr"
    body = b"".join(b"line %d\n" % i for i in range(5000))
    path.write_bytes(body + FAILED)
    _drop_launcher_lines(path, "task", failed=True)
    assert path.read_bytes() == body
