"""The RADICAL-Pilot objects of one backend run, opened and closed from worker threads.

:class:`RuntimeSession` owns the ``rp.Session``, its ``PilotManager``,
``TaskManager`` and the one ``Pilot``. Every method here blocks (RP calls
block for seconds), so the asyncio side calls them in worker threads
(:func:`scalems.execution.waiting.in_thread`), never on the event loop
thread. Closing is bounded and idempotent, and for
resources on this machine it makes sure no RP process of the session is left
behind, because RP agent processes detach from the client and would otherwise
live until the pilot's run time expires.
"""

from __future__ import annotations

__all__ = ("RuntimeSession",)

import logging
import os
import pathlib
import signal
import sys
import threading
import time
import typing

from scalems.exceptions import DispatchError, MissingDependencyError
from scalems.execution.processes import processes_marked

try:
    import radical.pilot as rp
except ImportError as _error:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("radical.pilot", "radical") from _error

from .batch_job import pilot_job_note
from .pilot_watchdog import Heartbeat, forked_helpers_die_with_client, install_watchdog
from .runtime_configuration import RuntimeConfiguration

logger = logging.getLogger(__name__)


class _Aborted(Exception):
    """Start-up was abandoned (the awaiting coroutine was cancelled)."""


def _ensure_client_environment(configuration: RuntimeConfiguration):
    """Make this process's environment one RP can start its helpers from.

    RP starts ``radical-pilot-bridge`` and friends by name, so this interpreter's
    ``bin/`` must be on PATH; and for ``local`` resources its bootstrap uses the
    client's ``VIRTUAL_ENV`` (empty when a venv's python runs without activation),
    falling back to the system Python, which has no RP, and the pilot fails.
    """
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + (os.pathsep + path if path else "")
        logger.debug("Added %s to PATH for RADICAL-Pilot helper programs.", bindir)
    if configuration.is_local and not os.environ.get("VIRTUAL_ENV") and not os.environ.get("CONDA_PREFIX"):
        if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
            os.environ["VIRTUAL_ENV"] = sys.prefix
            logger.debug(
                "Set VIRTUAL_ENV=%s so that the local pilot agent uses this environment.", sys.prefix
            )


def _amend_launch_methods(session, configuration: RuntimeConfiguration):
    """Let MPI launch methods of a local pilot find ``mpiexec`` of the task venv.

    The pilot bootstrap runs a login shell that resets PATH, so an ``mpiexec``
    installed in the venv (the ``mpich`` wheel) is not found: the MPIEXEC launch
    method comes up invalid and every ``ranks > 1`` task fails. RP reads launch
    method settings from the resource config, which the primary session
    publishes in its registry; components started later (the pilot launcher)
    read it from there. Amend both copies before the PilotManager exists.
    """
    if not configuration.is_local or configuration.target_venv is None:
        return  # a provisioned task environment has no mpiexec of its own
    venv_bin = configuration.venv_bin
    if not any(os.access(os.path.join(venv_bin, name), os.X_OK) for name in ("mpiexec", "mpirun")):
        return
    site, host = configuration.execution_target.split(".", 1)
    line = f"export PATH={venv_bin}:$PATH"
    try:
        key = f"rcfgs.{site}.{host}.launch_methods"
        methods = dict(session._reg[key] or {})
        changed = False
        for name in ("MPIEXEC", "MPIRUN"):
            if name in methods:
                settings = dict(methods[name] or {})
                cached = list(settings.get("pre_exec_cached") or [])
                if line not in cached:
                    settings["pre_exec_cached"] = [line, *cached]
                    methods[name] = settings
                    changed = True
        if changed:
            session._reg[key] = methods
            local = session._rcfgs[site][host]["launch_methods"]
            for name, settings in methods.items():
                if name != "order":
                    local[name] = settings
            logger.debug(
                "MPI launch methods of %s will find mpiexec in %s.", configuration.execution_target, venv_bin
            )
    except Exception as error:  # noqa: BLE001 - an RP internals change must not stop the run
        logger.warning(
            "Could not put %s on the PATH of the MPI launch methods (%r); tasks with ranks > 1 may fail "
            "unless mpiexec is on the login PATH.",
            venv_bin,
            error,
        )


