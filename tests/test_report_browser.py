"""The report in a real browser: Debian's chromium, headless.

The page must load without a console message (an error, or a failed load of
anything outside the file), and a screenshot must show the timeline: one bar
per attempt, counted twice, in the DOM (``data-attempt`` elements) and in the
pixels (connected areas of each outcome's colour, plus its legend swatch).
Chromium runs in a session of its own and a profile in the test's tmp dir;
whatever it leaves running is ended.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from cli import run_module, write_script
from cli_runs import scalems_command

from scalems.store import LAYOUT
from scalems.store.history import HistoryReader

pytestmark = pytest.mark.browser

# Attempts long enough to be wide bars: three sleepers, a task failing in both of its attempts
# (back to back in one lane), a function task on a worker, and a task not run (no bar).
BROWSER_RUN = """
import time, scalems

def nap(seconds):
    time.sleep(seconds)
    return seconds

@scalems.app
def main():
    scalems.executable([["sleep", "0.6"] for _ in range(3)], label="sleeper")
    flaky = scalems.executable(["sh", "-c", "sleep 0.4; echo nope >&2; exit 3"], outputs=["x"], retries=1, label="flaky")
    scalems.executable(["cat", flaky.file["x"]], label="after-flaky")
    scalems.function_task(nap, args=(0.5,), label="nap")
"""

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
)


@pytest.fixture(scope="module")
def chromium_path():
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("Debian's chromium is not installed (as root: bash tools/install-chromium.sh)")
    return found


def _session_members(sid: int) -> list:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except OSError:
                continue
    return members


def chromium(path: str, profile, *args) -> subprocess.CompletedProcess:
    """Run chromium with *args* in a session of its own; end what it leaves running."""
    process = subprocess.Popen(
        [path, *FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        deadline = time.monotonic() + 10
        while _session_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in _session_members(process.pid):  # helpers that outlived the browser
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert process.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def console_messages(stderr: str) -> list:
    """What the page said on the console (chromium logs each message as ``INFO:CONSOLE``) and uncaught errors."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def components(mask, min_size: int = 30) -> list:
    """Sizes of the 4-connected areas of a boolean image, by runs of each row (union-find)."""
    import numpy

    parent: list = []
    sizes: list = []

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    previous: list = []
    for row in mask:
        edges = numpy.diff(numpy.concatenate(([0], row.astype(numpy.int8), [0])))
        runs = []
        j = 0
        for start, end in zip(numpy.flatnonzero(edges == 1), numpy.flatnonzero(edges == -1)):
            me = len(parent)
            parent.append(me)
            sizes.append(int(end - start))
            while j < len(previous) and previous[j][1] <= start:
                j += 1
            k = j
            while k < len(previous) and previous[k][0] < end:
                a, b = find(me), find(previous[k][2])
                if a != b:
                    parent[b] = a
                k += 1
            runs.append((start, end, me))
        previous = runs
    totals: dict = {}
    for node, size in enumerate(sizes):
        root = find(node)
        totals[root] = totals.get(root, 0) + size
    return sorted(size for size in totals.values() if size >= min_size)


@pytest.fixture(scope="module")
def browser_report(tmp_path_factory):
    """``(tmp dir, page path, attempts of the run)`` for a run of BROWSER_RUN."""
    tmp = tmp_path_factory.mktemp("browser")
    script = write_script(tmp, "browser.py", BROWSER_RUN)
    work = tmp / "work"
    work.mkdir()
    ran = run_module("scalems.local", "--cores", "4", script, cwd=work)
    assert ran.returncode == 1, ran.stderr  # flaky failed
    page = tmp / "report.html"
    done = scalems_command("report", work, "-o", page, cwd=tmp)
    assert done.returncode == 0, done.stderr
    with HistoryReader(work / LAYOUT / "record.sqlite") as reader:
        attempts = reader.attempts(reader.latest_run().id)
    assert sorted(a.outcome for a in attempts) == ["done"] * 4 + ["failed"] * 2
    return tmp, page, attempts


def test_the_page_loads_without_console_messages_and_has_every_bar(chromium_path, browser_report):
    tmp, page, attempts = browser_report
    loaded = chromium(chromium_path, tmp / "profile-dom", "--dump-dom", page.as_uri())
    assert console_messages(loaded.stderr) == []
    dom = loaded.stdout
    assert "6 tasks: 4 done, 1 failed, 1 not run" in dom
    assert dom.count("data-attempt=") == len(attempts) == 6
    assert dom.count('data-outcome="failed"') == 2


def test_a_screenshot_shows_one_bar_per_attempt(chromium_path, browser_report):
    import numpy
    from PIL import Image

    from scalems.cli.plots import OUTCOME_COLORS

    tmp, page, attempts = browser_report
    shot = tmp / "screenshot.png"
    taken = chromium(chromium_path, tmp / "profile-shot", f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri())
    assert console_messages(taken.stderr) == []
    pixels = numpy.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2000, 1400)
    not_white = (pixels.min(axis=2) < 235).mean()
    assert not_white > 0.02, f"the screenshot is nearly blank ({not_white:.1%} of it is not white)"
    for outcome in ("done", "failed"):
        color = numpy.array([int(OUTCOME_COLORS[outcome][i : i + 2], 16) for i in (1, 3, 5)])
        mask = (abs(pixels - color) <= 12).all(axis=2)
        areas = components(mask)
        expected = sum(a.outcome == outcome for a in attempts) + 1  # and its legend swatch
        assert len(areas) == expected, f"{outcome}: {len(areas)} areas of its colour ({areas}), expected {expected}"
