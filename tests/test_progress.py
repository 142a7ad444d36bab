"""The live progress line: drawn on terminals for long runs, silent otherwise."""

import collections
import io
import threading

from scalems.progress import ProgressLine


class FakeManager:
    def __init__(self):
        self.counts = collections.Counter(added=10, done=4, running=2, failed=1, cached=3)


def test_progress_text_counts_tasks():
    text = ProgressLine(FakeManager()).text()
    assert text == "[scalems] 5/10 finished, 2 running, 3 cached, 1 failed"


def test_progress_text_says_what_the_backend_prepares():
    manager = FakeManager()
    manager.backend_status = "creating the task environment /shared/scalems-env-0123456789abcdef"
    text = ProgressLine(manager).text()
    assert text.endswith(", 1 failed, creating the task environment /shared/scalems-env-0123456789abcdef")


def test_progress_draws_and_clears_on_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(ProgressLine, "DELAY", 0.0)
    line = ProgressLine(FakeManager(), stream=stream)
    drawn = threading.Event()
    original = stream.write

    def write(text):
        original(text)
        if "finished" in text:
            drawn.set()

    stream.write = write
    line._thread.start()
    assert drawn.wait(10)
    line.stop()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_is_silent_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert ProgressLine.maybe_start(FakeManager(), enabled=None) is None