def _tail(path: pathlib.Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class RuntimeSession:
    """The RP session, managers and pilot of one backend run.

    Create it, call :meth:`open` and :meth:`wait_for_pilot` (blocking, in a
    worker thread), use :meth:`task_manager` and :meth:`pilot`, and always call
    :meth:`close`. :meth:`abort` (any thread) makes a running :meth:`open` or
    :meth:`wait_for_pilot` stop early.
    """

    def __init__(self, configuration: RuntimeConfiguration, session_dir: typing.Union[str, os.PathLike]):
        self.configuration = configuration
        self.session_dir = pathlib.Path(session_dir)
        self.session: typing.Optional[rp.Session] = None
        self._pmgr: typing.Optional[rp.PilotManager] = None
        self._tmgr: typing.Optional[rp.TaskManager] = None
        self._pilot: typing.Optional[rp.Pilot] = None
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self.sandbox: typing.Optional[str] = None
        self._watched = False
        self._helpers_held = False
        self._heartbeat: typing.Optional[Heartbeat] = None
        #: What :meth:`open` is doing (for the message when RP hangs there).
        self.stage = "not started"

    # -- accessors ------------------------------------------------------------------------
    @property
    def uid(self) -> typing.Optional[str]:
        return self.session.uid if self.session is not None else None

    def pilot_manager(self) -> typing.Optional[rp.PilotManager]:
        return self._pmgr

    def task_manager(self) -> typing.Optional[rp.TaskManager]:
        return self._tmgr

    def pilot(self) -> typing.Optional[rp.Pilot]:
        return self._pilot

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_abort(self):
        if self._abort.is_set():
            raise _Aborted()

    def abort(self):
        self._abort.set()

    # -- life cycle ------------------------------------------------------------------------
    def open(self, pilot_callback: typing.Optional[typing.Callable] = None) -> None:
        """Create the session, managers and pilot (blocking). Partial results are kept for :meth:`close`."""
        config = self.configuration
        _ensure_client_environment(config)
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self._check_abort()
        # base: RP's client-side session folder (logs, profiles) goes under session_dir, not the cwd.
        # client_sandbox: what 'client://' staging URLs are relative to.
        directory = str(self.session_dir)
        with self._lock:
            if self._closed:
                raise _Aborted()
            self.stage = "creating the RP session"
            forked_helpers_die_with_client(True)
            self._helpers_held = True
            self.session = rp.Session(cfg={"base": directory, "client_sandbox": directory})
        logger.info(
            "RADICAL-Pilot session %s started; client files in %s", self.session.uid, self.session.path
        )
        self._check_abort()
        self.stage = "creating the PilotManager"
        _amend_launch_methods(self.session, config)
        self._watched = install_watchdog(self.session, config.execution_target, config.access)
        self._pmgr = rp.PilotManager(session=self.session)
        self._check_abort()
        self.stage = "creating the TaskManager"
        self._tmgr = rp.TaskManager(session=self.session)
        self._check_abort()
        self.stage = "submitting the pilot"
        sandbox = None
        if "sandbox" not in config.rp_resource_params and config.is_local:
            # Keep a local pilot's sandbox beside the client files, not in $HOME/radical.pilot.sandbox.
            sandbox = str(self.session_dir)
        description = rp.PilotDescription(config.pilot_description(sandbox=sandbox))
        try:
            pilot = self._pmgr.submit_pilots(description)
        except Exception as error:
            raise DispatchError(
                f"RADICAL-Pilot refused the pilot for {config.execution_target!r}: {error}"
            ) from error
        self._pilot = pilot
        if pilot_callback is not None:
            pilot.register_callback(pilot_callback)
        self._tmgr.add_pilots(pilot)
        self.sandbox = str(pilot.pilot_sandbox)
        if self._watched:
            # The pilot job's watchdog ends it when these beats stop (see .pilot_watchdog).
            self._heartbeat = Heartbeat(self.sandbox).start()
        self.stage = "pilot submitted"
        logger.info(
            "Pilot %s submitted to %s (cores=%s, nodes=%s, runtime=%s min); pilot sandbox: %s",
            pilot.uid,
            config.execution_target,
            description.get("cores"),
            description.get("nodes"),
            description.get("runtime"),
            self.sandbox,
        )

    def wait_for_pilot(self, timeout: typing.Optional[float], watch=None) -> str:
        """Wait until the pilot is active (or, with *timeout* None and no *watch*, at least submitted).

        With a *watch* (a :class:`~.queue_watch.QueueWatch`), wait until the pilot is active,
        however long it waits in a batch queue (unless *timeout* is given), and tell *watch*
        the pilot's state every half second until then.

        Raises:
            DispatchError: the pilot ended (FAILED, CANCELED, DONE) or did not become
                active within *timeout* seconds. The message says where its logs are.
        """
        pilot = self._pilot
        if pilot is None:
            raise DispatchError("No pilot was submitted.")
        until_active = timeout is not None or watch is not None
        wanted = [rp.PMGR_ACTIVE] if until_active else [rp.PMGR_ACTIVE_PENDING, rp.PMGR_ACTIVE]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_abort()
            # RP 1.103's Pilot.wait() returns None, not the state, for a pilot that was already
            # final when called: read the state afterwards.
            pilot.wait(state=wanted + list(rp.FINAL), timeout=0.5)
            state = pilot.state
            if state in rp.FINAL:
                raise DispatchError(self._pilot_failure(f"ended in state {state} before it became active"))
            if state in wanted:
                if state == rp.PMGR_ACTIVE:
                    logger.info("Pilot %s is active.", pilot.uid)
                    if watch is not None:
                        watch.active()
                return state
            if watch is not None:
                watch.update(state)
            if deadline is not None and time.monotonic() > deadline:
                raise DispatchError(
                    self._pilot_failure(f"did not become active within {timeout:g} s (state {pilot.state})")
                )

    def _pilot_failure(self, what: str) -> str:
        pilot = self._pilot
        message = f"Pilot {pilot.uid} on {self.configuration.execution_target!r} {what}{pilot_job_note(pilot)}."
        sandbox = self.sandbox or ""
        path = (
            pathlib.Path(sandbox[len("file://localhost") :])
            if sandbox.startswith("file://localhost")
            else None
        )
        if path is not None and path.is_dir():
            message += f" Its logs are in {path} (bootstrap_0.out, agent_0.err)."
            for name in ("agent_0.err", "bootstrap_0.out"):
                tail = _tail(path / name, lines=8)
                if tail:
                    message += f"\n--- {name} (last lines) ---\n{tail}"
                    break
        else:
            message += f" Its sandbox is {sandbox or 'unknown'}; see bootstrap_0.out and agent_0.err there."
        if self.session is not None:
            # A pilot that never got launched says why only in the client-side launcher log.
            for log in sorted(pathlib.Path(self.session.path).glob("pmgr_launching.*.log")):
                errors = [
                    line for line in _tail(log, lines=200).splitlines() if "Error" in line or "rror:" in line
                ]
                if errors:
                    message += f"\nThe pilot launcher reported: {errors[-1].strip()}"
                    break
            message += f"\nClient-side RP logs: {self.session.path}"
        return message

    def close(self, reap_timeout: float = 10.0) -> None:
        """Close the RP session (terminating the pilot) and, locally, make sure its processes end.

        Idempotent. Never raises: clean-up problems are logged.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._abort.set()
        session = self.session
        if session is None:
            self._release_helpers()
            return
        sid = session.uid
        started = time.monotonic()
        # radical.utils closes and removes the handlers of every ancestor of its loggers when
        # RP closes them, i.e. the application's root logging handlers: put them back.
        root = logging.getLogger()
        handlers = list(root.handlers)
        try:
            session.close(download=False)
        except Exception:  # noqa: BLE001
            logger.exception("Error while closing RADICAL-Pilot session %s", sid)
        finally:
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
        if self._heartbeat is not None:
            self._heartbeat.stop()  # after the close: the watchdog must not race RP's own cancel
        self._release_helpers()
        logger.info("RADICAL-Pilot session %s closed in %.1f s.", sid, time.monotonic() - started)
        if self.configuration.is_local:
            self._reap(sid, reap_timeout)

    def _release_helpers(self):
        if self._helpers_held:
            self._helpers_held = False
            forked_helpers_die_with_client(False)

    def _reap(self, sid: str, timeout: float):
        """End what is left of session *sid* on this machine: agent processes detach and linger."""
        markers = [sid.encode()]
        deadline = time.monotonic() + timeout
        left = processes_marked(markers)
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = processes_marked(markers)
        if not left:
            return
        logger.warning(
            "Stopping %d leftover RADICAL-Pilot process(es) of session %s: %s", len(left), sid, left
        )
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            for pid in left:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            end = time.monotonic() + grace
            while left and time.monotonic() < end:
                time.sleep(0.1)
                left = processes_marked(markers)
            if not left:
                return
        logger.error("RADICAL-Pilot processes of session %s are still running: %s", sid, left)
