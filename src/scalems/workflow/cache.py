"""The result cache: finished results of earlier runs, and recording the results of this one.

Modelled on Parsl's ``Memoizer``: a task's uid is the key; a lookup before
the task is scheduled either finishes it from the record or lets it run, and
the result of a run is recorded under the same key. The record is the work
directory's store (:mod:`scalems.store`): the only place in the workflow layer
that touches it, so backends never see it.

It also keeps the run history (:mod:`scalems.store.history`): one row per run
and one per attempt, which ``python -m scalems status`` and ``report`` read.

Writes are buffered by the store's record and committed by its own flusher
within a fraction of a second, so a crash loses at most that tail.
"""

from __future__ import annotations

__all__ = ("ResultCache",)

import asyncio
import json
import logging
import os
import socket
import time
import typing

from scalems.store import FileStore
from scalems.store.history import UID_PREFIX
from .task import ExecutableResult, Task, executable_result

logger = logging.getLogger(__name__)

#: Outputs larger than this in total are hashed in a thread, not on the dispatcher's loop.
_HASH_INLINE_BYTES = 1 << 20


class ResultCache:
    """Lookup, restore and record of task results in one work directory's store."""

    def __init__(self, store: FileStore, *, use_cache: bool = True):
        self.store = store
        self.use_cache = use_cache
        #: Content digest of an input file (memoized by stat): the identity stage's digest source.
        self.digest_file = store.file_digest
        self.host = socket.gethostname()
        self.run: typing.Optional[int] = None
        self._run_row: typing.Optional[list] = None
        self._attempts: list = []  # finished attempts not yet handed to the store (they go in batches)
        # uid -> uids of the tasks it takes input from, for tasks that have some and have not yet succeeded:
        # the history keeps them so that forgetting a result can find what was computed from it.
        self._upstream: dict = {}

    # ---- the run history ----------------------------------------------------------------------
    def begin_run(self, backend: str, budget) -> int:
        """Start this run's history row; *budget* is the backend's limiter total (None: it queues work)."""
        self.run = self.store.begin_run()
        total = None if budget is None else {"cores": budget.cores, "gpus": budget.gpus}
        self._run_row = [self.run, time.time(), None, os.getpid(), self.host, backend, json.dumps(total), "{}", "[]", None]
        self.store.record_run(tuple(self._run_row))
        return self.run

    def refresh_run(self, counts: dict, running: typing.Iterable[str]) -> None:
        """Counts and running labels of a live run, for ``status`` in another process."""
        self._hand_over_attempts()
        row = self._run_row
        row[7], row[8] = json.dumps(counts), json.dumps(list(running))
        self.store.record_run(tuple(row))

    def end_run(self, counts: dict, cached_uids: typing.Sequence[str], not_done: typing.Iterable[Task]) -> None:
        """The run is over: its counts and which tasks it had and how each ended.

        Tasks done in this run are known by their attempts; tasks done from the record are
        listed by uid only (the record has the rest); the others (failed, not run because a
        task they need failed, cancelled) with label, state and reason.
        """
        other = [
            [t.uid, t.label, t.kind, t._state.value, None if t._exception is None else str(t._exception)]
            for t in not_done
        ]
        # Tasks done from the record by the first 16 digits of their uid (the record has them whole; a
        # whole 10,000-task ensemble's list would be 640 kB to write at the end of every re-run),
        # written out by hand: the digits need no escaping, and json would scan them all.
        prefixes = "".join([uid[:UID_PREFIX] for uid in cached_uids])
        summary = '{"cached16":"' + prefixes + '","other":' + json.dumps(other) + "}"
        self._hand_over_attempts()
        row = self._run_row
        row[2], row[7], row[8], row[9] = time.time(), json.dumps(counts), "[]", summary
        self.store.record_run(tuple(row))

    def record_attempt(
        self, task: Task, attempt: int, started: float, outcome: str, place=None, exitcode=None, error=None
    ) -> None:
        """Keep a finished attempt for the history (handed to the store in batches: one append per
        attempt would cost an ensemble of tiny calls several per cent)."""
        attempts = self._attempts
        # A task that succeeded will not run again in this run: its entry is no longer needed.
        upstream = self._upstream.pop(task.uid, "") if outcome == "done" else self._upstream.get(task.uid, "")
        attempts.append(
            (task.uid, self.run, attempt, task.label, task.kind, started, time.time(), self.host, place, outcome, exitcode, error,
             upstream)
        )
        if len(attempts) >= 256:
            self._hand_over_attempts()

    def note_upstream(self, uid: str, upstream: typing.Iterable[str]) -> None:
        """Task *uid* will run with the results of the tasks *upstream* (uids) as inputs."""
        self._upstream[uid] = "".join(upstream)

    def _hand_over_attempts(self) -> None:
        attempts, self._attempts = self._attempts, []
        if attempts:
            self.store.record_attempts(attempts)

    def forget(self, uid: str) -> None:
        """Drop what is recorded for *uid*: a complete record is final unless dropped first."""
        self.store.forget_task(uid)

    def restore_executable(self, task: Task, found: tuple) -> typing.Optional[ExecutableResult]:
        """The recorded result of an executable, with its output files put back if they were removed.

        None (and the record dropped) if the result cannot be used: the task then runs again.
        """
        _, recorded, files = found
        store = self.store
        try:
            info = json.loads(recorded)
            for name, file_record in files.items():
                path = task.directory / name
                try:
                    intact = path.stat().st_size == file_record.size
                except OSError:
                    intact = False
                if not intact:
                    if not store.has_file(file_record.digest):
                        logger.info("Cached output %s of %s is gone; running it again.", name, task.label)
                        store.forget_task(task.uid)
                        return None
                    store.restore_file(file_record.digest, path)
            return executable_result(task, info["exitcode"])
        except Exception as error:  # a damaged record never stops a run: compute again.
            logger.warning("Ignoring unusable cached result of %s: %s", task.label, error)
            store.forget_task(task.uid)
            return None

    async def record_executable(self, task: Task, exitcode: int, directory: str, names: typing.Iterable[str]) -> None:
        """Store the files an executable left (those of *names* that exist) and record its success."""
        files = await self._store_outputs(directory, names)
        self.store.record_task(
            task.uid, label=task.label, kind="executable", state="complete", result=b'{"exitcode":%d}' % exitcode, files=files
        )

    def record_function(self, task: Task, text: str) -> None:
        """Record a function task's result record (:mod:`scalems.call` text)."""
        self.store.record_task(task.uid, label=task.label, kind="function", state="complete", result=text.encode())

    def record_failure(self, task: Task, error: BaseException) -> None:
        """Record why a task failed (never raises: a record problem must not hide the failure)."""
        try:
            self.store.record_task(task.uid, label=task.label, kind=task.kind, state="failed", error=str(error))
        except Exception:
            logger.exception("Could not record the failure of %s", task.label)

    def flush(self) -> None:
        self.store.flush()


    async def _store_outputs(self, directory: str, names) -> dict:
        found, total = [], 0
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            total += st.st_size
            found.append((name, path, st))
        add = self.store.add_file
        if total < _HASH_INLINE_BYTES:
            return {name: add(path, st=st) for name, path, st in found}
        # Hashing large outputs would stall the dispatcher: do it in a thread.
        return await asyncio.to_thread(lambda: {name: add(path, st=st) for name, path, st in found})
