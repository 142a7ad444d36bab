"""Helpers for tests on the Slurm cluster of ``tools/slurm.sh``: what Slurm says about jobs,
which processes a test left, what appeared outside the temporary folders.

What Slurm did is read from Slurm (``squeue``, the jobcomp file of ``JobCompType=jobcomp/filetxt``),
not taken from RADICAL-Pilot's word.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time
import typing

from cli import REPO
from scalems.execution.processes import processes_marked

SLURM_SH = REPO / "tools" / "slurm.sh"
#: The test run's own environment serves as the task environment (the pilot agent uses it too:
#: the resource config says virtenv_mode=local).
VENV = sys.prefix
RP_OPTIONS = ["--resource", "local.slurm", "--venv", VENV, "--pilot-option", "runtime=10"]
#: squeue states of a job that has not ended.
ACTIVE_STATES = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "REQUEUED",
    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD",
}


class SlurmCluster:
    """The running cluster: how to reach it and what it says about jobs."""

    def __init__(self, conf: pathlib.Path):
        self.conf = conf
        self.env = {"SLURM_CONF": str(conf)}
        text = conf.read_text()
        found = re.search(r"^JobCompLoc=(.+)$", text, re.MULTILINE)
        assert found, f"{conf} has no JobCompLoc"
        self.jobcomp = pathlib.Path(found.group(1).strip())

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60, check=check
        )

    def jobs(self) -> typing.List[dict]:
        """Every job squeue still knows (finished ones for MinJobAge, 300 s): id, state, work dir."""
        out = self._run("squeue", "-h", "-t", "all", "-o", "%i|%T|%Z").stdout
        jobs = []
        for line in out.splitlines():
            job_id, state, workdir = line.split("|", 2)
            jobs.append({"JobId": job_id, "JobState": state, "WorkDir": workdir})
        return jobs

    def jobs_under(self, directory: pathlib.Path) -> typing.List[dict]:
        """squeue's jobs whose work directory is *directory* or below it."""
        prefix = str(directory)
        return [job for job in self.jobs() if job["WorkDir"] == prefix or job["WorkDir"].startswith(prefix + "/")]

    def active_jobs_under(self, directory: pathlib.Path) -> typing.List[dict]:
        return [job for job in self.jobs_under(directory) if job["JobState"] in ACTIVE_STATES]

    def completed_records(self) -> typing.List[dict]:
        """The jobcomp file's records (one line per finished job, ``Key=Value`` fields)."""
        records = []
        for line in self.jobcomp.read_text(errors="replace").splitlines():
            record = dict(field.split("=", 1) for field in line.split() if "=" in field)
            if record.get("JobId"):
                records.append(record)
        return records

    def scancel(self, job_id: str) -> None:
        self._run("scancel", job_id)

    def sbatch(self, *args: str) -> str:
        """Submit a job with ``sbatch --parsable ARGS``; its id."""
        return self._run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]


def pilot_sandboxes(work: pathlib.Path) -> list:
    """The pilot sandboxes of the runs in *work* (a local.* pilot's sandbox is under the work directory)."""
    return sorted((work / "scalems_radical" / "radical.pilot.sandbox").glob("rp.session.*/pilot.*"))


def processes_with(marker: str) -> typing.List[int]:
    """PIDs (any user's, not zombies, not this process) whose command line, working directory or
    environment has *marker*."""
    return processes_marked([marker], any_user=True)


def wait_for(predicate, timeout: float, interval: float = 0.5):
    """Poll *predicate* until it returns something true (returned) or *timeout* s pass (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


#: Names RP, psij or a pilot job could leave in shared places (checked before and after each test).
_SHARED = [pathlib.Path("/tmp"), pathlib.Path("/var/tmp"), pathlib.Path("/dev/shm")]
_RP_NAME = re.compile(r"^(rp\.|radical|\.radical|\.psij|psij|pilot\.|bootstrap|slurm-\d+\.out)")


def outside_snapshot() -> typing.Set[str]:
    """Entries in shared temporary folders and the real home that look like RP's, psij's or Slurm's."""
    import pwd

    home = pathlib.Path(pwd.getpwuid(os.getuid()).pw_dir)
    names = set()
    for folder in _SHARED + [home]:
        try:
            names.update(str(path) for path in folder.iterdir() if _RP_NAME.match(path.name))
        except OSError:
            continue
    return names


def _mentions(path: pathlib.Path, markers: typing.Sequence[str], budget: typing.List[int]) -> bool:
    """True if *path*'s name, or (for files) its start, or anything below it (for folders) has a marker."""
    if budget[0] <= 0:
        return False
    budget[0] -= 1
    if any(marker in path.name for marker in markers):
        return True
    try:
        if path.is_symlink():
            return any(marker in os.readlink(path) for marker in markers)
        if path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(1 << 20)
            return any(marker.encode() in head for marker in markers)
        if path.is_dir():
            return any(_mentions(child, markers, budget) for child in path.iterdir())
    except OSError:
        pass
    return False


def left_outside(before: typing.Set[str], tmp_path: pathlib.Path) -> typing.List[str]:
    """What appeared outside the temporary folders since *before* and belongs to the test in *tmp_path*.

    Other runs on a shared machine create such entries too; one belongs to this test when its
    name or content has the test's directory or the id of one of its RP sessions.
    """
    sids = {path.name for path in tmp_path.glob("**/scalems_radical/rp.session.*")}
    markers = [str(tmp_path), *sorted(sids)]
    return sorted(
        entry for entry in outside_snapshot() - before if _mentions(pathlib.Path(entry), markers, [2000])
    )
