"""Naming a pilot's batch job in error messages (scalems.radical.batch_job), from the files RP leaves.

The real thing (a pilot job cancelled with scancel) is tested in tests/slurm; this checks the
sources one by one without a cluster.
"""

import types

import pytest

pytest.importorskip("radical.pilot")

from scalems.radical.batch_job import batch_job_id, pilot_job_note  # noqa: E402


class FakePilot:
    """What the helper reads from an ``rp.Pilot``."""

    def __init__(self, sandbox, session_path, js_url="slurm://localhost/"):
        self.pilot_sandbox = f"file://localhost{sandbox}/"
        self.session = types.SimpleNamespace(path=str(session_path))
        self._js_url = js_url

    def as_dict(self):
        return {"js_url": self._js_url}


@pytest.fixture
def folders(tmp_path):
    sandbox = tmp_path / "pilot.0000"
    session = tmp_path / "rp.session.x"
    sandbox.mkdir()
    session.mkdir()
    return sandbox, session


def test_job_id_from_the_environment_the_job_started_with(folders):
    sandbox, session = folders
    (sandbox / "env").mkdir()
    (sandbox / "env" / "bs0_orig.env").write_text("HOME=/root\nSLURM_JOB_ID=42\nSLURM_JOB_NAME=x.job\n")
    pilot = FakePilot(sandbox, session)
    assert batch_job_id(pilot) == ("Slurm", "42")
    assert pilot_job_note(pilot) == f" (Slurm job 42; the pilot's log: {sandbox / 'bootstrap_0.out'})"


def test_job_id_from_the_launcher_log_while_the_job_waits(folders):
    sandbox, session = folders
    (session / "pmgr_launching.0000.err").write_text(
        "DEBUG:psij:something\nINFO:psij.executors.batch.batch_scheduler_executor:Job 0a-1b: native id: 7\n"
    )
    assert batch_job_id(FakePilot(sandbox, session)) == ("Slurm", "7")
    # Two jobs in one session: which one is the pilot's is unknown, so none is named.
    (session / "pmgr_launching.0001.err").write_text("INFO:psij:Job 2c-3d: native id: 8\n")
    assert batch_job_id(FakePilot(sandbox, session)) is None


def test_no_batch_job_no_note(folders):
    sandbox, session = folders
    # A fork:// pilot of a client that itself runs in a Slurm job has SLURM_JOB_ID too.
    (sandbox / "env").mkdir()
    (sandbox / "env" / "bs0_orig.env").write_text("SLURM_JOB_ID=42\n")
    (session / "pmgr_launching.0000.err").write_text("INFO:psij:Job 0a-1b: native id: 1234\n")
    assert pilot_job_note(FakePilot(sandbox, session, js_url="fork://localhost/")) == ""
    broken = types.SimpleNamespace(pilot_sandbox=None, session=None)
    assert pilot_job_note(broken) == ""


def test_a_pilot_job_waiting_in_the_queue_is_logged_and_shown(folders, caplog):
    """QueueWatch over a pilot job that waits 3 minutes: notes for the progress line, one log line a minute."""
    from scalems.radical.queue_watch import QueueWatch

    sandbox, session = folders
    (session / "pmgr_launching.0000.err").write_text("INFO:psij:Job 0a-1b: native id: 12\n")
    pilot = FakePilot(sandbox, session)
    pilot.uid = "pilot.0000"
    now = [0.0]
    slurm = [("PENDING", "None")]
    notes = []
    watch = QueueWatch(pilot, notes.append, clock=lambda: now[0], query=lambda job: slurm[0])
    caplog.set_level("INFO", logger="scalems.radical.queue_watch")
    watch.update("PMGR_ACTIVE_PENDING")
    assert notes[-1] == "pilot submitted: Slurm job 12"  # Slurm has not scheduled it yet
    slurm[0] = ("PENDING", "Resources")
    for second in range(5, 186, 5):
        now[0] = float(second)
        watch.update("PMGR_ACTIVE_PENDING")
    assert notes[-1] == "pilot queued: Slurm job 12 (Resources), 3 min"
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Pilot pilot.0000 is Slurm job 12, waiting in the queue (reason: Resources)",
        "Pilot pilot.0000 (Slurm job 12) is still waiting in the queue after 1 min (reason: Resources)",
        "Pilot pilot.0000 (Slurm job 12) is still waiting in the queue after 2 min (reason: Resources)",
        "Pilot pilot.0000 (Slurm job 12) is still waiting in the queue after 3 min (reason: Resources)",
    ]
    slurm[0] = ("RUNNING", "None")
    now[0] = 190.0
    watch.update("PMGR_ACTIVE_PENDING")
    assert notes[-1] == "pilot starting: Slurm job 12"
    watch.active()
    assert notes[-1] is None
    assert caplog.records[-1].getMessage() == "Pilot pilot.0000 (Slurm job 12) is active after waiting 3 min in the queue."


def test_without_an_answer_from_the_batch_system_rps_state_is_the_reason(folders, caplog):
    from scalems.radical.queue_watch import QueueWatch

    sandbox, session = folders
    (session / "pmgr_launching.0000.err").write_text("INFO:psij:Job 0a-1b: native id: 3.pbs01\n")
    pilot = FakePilot(sandbox, session, js_url="pbspro://login/")
    pilot.uid = "pilot.0001"
    now = [0.0]
    notes = []
    watch = QueueWatch(pilot, notes.append, clock=lambda: now[0], query=lambda job: None)
    caplog.set_level("INFO", logger="scalems.radical.queue_watch")
    watch.update("PMGR_ACTIVE_PENDING")
    assert notes[-1] == "pilot submitted: PBS job 3.pbs01"
    now[0] = 30.0
    watch.update("PMGR_ACTIVE_PENDING")
    assert notes[-1] == "pilot queued: PBS job 3.pbs01 (RP state PMGR_ACTIVE_PENDING), 30 s"
    assert [r.getMessage() for r in caplog.records] == [
        "Pilot pilot.0001 is PBS job 3.pbs01, waiting in the queue (reason: RP state PMGR_ACTIVE_PENDING)"
    ]
