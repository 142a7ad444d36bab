"""The pilot watchdog's shell line and the client's heartbeat, without RP or a cluster.

The line runs here the way RP's ``bootstrap_0.sh`` runs a ``pre_bootstrap_0`` entry
(``cmd=$(eval echo "$LINE"); eval "$cmd"``), in a bash "job script" that leads its own
process group, as a batch job's script does. The real thing (``kill -9`` of a client whose
pilot is a Slurm job) is tested in tests/slurm/test_slurm_pilot_watch.py.
"""

import os
import pathlib
import signal
import subprocess

from scalems.radical.pilot_watchdog import HEARTBEAT_FILE, WATCHDOG_LOG, Heartbeat, watchdog_command

#: What bootstrap_0.sh does with a pre_bootstrap_0 entry, then the rest of a job script (a sleep).
JOB_SCRIPT = 'cmd=$(eval echo "$LINE"); eval "$cmd"; sleep "$REST"'


def run_job_script(sandbox: pathlib.Path, rest: int) -> subprocess.CompletedProcess:
    line = watchdog_command(slurm=False, limit=1, interval=1)
    env = {**os.environ, "LINE": line, "REST": str(rest)}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(
        ["bash", "-c", JOB_SCRIPT], cwd=sandbox, env=env, start_new_session=True, timeout=120, capture_output=True
    )


def watchdog_processes(sandbox: pathlib.Path) -> list:
    """Processes still running in *sandbox* (the watchdog's working directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(sandbox):
                    with open(f"/proc/{entry}/stat") as fh:
                        if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(entry))
            except OSError:
                continue
    return found


def wait_gone(sandbox: pathlib.Path) -> list:
    import time

    deadline = time.monotonic() + 10
    while watchdog_processes(sandbox) and time.monotonic() < deadline:
        time.sleep(0.1)
    return watchdog_processes(sandbox)


def test_without_a_heartbeat_the_watchdog_stays_dormant_and_ends_with_the_job(tmp_path):
    done = run_job_script(tmp_path, rest=3)
    assert done.returncode == 0, done
    assert wait_gone(tmp_path) == []
    log = (tmp_path / WATCHDOG_LOG).read_text()
    assert "watching" in log and "job script ended" in log and "no heartbeat" not in log, log


def test_a_heartbeat_that_stops_ends_the_job_scripts_process_group(tmp_path):
    (tmp_path / HEARTBEAT_FILE).write_text("1 0 0\n")  # one beat, then the client is gone
    done = run_job_script(tmp_path, rest=100)
    assert done.returncode == -signal.SIGTERM, done
    assert wait_gone(tmp_path) == []
    log = (tmp_path / WATCHDOG_LOG).read_text()
    assert "the client is gone" in log and "ending process group" in log, log


def test_the_line_survives_rps_expansion_unchanged():
    line = watchdog_command(slurm=True)
    expanded = subprocess.run(
        ["bash", "-c", 'eval echo "$LINE"'], env={"LINE": line, "PATH": os.environ["PATH"]}, capture_output=True, text=True
    ).stdout.rstrip("\n")
    assert expanded == line[1:-1]
    assert 'scancel "$SLURM_JOB_ID"' in expanded


def test_the_heartbeat_waits_for_the_sandbox_and_stops(tmp_path):
    sandbox = tmp_path / "pilot.0000"
    heartbeat = Heartbeat(f"file://localhost{sandbox}/").start()
    try:
        sandbox.mkdir()
        import time

        deadline = time.monotonic() + 30
        while not (sandbox / HEARTBEAT_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (sandbox / HEARTBEAT_FILE).read_text().startswith("1 ")
    finally:
        heartbeat.stop()
    assert not heartbeat._thread.is_alive()
    assert sorted(path.name for path in sandbox.iterdir()) == [HEARTBEAT_FILE]


def test_no_heartbeat_where_the_sandbox_is_not_local():
    heartbeat = Heartbeat("sftp://login.example.org/scratch/pilot.0000/").start()
    assert heartbeat.directory is None and heartbeat._thread is None
    heartbeat.stop()


CLIENT = r"""
import multiprocessing, time
from scalems.radical.pilot_watchdog import forked_helpers_die_with_client

def helper():
    time.sleep(120)

helper.__module__ = "radical.pilot.proxy"  # stands for RP's proxy worker


def own():
    time.sleep(120)


forked_helpers_die_with_client(True)
rp_child = multiprocessing.Process(target=helper)
rp_child.start()
own_child = multiprocessing.Process(target=own)
own_child.start()
print(rp_child.pid, own_child.pid, flush=True)
time.sleep(120)
"""


def test_rps_forked_helpers_die_with_a_killed_client_and_the_applications_do_not():
    import sys
    import time

    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True)
    rp_child, own_child = (int(pid) for pid in client.stdout.readline().split())
    try:
        client.kill()
        client.wait()
        deadline = time.monotonic() + 10
        while alive(rp_child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(rp_child)
        assert alive(own_child)
    finally:
        for pid in (rp_child, own_child):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
