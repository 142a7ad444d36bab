"""``python -m scalems report``: the page's content, its independence, a missing extra, a run of 100,000 tasks."""

import json
import re
import subprocess
import sys

import pytest

from cli import run_module, write_script
from cli_runs import MIXED, run_workflow, scalems_command

from scalems.store import LAYOUT
from scalems.store.history import HistoryReader


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory):
    """A finished run of cli_runs.MIXED and its report: ``(tmp dir, work dir, page text)``."""
    tmp = tmp_path_factory.mktemp("report")
    assert run_workflow(tmp, MIXED, "mixed.py").returncode == 1
    work = tmp / "work"
    done = scalems_command("report", work, "-o", tmp / "report.html", cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Wrote {tmp / 'report.html'} (")
    return tmp, work, (tmp / "report.html").read_text()


def test_report_has_summary_timeline_cores_tasks_and_failures(mixed_report):
    _, work, page = mixed_report
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "8 tasks: 5 done, 2 failed, 1 not run (a task they need failed)" in page
    for anchor in ('id="summary"', 'id="timeline"', 'id="cores"', 'id="tasks"', 'id="failures"'):
        assert anchor in page
    with HistoryReader(work / LAYOUT / "record.sqlite") as reader:
        attempts = reader.attempts(reader.latest_run().id)
    bars = re.findall(r'data-attempt="([^"]+)" data-outcome="([^"]+)"', page)
    assert sorted(bars) == sorted((f"{a.label}#{a.attempt}", a.outcome) for a in attempts)
    assert len(bars) == 8 and sum(outcome == "failed" for _, outcome in bars) == 3
    assert "core budget (2)" in page and "of the budget&#x27;s core-time" in page
    table = page[page.index('id="tasks"') : page.index('id="failures"')]
    for label in ("prep", "summary", "final", "flaky", "after-flaky", "boom", "ens-0", "ens-1"):
        assert f"<td>{label}</td>" in table
    assert "needs &#x27;flaky&#x27;, which failed" in table and ">not run<" in table
    failures = page[page.index('id="failures"') :]
    tail = re.search(r"<pre>(.*?)</pre>", failures, re.S).group(1).splitlines()
    assert tail == [f"complaint {i}" for i in range(11, 31)]
    assert "ValueError: bad value in boom" in failures and "1 task(s) were not run" in failures


def test_report_is_self_contained(mixed_report):
    _, _, page = mixed_report
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r'(src|href)="(?!#)', page), "the page refers to something outside itself"
    assert "url(http" not in page and "@import" not in page
    assert page.count("<svg") == 2


def test_without_matplotlib_report_says_how_to_install_it(tmp_path):
    assert run_workflow(tmp_path, MIXED, "mixed.py").returncode == 1
    blocked = (
        "import sys; sys.modules['matplotlib'] = None\n"  # as if the extra were not installed
        "from scalems.cli import main\n"
        f"sys.exit(main(['report', {str(tmp_path / 'work')!r}, '-o', {str(tmp_path / 'r.html')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'scalems[report]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_usage_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_record = scalems_command("report", empty, "-o", tmp_path / "r.html", cwd=tmp_path)
    assert no_record.returncode == 2 and "has no scalems record" in no_record.stderr
    assert run_workflow(tmp_path, MIXED, "mixed.py").returncode == 1
    nowhere = scalems_command("report", tmp_path / "work", "-o", tmp_path / "missing" / "r.html", cwd=tmp_path)
    assert nowhere.returncode == 2 and "is not a directory" in nowhere.stderr
    default = scalems_command("report", cwd=tmp_path / "work")  # WORK_DIR and -o default to the current directory
    assert default.returncode == 0 and (tmp_path / "work" / "report.html").is_file()
    assert not list((tmp_path / "work").glob(".report.html.*"))  # no temporary left


@pytest.mark.slow
def test_a_run_of_100000_tasks_gives_a_usable_page(tmp_path):
    script = write_script(
        tmp_path,
        "big.py",
        """
        import scalems

        def noop(i):
            return i

        @scalems.app
        def main():
            for i in range(100_000):
                scalems.submit(noop, i)
            scalems.executable(["sh", "-c", "echo broken >&2; exit 5"], label="the-bad-one")
        """,
    )
    work = tmp_path / "work"
    work.mkdir()

    ran = run_module("scalems.local", "--cores", "2", script, cwd=work, timeout=1200)
    assert ran.returncode == 1, ran.stderr[-2000:]
    status = scalems_command("status", "--json", work, cwd=tmp_path, timeout=600)
    found = json.loads(status.stdout)
    assert status.returncode == 1 and len(found["tasks"]) == 100_001 and found["counts"]["done"] == 100_000
    done = scalems_command("report", work, "-o", tmp_path / "big.html", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "big.html").read_text()
    assert len(page) < 5_000_000
    assert "This run has 100,001 attempts, more than the 2,000 drawn one by one" in page
    assert "Showing 2,000 of 100,001 tasks (those that failed first)" in page
    assert "data-attempt" not in page and page.count("<image") >= 1  # the bars as one embedded image
    table = page[page.index('id="tasks"') : page.index('id="failures"')]
    assert table.index("<td>the-bad-one</td>") < table.index("<td>noop-")  # failures first
    assert table.count("<tr>") == 2000 + 1
    assert "broken" in page[page.index('id="failures"') :]
