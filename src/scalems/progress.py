"""A live one-line progress display for long runs on a terminal.

It appears only when standard error is a terminal and the run lasts more
than a moment; otherwise it stays silent so logs and pipes stay clean.
"""

from __future__ import annotations

__all__ = ("ProgressLine",)

import sys
import threading


class ProgressLine:
    """Redraws ``[scalems] 12/20 done, 2 running, 1 failed`` on stderr until stopped."""

    DELAY = 2.0  # seconds before the first draw: short runs print nothing.
    INTERVAL = 0.5

    def __init__(self, manager, stream=None):
        self._manager = manager
        self._stream = stream or sys.stderr
        self._stop = threading.Event()
        self._drawn = False
        self._thread = threading.Thread(target=self._run, name="scalems-progress", daemon=True)

    @classmethod
    def maybe_start(cls, manager, enabled=None):
        if enabled is None:
            enabled = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        if not enabled:
            return None
        line = cls(manager)
        line._thread.start()
        return line

    def text(self) -> str:
        c = self._manager.counts
        finished = c["done"] + c["failed"] + c["cancelled"]
        parts = [f"{finished}/{c['added']} finished", f"{max(c['running'], 0)} running"]
        if c["cached"]:
            parts.append(f"{c['cached']} cached")
        if c["failed"]:
            parts.append(f"{c['failed']} failed")
        status = getattr(self._manager, "backend_status", None)
        if status:
            parts.append(status)
        return "[scalems] " + ", ".join(parts)

    def _run(self):
        if self._stop.wait(self.DELAY):
            return
        while not self._stop.is_set():
            self._stream.write("\r\x1b[K" + self.text())
            self._stream.flush()
            self._drawn = True
            self._stop.wait(self.INTERVAL)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
