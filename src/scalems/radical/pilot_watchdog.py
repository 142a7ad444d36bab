"""The client heartbeat and the pilot watchdog: a pilot job ends soon after its client dies.

RADICAL-Pilot 1.103 has no working client heartbeat in its agent, so a client killed
hard (``kill -9``, a lost login node) left its pilot's batch job running, holding the
allocation, until the pilot's run time ran out (30 minutes by default). scalems closes
that gap itself:

* **Heartbeat** (client side): while the session is open, a daemon thread rewrites the
  file :data:`HEARTBEAT_FILE` in the pilot sandbox every :data:`HEARTBEAT_INTERVAL`
  seconds (a counter and the time, replaced atomically). It writes only where the client
  sees the sandbox as a local path: the sandbox of a ``local.*`` resource, or one on a
  shared file system reached through ``file://localhost``.
* **Watchdog** (pilot side): a line scalems adds to the resource's ``pre_bootstrap_0``
  (in the session's copy of the resource config) starts a small bash loop in the job
  script, before RP's agent. Every :data:`CHECK_INTERVAL` seconds it reads the
  heartbeat file; when the content has not changed for :data:`HEARTBEAT_LIMIT` seconds
  by the job's own clock (no clock skew, and reading the content, not the time stamp,
  defeats the attribute caches of network file systems), it ends the job: ``scancel
  $SLURM_JOB_ID`` in a Slurm job, else SIGTERM and then SIGKILL to the job script's
  process group. It stays dormant until it has seen a first heartbeat (a client that
  cannot write there never arms it), and it ends itself when the job script ends. It
  logs to :data:`WATCHDOG_LOG` in the pilot sandbox.

The bound: the pilot job is cancelled at most ``HEARTBEAT_LIMIT + 2 * CHECK_INTERVAL``
(70 s) after the client's last heartbeat (the watchdog notices a new beat up to one
check late, and a stale one up to one check late), and the batch system ends it after
that (Slurm: within its ``KillWait``). Measured on the test cluster: the job ended 60-65 s
after ``kill -9`` of the client. The pilot's run time stays the backstop. Only pilots that are
batch jobs get the watchdog: a ``fork://`` pilot (``local.localhost``) shares the
client's process group and environment, and its session close already reaps it.

On the client's side, RP's session forks a ZMQ proxy worker that waits for a
"terminate" that a killed client never sends (RP's own time-out is a day).
:func:`forked_helpers_die_with_client` makes every process the client starts with
:mod:`multiprocessing` to run RP's code while a session is open receive SIGKILL when its
parent dies.
"""

from __future__ import annotations

__all__ = (
    "HEARTBEAT_FILE",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_LIMIT",
    "CHECK_INTERVAL",
    "CANCEL_BOUND",
    "WATCHDOG_LOG",
    "Heartbeat",
    "forked_helpers_die_with_client",
    "install_watchdog",
    "watchdog_command",
)

import ctypes
import logging
import multiprocessing
import multiprocessing.util
import os
import pathlib
import signal
import sys
import threading
import time
import typing
import urllib.parse

logger = logging.getLogger(__name__)

#: The heartbeat file, in the pilot sandbox.
HEARTBEAT_FILE = "scalems.heartbeat"
#: Seconds between two heartbeats of the client.
HEARTBEAT_INTERVAL = 10.0
#: Seconds without a new heartbeat after which the watchdog ends the pilot job.
HEARTBEAT_LIMIT = 60
#: Seconds between two looks of the watchdog at the heartbeat file.
CHECK_INTERVAL = 5
#: Seconds after the client's last heartbeat by which the watchdog has cancelled the pilot job.
CANCEL_BOUND = HEARTBEAT_LIMIT + 2 * CHECK_INTERVAL
#: The watchdog's log, in the pilot sandbox.
WATCHDOG_LOG = "scalems-watchdog.log"

#: Batch systems whose pilots get the watchdog (``job_manager_endpoint`` schemes).
_BATCH_SCHEMES = {"slurm", "pbs", "pbspro", "lsf", "cobalt"}


def watchdog_command(slurm: bool, limit: int = HEARTBEAT_LIMIT, interval: int = CHECK_INTERVAL) -> str:
    """The ``pre_bootstrap_0`` line that starts the watchdog in the pilot job's script.

    RP's ``bootstrap_0.sh`` runs each such line as ``eval "$(eval echo LINE)"`` in the
    pilot sandbox: the outer single quotes survive the first expansion, so that the loop
    sees ``$$`` (the job script) and its own variables only when it runs.
    """
    if slurm:
        end = 'echo "$(date -u +%FT%TZ) cancelling Slurm job $SLURM_JOB_ID"; scancel "$SLURM_JOB_ID"; exit 0'
    else:
        end = (
            'pg=$(ps -o pgid= -p "$bs" | tr -d " "); echo "$(date -u +%FT%TZ) ending process group $pg"; '
            'kill -TERM -- "-$pg"; sleep 10; kill -KILL -- "-$pg"; exit 0'
        )
    loop = (
        f'bs=$$; hb="$PWD/{HEARTBEAT_FILE}"; last=""; seen=0; '
        f'echo "$(date -u +%FT%TZ) watching $hb (limit {limit} s) for job script $bs"; '
        'while kill -0 "$bs" 2>/dev/null; do '
        'now=$(date +%s); cur=$(cat "$hb" 2>/dev/null); '
        'if test -n "$cur" && test "$cur" != "$last"; then last=$cur; seen=$now; '
        f'elif test "$seen" -gt 0 && test $((now - seen)) -ge {limit}; then '
        'echo "$(date -u +%FT%TZ) no heartbeat for $((now - seen)) s: the client is gone"; '
        f"{end}; fi; "
        f"sleep {interval}; done; "
        'echo "$(date -u +%FT%TZ) job script ended"'
    )
    command = f'(trap "" TERM HUP INT; {loop}) </dev/null >>"$PWD/{WATCHDOG_LOG}" 2>&1 &'
    assert "'" not in command
    return f"'{command}'"


