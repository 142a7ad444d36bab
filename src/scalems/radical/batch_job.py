"""The batch job behind a pilot, for error messages: its id and the pilot's log.

RADICAL-Pilot 1.103 does not expose the id of a pilot's batch job (psij's "native id"). It
can be found in two places, both read here:

- the pilot sandbox, once the job runs: ``bootstrap_0.sh`` saves the job's environment in
  ``env/bs0_orig.env`` (``SLURM_JOB_ID=5``, ``PBS_JOBID=...``, ``LSB_JOBID=...``);
- the client session folder, from submission on: RP's psij launcher (component
  ``pmgr_launching``) logs psij's ``Job <uuid>: native id: 5`` into ``pmgr_launching.*.err``.
  That line does not name the pilot; scalems runs one pilot per session, so it is used
  only when the session submitted exactly one job.

Only pilots submitted to a batch system (the resource's ``job_manager_endpoint`` is
``slurm://``, ``pbs://``, ``lsf://``, ...) have a batch job; a ``fork://`` pilot has none, even
when the client runs inside a Slurm job. Nothing here raises: a message about a failed
pilot must not fail in turn.
"""

from __future__ import annotations

__all__ = ("batch_job_id", "batch_system", "pilot_job_note")

import pathlib
import re
import typing
import urllib.parse

#: The variable each batch system sets to the job id in its jobs.
_JOB_ID_VARIABLES = {"Slurm": "SLURM_JOB_ID", "PBS": "PBS_JOBID", "LSF": "LSB_JOBID", "Cobalt": "COBALT_JOBID"}

#: psij's batch executors: which name a ``job_manager_endpoint`` scheme stands for.
_SCHEMES = {"slurm": "Slurm", "pbs": "PBS", "pbspro": "PBS", "lsf": "LSF", "cobalt": "Cobalt"}

_NATIVE_ID = re.compile(r"Job (\S+): native id: (\S+)")

#: The batch job's stdout (RP's job description names it so, in the pilot sandbox).
PILOT_LOG = "bootstrap_0.out"


def _local_path(url) -> typing.Optional[pathlib.Path]:
    """The local directory of a ``file://localhost/...`` URL (or a plain path), else None."""
    text = str(url or "")
    if not text:
        return None
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme in ("", "file") and parsed.netloc in ("", "localhost"):
        return pathlib.Path(parsed.path or text)
    return None


def _scheme(pilot) -> str:
    try:
        url = str(pilot.as_dict().get("js_url") or "")
    except Exception:  # noqa: BLE001
        return ""
    return urllib.parse.urlparse(url).scheme.split("+")[-1]


def batch_system(pilot) -> typing.Optional[str]:
    """``"Slurm"``, ``"PBS"``, ... if *pilot* was submitted to a batch system, else None (``fork://``)."""
    return _SCHEMES.get(_scheme(pilot))


def batch_job_id(pilot) -> typing.Optional[typing.Tuple[str, str]]:
    """``(batch system, job id)`` of *pilot*'s batch job, e.g. ``("Slurm", "5")``, or None.

    None for a pilot that is no batch job (``fork://``), even if it ran inside one.
    """
    try:
        system = batch_system(pilot)
        if system is None:
            return None
        sandbox = _local_path(pilot.pilot_sandbox)
        if sandbox is not None:
            try:
                lines = (sandbox / "env" / "bs0_orig.env").read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            values = dict(line.split("=", 1) for line in lines if "=" in line)
            value = values.get(_JOB_ID_VARIABLES[system], "").strip().strip("'\"")
            if value:
                return system, value
        native = set()
        for log in pathlib.Path(pilot.session.path).glob("pmgr_launching.*.err"):
            try:
                native.update(match.group(2) for match in _NATIVE_ID.finditer(log.read_text(errors="replace")))
            except OSError:
                continue
        if len(native) == 1:
            return system, native.pop()
    except Exception:  # noqa: BLE001 - only for a message
        pass
    return None


def pilot_job_note(pilot) -> str:
    """``" (Slurm job 5; the pilot's log: PATH)"`` for messages about *pilot*.

    Empty for a pilot that is not a batch job (``fork://`` on ``local.localhost``).
    """
    job = batch_job_id(pilot)
    if job is None:
        return ""
    system, job_id = job
    sandbox = _local_path(getattr(pilot, "pilot_sandbox", None))
    where = str(sandbox / PILOT_LOG) if sandbox is not None else f"{PILOT_LOG} in {getattr(pilot, 'pilot_sandbox', '?')}"
    return f" ({system} job {job_id}; the pilot's log: {where})"
