"""``python -m scalems forget``: the next run executes exactly the forgotten tasks and their dependents."""

from cli_runs import CHAIN, MIXED, counts, run_workflow, scalems_command

from scalems.store import LAYOUT
from scalems.store.history import HistoryReader

EVERY_TASK = ("ens-0", "ens-1", "ens-2", "final", "lonely", "other", "prep", "summary")


def _ran(before: dict, after: dict) -> set:
    """Names of the tasks that executed between two count snapshots."""
    return {name for name, n in after.items() if n != before.get(name, 0)}


def _records(work) -> dict:
    with HistoryReader(work / LAYOUT / "record.sqlite") as reader:
        return {label: state for _, label, _, state in reader.records()}


def test_forget_reruns_exactly_the_tasks_and_their_dependents(tmp_path):
    work = tmp_path / "work"
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    first = counts(tmp_path)
    assert first == dict.fromkeys(EVERY_TASK, 1)
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    assert counts(tmp_path) == first  # everything cached

    forgot = scalems_command("forget", "prep", cwd=work)  # --work-dir defaults to the current directory
    assert forgot.returncode == 0, forgot.stderr
    assert forgot.stdout.splitlines()[0] == f"Forgot 3 recorded result(s) in {work}; the next run executes these tasks again:"
    assert "(needs prep)" in forgot.stdout and "(needs summary)" in forgot.stdout and "(named)" in forgot.stdout
    before = counts(tmp_path)
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    assert _ran(before, counts(tmp_path)) == {"prep", "summary", "final"}

    forgot = scalems_command("forget", "--work-dir", work, "summary", cwd=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    before = counts(tmp_path)
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    assert _ran(before, counts(tmp_path)) == {"summary", "final"}  # not prep: summary needs it, not the reverse

    forgot = scalems_command("forget", "--work-dir", work, "ens", "lonely", cwd=tmp_path)  # an ensemble's label
    assert forgot.returncode == 0 and "member of ens" in forgot.stdout
    before = counts(tmp_path)
    assert run_workflow(tmp_path, CHAIN, "chain.py").returncode == 0
    assert _ran(before, counts(tmp_path)) == {"ens-0", "ens-1", "ens-2", "lonely"}

    status = scalems_command("status", "--json", work, cwd=tmp_path)
    assert status.returncode == 0  # the run after forget is complete and clean


def test_dry_run_changes_nothing(tmp_path):
    work = tmp_path / "work"
    run_workflow(tmp_path, CHAIN, "chain.py")
    dry = scalems_command("forget", "--dry-run", "--work-dir", work, "prep", cwd=tmp_path)
    assert dry.returncode == 0 and dry.stdout.startswith("Would forget 3 recorded result(s)")
    before = counts(tmp_path)
    run_workflow(tmp_path, CHAIN, "chain.py")
    assert _ran(before, counts(tmp_path)) == set()


def test_forget_failed(tmp_path):
    work = tmp_path / "work"
    assert run_workflow(tmp_path, MIXED, "mixed.py").returncode == 1
    assert {label for label, state in _records(work).items() if state == "failed"} == {"flaky", "boom"}
    forgot = scalems_command("forget", "--failed", "--work-dir", work, cwd=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    listed = {line.split()[0] for line in forgot.stdout.splitlines()[1:] if line.startswith("  ")}
    assert listed == {"flaky", "boom"}
    assert "failed" not in _records(work).values()
    before = counts(tmp_path)
    assert run_workflow(tmp_path, MIXED, "mixed.py").returncode == 1  # they fail again, nothing else runs
    assert _ran(before, counts(tmp_path)) == {"flaky", "boom"}
    again = scalems_command("forget", "--failed", "--work-dir", work, "--dry-run", cwd=tmp_path)
    assert again.returncode == 0 and "Would forget 2" in again.stdout


def test_unknown_labels_are_a_usage_error_with_close_matches(tmp_path):
    work = tmp_path / "work"
    run_workflow(tmp_path, CHAIN, "chain.py")
    typo = scalems_command("forget", "--work-dir", work, "summery", "prep", cwd=tmp_path)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "no task labelled 'summery' is recorded (did you mean 'summary'?)" in typo.stderr
    nothing = scalems_command("forget", "--work-dir", work, "zzzzzz", cwd=tmp_path)
    assert nothing.returncode == 2 and "no similar label" in nothing.stderr
    neither = scalems_command("forget", "--work-dir", work, cwd=tmp_path)
    assert neither.returncode == 2 and "LABEL" in neither.stderr and "--failed" in neither.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_record = scalems_command("forget", "--work-dir", empty, "prep", cwd=tmp_path)
    assert no_record.returncode == 2 and "has no scalems record" in no_record.stderr
    assert not (empty / LAYOUT).exists()  # forget never creates a store
    before = counts(tmp_path)
    run_workflow(tmp_path, CHAIN, "chain.py")
    assert _ran(before, counts(tmp_path)) == set()  # the refused forget changed nothing


def test_a_task_not_run_has_nothing_to_forget(tmp_path):
    work = tmp_path / "work"
    run_workflow(tmp_path, MIXED, "mixed.py")
    done = scalems_command("forget", "--work-dir", work, "after-flaky", cwd=tmp_path)
    assert done.returncode == 0
    assert "'after-flaky' has no recorded result" in done.stdout
