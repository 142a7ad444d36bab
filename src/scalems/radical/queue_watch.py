"""A pilot that waits in a batch queue says so: in the log and in the progress line.

A pilot submitted to a batch system may wait for its allocation for minutes or days,
and scalems does not time that out (unless ``pilot_startup_timeout`` is set). While the
pilot is submitted but not active, :class:`QueueWatch` (called from the thread that
waits for the pilot) finds the pilot's batch job (:mod:`.batch_job`), asks Slurm why
it waits (``squeue``; other batch systems: RP's state only), and

* logs at INFO once when the job is seen waiting in the queue ("Pilot P is Slurm job N,
  waiting in the queue (reason: Resources)"), again every :data:`LOG_INTERVAL` seconds
  while it waits, and once when the pilot becomes active, with how long it waited;
* publishes a status note for the progress line ("pilot queued: Slurm job N
  (Resources), 2 min"), cleared when the pilot is active.

Nothing here raises: looking at the queue must not stop the run.
"""

from __future__ import annotations

__all__ = ("QueueWatch", "LOG_INTERVAL")

import logging
import os
import shutil
import subprocess
import time
import typing

from .batch_job import batch_job_id

logger = logging.getLogger(__name__)

#: Seconds between two "still waiting" log lines.
LOG_INTERVAL = 60.0
#: Seconds between two looks at the batch system (``squeue``) or for the job id.
POLL_INTERVAL = 5.0
#: A job pending for less than this with Slurm's reason "None" is being scheduled, not queued.
SCHEDULING_GRACE = 5.0


def _duration(seconds: float) -> str:
    """``45 s``, ``1 min``, ``1 h 5 min`` (whole units, for humans)."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def squeue_state(job_id: str) -> typing.Optional[typing.Tuple[str, str]]:
    """``(state, reason)`` of Slurm job *job_id* as squeue reports it, e.g. ``("PENDING", "Resources")``.

    None when squeue is not available, fails, or no longer knows the job.
    """
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        done = subprocess.run(
            [squeue, "-h", "-j", str(job_id), "-o", "%T|%r"],
            capture_output=True,
            text=True,
            timeout=20,
            env=os.environ,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
    if "|" not in line:
        return None
    state, reason = line.split("|", 1)
    return state.strip(), reason.strip()


class QueueWatch:
    """Watches one submitted pilot until it is active; see the module docstring.

    Args:
        pilot: the ``rp.Pilot``.
        publish: called with the progress note (a string, or None to clear it).
        clock: seconds, monotonic (for tests).
        query: ``query(job_id) -> (state, reason) | None`` for Slurm jobs.
    """

    def __init__(self, pilot, publish: typing.Callable[[typing.Optional[str]], None], *, clock=time.monotonic, query=squeue_state):
        self._pilot = pilot
        self._publish = publish
        self._clock = clock
        self._query = query
        self._submitted = clock()
        self._job: typing.Optional[typing.Tuple[str, str]] = None
        self._queued_since: typing.Optional[float] = None
        self._pending_since: typing.Optional[float] = None
        self._next_poll = 0.0
        self._next_log: typing.Optional[float] = None
        self._slurm: typing.Optional[typing.Tuple[str, str]] = None

    def _describe_job(self) -> str:
        return f"{self._job[0]} job {self._job[1]}" if self._job else "its batch job"

    def update(self, rp_state: str) -> None:
        """The pilot is in *rp_state* and not active yet (call often; it rate-limits itself)."""
        try:
            self._update(rp_state)
        except Exception:  # noqa: BLE001 - only for messages
            logger.debug("Looking at the pilot's batch queue failed", exc_info=True)

    def _update(self, rp_state: str) -> None:
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            if self._job is None:
                self._job = batch_job_id(self._pilot)
            if self._job is not None and self._job[0] == "Slurm":
                self._slurm = self._query(self._job[1])
        queued, reason = self._queued(rp_state, now)
        if not queued:
            if self._job is not None:
                phase = "starting" if self._slurm and self._slurm[0] == "RUNNING" else "submitted"
                self._publish(f"pilot {phase}: {self._describe_job()}")
            else:
                self._publish("pilot submitted")
            return
        if self._queued_since is None:
            self._queued_since = now
        waited = now - self._submitted
        self._publish(f"pilot queued: {self._describe_job()} ({reason}), {_duration(waited)}")
        if self._next_log is None:
            logger.info("Pilot %s is %s, waiting in the queue (reason: %s)", self._pilot.uid, self._describe_job(), reason)
            self._next_log = now + LOG_INTERVAL
        elif now >= self._next_log:
            logger.info(
                "Pilot %s (%s) is still waiting in the queue after %s (reason: %s)",
                self._pilot.uid,
                self._describe_job(),
                _duration(waited),
                reason,
            )
            self._next_log = now + LOG_INTERVAL

    def _queued(self, rp_state: str, now: float) -> typing.Tuple[bool, str]:
        """Whether the job waits in the queue now, and why."""
        if self._slurm is not None:
            state, reason = self._slurm
            if state != "PENDING":
                self._pending_since = None
                return False, ""
            if self._pending_since is None:
                self._pending_since = now
            # A job is PENDING with reason None until Slurm's next scheduling pass (a fraction of a second).
            if reason in ("", "None") and now - self._pending_since < SCHEDULING_GRACE:
                return False, ""
            return True, reason or "None"
        if self._job is not None and now - self._submitted >= SCHEDULING_GRACE * 2:
            # Without an answer from the batch system, RP's state is all there is (PMGR_ACTIVE_PENDING
            # covers the queue and the agent's start-up).
            return True, f"RP state {rp_state}"
        return False, ""

    def active(self) -> None:
        """The pilot became active: say how long it waited (if it was queued) and clear the note."""
        try:
            self._publish(None)
            if self._queued_since is not None:
                logger.info(
                    "Pilot %s (%s) is active after waiting %s in the queue.",
                    self._pilot.uid,
                    self._describe_job(),
                    _duration(self._clock() - self._submitted),
                )
        except Exception:  # noqa: BLE001
            logger.debug("Reporting the end of the queue wait failed", exc_info=True)