def _scheme(session, site: str, host: str, access: typing.Optional[str]) -> str:
    rcfg = session._rcfgs[site][host]
    schema = access or rcfg.get("default_schema")
    url = str(((rcfg.get("schemas") or {}).get(schema) or {}).get("job_manager_endpoint") or "")
    return urllib.parse.urlparse(url).scheme.split("+")[-1]


def install_watchdog(session, execution_target: str, access: typing.Optional[str] = None) -> bool:
    """Add the watchdog to ``pre_bootstrap_0`` of the session's copy of the resource config.

    Like the launch method amendment in :mod:`.session`: RP's pilot launcher reads the
    resource config from the session registry, the session itself from ``_rcfgs``; both
    are amended before the PilotManager exists. True if the pilot will be watched.
    """
    site, host = execution_target.split(".", 1)
    try:
        scheme = _scheme(session, site, host, access)
        if scheme not in _BATCH_SCHEMES:
            logger.debug("No pilot watchdog for %s: its pilot is no batch job (%s://).", execution_target, scheme)
            return False
        line = watchdog_command(slurm=scheme == "slurm")
        key = f"rcfgs.{site}.{host}.pre_bootstrap_0"
        lines = list(session._reg[key] or [])
        if line not in lines:
            session._reg[key] = [*lines, line]
            session._rcfgs[site][host]["pre_bootstrap_0"] = [*lines, line]
    except Exception as error:  # noqa: BLE001 - an RP internals change must not stop the run
        logger.warning(
            "Could not add the scalems watchdog to the pilot job (%r): if this client is killed, the pilot job "
            "runs until its run time ends.",
            error,
        )
        return False
    logger.debug(
        "The pilot job of %s ends itself %d s after this client's last heartbeat.", execution_target, HEARTBEAT_LIMIT
    )
    return True


def _local_dir(url) -> typing.Optional[pathlib.Path]:
    parsed = urllib.parse.urlparse(str(url or ""))
    if parsed.scheme in ("", "file") and parsed.netloc in ("", "localhost") and parsed.path:
        return pathlib.Path(parsed.path)
    return None


class Heartbeat:
    """A daemon thread that rewrites :data:`HEARTBEAT_FILE` in a pilot sandbox until stopped.

    Until the first write succeeds it retries every second (the sandbox appears when RP
    launches the pilot), so that the watchdog is armed from the job's first seconds.
    """

    def __init__(self, sandbox_url):
        self.directory = _local_dir(sandbox_url)
        self._stop = threading.Event()
        self._thread: typing.Optional[threading.Thread] = None
        self.beats = 0

    def start(self) -> "Heartbeat":
        if self.directory is None:
            logger.debug("No heartbeat: the pilot sandbox is not on a file system this client sees.")
            return self
        self._thread = threading.Thread(target=self._run, name="scalems-rp-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> bool:
        path = self.directory / HEARTBEAT_FILE
        temporary = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}")
        try:
            temporary.write_text(f"{self.beats + 1} {time.time():.0f} {os.getpid()}\n")
            os.replace(temporary, path)
        except OSError as error:
            if self.beats and not self._stop.is_set():
                logger.warning("Could not write the heartbeat %s (%s); the pilot job may end itself.", path, error)
            return False
        self.beats += 1
        return True

    def _run(self):
        while not self._stop.is_set():
            wait = HEARTBEAT_INTERVAL if (self.directory.is_dir() and self._beat()) else 1.0
            self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


_PR_SET_PDEATHSIG = 1
_open_sessions = 0
_hook_lock = threading.Lock()


class _AfterFork:
    """The object multiprocessing keeps our after-fork hook under (a weak registry: keep it alive)."""


_HOOK: typing.Optional[_AfterFork] = None


def _die_with_parent(_hook) -> None:
    """In a new multiprocessing child of the client that runs RP code: SIGKILL when the parent dies."""
    if not _open_sessions:
        return
    target = getattr(multiprocessing.current_process(), "_target", None)
    if not str(getattr(target, "__module__", "") or "").startswith("radical."):
        return  # the application's own processes (a ProcessPoolExecutor, ...) are not ours to bind
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent.pid:  # the parent died before prctl took effect
        os._exit(1)


def forked_helpers_die_with_client(session_open: bool) -> None:
    """Call with True when a session opens, False when it closes.

    While a session is open, processes the client starts with :mod:`multiprocessing` to
    run RP's code get SIGKILL when their parent dies (Linux's ``PR_SET_PDEATHSIG``). Programs RP starts
    with ``subprocess`` are not touched: they watch their parent themselves. Linux ties
    the signal to the forking *thread*; RP forks its proxy worker from the proxy server's
    thread, which lives as long as the session.
    """
    global _open_sessions, _HOOK
    with _hook_lock:
        if session_open and _HOOK is None and sys.platform.startswith("linux"):
            _HOOK = _AfterFork()
            multiprocessing.util.register_after_fork(_HOOK, _die_with_parent)
        _open_sessions = max(0, _open_sessions + (1 if session_open else -1))
