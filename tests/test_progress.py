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


def test_progress_text_shows_the_status_note_after_the_counts():
    manager = FakeManager()
    manager.counts = collections.Counter(added=3)
    manager.status_note = "pilot queued: Slurm job 12 (Resources), 1 min"
    text = ProgressLine(manager).text()
    assert text == "[scalems] 0/3 finished, 0 running \u2014 pilot queued: Slurm job 12 (Resources), 1 min"
    manager.status_note = None
    assert ProgressLine(manager).text() == "[scalems] 0/3 finished, 0 running"


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


def test_the_progress_line_shows_what_a_starting_backend_waits_for(tmp_path):
    """A backend's status note reaches the progress line while the backend is still starting."""
    import asyncio

    import scalems
    from scalems.memory.backend import MemoryBackend
    from scalems.workflow.manager import WorkflowManager

    waiting, release = threading.Event(), threading.Event()

    class QueuedBackend(MemoryBackend):
        async def runtime_startup(self):
            self.status_note = "pilot queued: Slurm job 12 (Resources), 1 min"
            waiting.set()
            await asyncio.to_thread(release.wait, 60)
            self.status_note = None
            return await super().runtime_startup()

    with WorkflowManager(lambda manager, params: QueuedBackend(), directory=tmp_path, progress=False) as manager:
        line = ProgressLine(manager)
        task = scalems.submit(pow, 2, 3)
        assert waiting.wait(30)
        assert line.text() == "[scalems] 0/1 finished, 0 running \u2014 pilot queued: Slurm job 12 (Resources), 1 min"
        release.set()
        assert task.result(timeout=30) == 8
    assert line.text() == "[scalems] 1/1 finished, 0 running"
