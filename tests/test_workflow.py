"""Backend-independent behaviour of workflows (the contract suite).

Every test that takes ``make_workflow`` runs on each backend (conftest.py):
local, in-memory, RADICAL-Pilot and RADICAL-Pilot with Raptor. Executables run
``echo``, ``cat`` or the suite's own program (the ``tool`` fixture,
contract_tool.py), which every backend can run. Side effects that count
launches go to files outside the work directory, so "nothing ran" is
observed, not timed.
"""

import asyncio
import concurrent.futures
import pathlib
import sys

import pytest

import scalems
from scalems.exceptions import DuplicateKeyError, TaskFailedError, UpstreamFailedError


def count_lines(path: pathlib.Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def counting(tool: list, counter: pathlib.Path, *steps: str) -> list:
    """argv of the tool that first appends a line to *counter* (one line per launch), then runs *steps*."""
    return [*tool, "append", "launched", str(counter), "+", *steps]


def add_one(x):
    return x + 1


def read_number(path) -> int:
    return int(pathlib.Path(path).read_text())


def fail_with(message):
    raise ValueError(message)


class Custom:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Custom) and other.value == self.value


def make_custom(value):
    return Custom(value), {value, value + 1}


def test_executable_result_fields(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        task = scalems.executable(["echo", "hello", "world"], label="hello")
        result = task.result(timeout=120)
    assert result.exitcode == 0
    assert pathlib.Path(result.stdout).is_absolute()
    assert pathlib.Path(result.stdout).read_text() == "hello world\n"
    assert pathlib.Path(result.stderr).read_text() == ""
    assert pathlib.Path(result.directory) == pathlib.Path(result.stdout).parent
    assert result.file["stdout"] == result.stdout
    assert "state=done" in repr(task) and "hello" in repr(task)


def test_output_file_feeds_next_task_and_function(make_workflow, tool, tmp_path):
    with make_workflow(tmp_path / "work"):
        writer = scalems.executable([*tool, "write", "41", scalems.output_file("value.txt")], label="writer")
        number = scalems.submit(read_number, writer.file["value.txt"])
        plus_one = scalems.submit(add_one, number)
        copy = scalems.executable(["cat", writer.file["value.txt"]], label="copy")
        assert plus_one.result(timeout=120) == 42
        assert pathlib.Path(copy.result(timeout=120).stdout).read_text() == "41\n"
        assert pathlib.Path(writer.result().file["value.txt"]).read_text() == "41\n"


def test_inputs_outputs_stdin_and_env(make_workflow, tool, tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("alpha\nbeta\n")
    with make_workflow(tmp_path / "work"):
        task = scalems.executable(
            [*tool, "cat", "+", "env", "GREETING", "+", "copy"],  # copy takes the -i/-o flags appended last
            inputs={"-i": source},
            outputs={"-o": "copy.txt"},
            stdin=["from stdin"],
            env={"GREETING": "hi there"},
            label="io",
        )
        result = task.result(timeout=120)
    assert pathlib.Path(result.file["copy.txt"]).read_text() == "alpha\nbeta\n"
    assert pathlib.Path(result.stdout).read_text() == "from stdin\nhi there\n"


def test_function_results_round_trip(make_workflow, tmp_path):
    scale = 3

    def closure(x):
        return x * scale

    with make_workflow(tmp_path / "work"):
        tasks = [scalems.submit(closure, i) for i in range(5)]
        custom = scalems.submit(make_custom, 7)
        assert [t.result(timeout=120) for t in tasks] == [0, 3, 6, 9, 12]
        obj, values = custom.result(timeout=120)
    assert obj == Custom(7) and values == {7, 8}


def test_failures_fail_dependents_only(make_workflow, tool, tmp_path):
    with make_workflow(tmp_path / "work") as workflow:
        bad = scalems.executable([*tool, "fail", "3", "oops", "+", "write", "x", scalems.output_file("x")], label="bad")
        dependent = scalems.executable(["cat", bad.file["x"]], label="dependent")
        downstream = scalems.submit(add_one, dependent)
        raising = scalems.submit(fail_with, "bad value 17")
        missing = scalems.executable(["no-such-program-scalems", "x"], label="missing")
        independent = scalems.executable(["echo", "fine"], label="independent")
        assert independent.result(timeout=120).exitcode == 0
        with pytest.raises(TaskFailedError) as failure:
            bad.result(timeout=120)
        assert failure.value.exitcode == 3
        assert pathlib.Path(failure.value.stderr).read_text() == "oops\n"
        with pytest.raises(UpstreamFailedError) as upstream:
            dependent.result(timeout=120)
        assert upstream.value.upstream == "bad"
        with pytest.raises(UpstreamFailedError) as transitive:
            downstream.result(timeout=120)
        assert transitive.value.upstream == "bad" and "'bad'" in str(transitive.value)
        with pytest.raises(TaskFailedError, match="bad value 17") as raised:
            raising.result(timeout=120)
        assert isinstance(raised.value.__cause__, ValueError)
        with pytest.raises(TaskFailedError, match="not found.*no-such-program-scalems|no-such-program-scalems.*not found"):
            missing.result(timeout=120)
    assert {t.label for t in workflow.failures()} >= {"bad", "dependent", "missing"}


def test_rerun_runs_nothing_and_changes_rerun_exactly_affected(make_workflow, tool, tmp_path):
    counter = tmp_path / "launches"
    data = tmp_path / "data.txt"
    data.write_text("5\n")
    calls = tmp_path / "calls"

    def workflow_body(n_members: int):
        def tally(path, offset):
            with open(calls, "a") as fh:
                fh.write("call\n")
            return int(pathlib.Path(path).read_text()) + offset

        source = scalems.executable(
            counting(tool, counter, "copy", data, scalems.output_file("value")), label="source"
        )
        members = scalems.executable([counting(tool, counter, "echo", str(i)) for i in range(n_members)], label="member")
        totals = [scalems.submit(tally, source.file["value"], offset) for offset in (1, 2)]
        return [t.result(timeout=120) for t in totals], [m.result(timeout=120).stdout for m in members]

    with make_workflow(tmp_path / "work"):
        first = workflow_body(3)
    launches, function_calls = count_lines(counter), count_lines(calls)
    assert first[0] == [6, 7]
    assert function_calls == 2

    with make_workflow(tmp_path / "work") as again:
        second = workflow_body(3)
    assert second == first
    assert count_lines(counter) == launches, "a re-run launched task processes"
    assert count_lines(calls) == function_calls, "a re-run called functions again"
    assert all(t.from_cache for t in again.tasks)
    assert not again.backend_started, "a fully cached re-run should not start the backend"
    assert again.counts == {"added": 6, "cached": 6, "done": 6}

    data.write_text("10\n")  # same size, new content: only source and the two tallies re-run
    with make_workflow(tmp_path / "work") as third_run:
        third = workflow_body(3)
    assert third[0] == [11, 12]
    assert third_run.counts == {"added": 6, "cached": 3, "done": 6}
    assert third_run.counts["failed"] == 0
    assert count_lines(counter) == launches + 1
    assert count_lines(calls) == function_calls + 2

    with make_workflow(tmp_path / "work", use_cache=False):
        workflow_body(3)
    assert count_lines(counter) == launches + 1 + 4


def test_cached_outputs_restored_if_deleted(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        path = pathlib.Path(scalems.executable(["echo", "keep me"], label="keep").result(timeout=120).stdout)
    path.unlink()
    with make_workflow(tmp_path / "work"):
        task = scalems.executable(["echo", "keep me"], label="keep")
        assert task.from_cache
        assert pathlib.Path(task.result().stdout).read_text() == "keep me\n"


def test_labels_identity_and_ensembles(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        a = scalems.executable(["echo", "a"], label="same")
        assert scalems.executable(["echo", "a"], label="same") is a
        unlabelled = scalems.executable(["echo", "a"])
        assert unlabelled is not a and scalems.executable(["echo", "a"]) is unlabelled
        with pytest.raises(DuplicateKeyError, match="same"):
            scalems.executable(["echo", "b"], label="same")
        ensemble = scalems.executable([["echo", str(i)] for i in range(4)], label="ens")
        assert [m.label for m in ensemble] == ["ens-0", "ens-1", "ens-2", "ens-3"]
        outputs = [pathlib.Path(r.stdout).read_text() for r in ensemble.result(timeout=120)]
        assert outputs == ["0\n", "1\n", "2\n", "3\n"]
        total = scalems.submit(sum, [scalems.submit(add_one, i) for i in range(4)])
        assert total.result(timeout=120) == 10


def test_replicas_run_once_each_and_identical_calls_once(make_workflow, tool, tmp_path):
    """Stochastic replicas: ensemble members and differently labelled tasks with one command line
    are distinct tasks; an unlabelled identical call is the same task (its result is reused)."""
    counter = tmp_path / "launches"
    calls = tmp_path / "calls"

    def sample(path):
        with open(path, "a") as fh:
            fh.write("call\n")
        return 1

    def body():
        replicas = scalems.executable([counting(tool, counter, "echo", "same")] * 4, label="replica")
        labelled = [scalems.executable(counting(tool, counter, "echo", "same"), label=f"run-{i}") for i in range(2)]
        twice = [scalems.executable(counting(tool, counter, "echo", "once")) for _ in range(2)]
        functions = [scalems.function_task(sample, args=(str(calls),), label=f"s-{i}") for i in range(3)]
        repeated = [scalems.submit(sample, str(calls)) for _ in range(2)]
        assert twice[0] is twice[1] and repeated[0] is repeated[1]
        assert len({t.uid for t in (*replicas, *labelled)}) == 6
        scalems.wait([*replicas, *labelled, *twice, *functions, *repeated], timeout=120)
        return [t.result() for t in (*functions, *repeated)]

    with make_workflow(tmp_path / "work"):
        assert body() == [1] * 5
    assert count_lines(counter) == 4 + 2 + 1
    assert count_lines(calls) == 3 + 1
    with make_workflow(tmp_path / "work") as again:
        body()
    assert (count_lines(counter), count_lines(calls)) == (7, 4), "a re-run ran replicas again"
    assert again.counts["cached"] == again.counts["added"] == 4 + 2 + 1 + 3 + 1


def test_named_inputs_and_self_written_outputs(make_workflow, tool, tmp_path):
    """Programs that read files by fixed names and write files nobody named on their command line."""
    deck = tmp_path / "in.deck"
    deck.write_text("deck v1\n")
    counter = tmp_path / "launches"

    def body():
        # Writes log.out by itself (not on its argv), the way LAMMPS writes log.lammps.
        first = scalems.executable(
            counting(tool, counter, "copy", "params.in", "log.out"),
            inputs=[("params.in", deck)],
            outputs=["log.out"],
            label="first",
        )
        # Reads the earlier task's file under a name of its choosing, plus a file by its base name.
        second = scalems.executable(
            [*tool, "cat", "restart.in", "in.deck"],
            inputs=[("restart.in", first.file["log.out"]), str(deck)],
            label="second",
        )
        return first, second

    with make_workflow(tmp_path / "work"):
        first, second = body()
        assert pathlib.Path(first.result(timeout=120).file["log.out"]).read_text() == "deck v1\n"
        assert pathlib.Path(second.result(timeout=120).stdout).read_text() == "deck v1\ndeck v1\n"
        # Nothing was added to the command line for the placed input or the self-written output.
        assert list(first.spec.argv) == counting(tool, counter, "copy", "params.in", "log.out")
    with make_workflow(tmp_path / "work"):
        first, _ = body()
        assert first.from_cache
    deck.write_text("deck v2\n")  # a placed input's content is part of the identity
    with make_workflow(tmp_path / "work"):
        first, second = body()
        assert not first.from_cache
        assert pathlib.Path(second.result(timeout=120).stdout).read_text() == "deck v2\ndeck v2\n"
    assert count_lines(counter) == 2


def test_closure_rebound_after_creation_is_a_different_task(make_workflow, tmp_path):
    """Late binding: a closure's captured value at submission time is part of the task's identity."""
    factor = 2

    def times(x):
        return x * factor

    with make_workflow(tmp_path / "work"):
        first = scalems.submit(times, 5)
        factor = 3
        second = scalems.submit(times, 5)
        assert first is not second and first.uid != second.uid
        assert (first.result(timeout=120), second.result(timeout=120)) == (10, 15)


def test_wait_and_as_completed(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        tasks = [scalems.submit(add_one, i) for i in range(6)]
        done, not_done = scalems.wait(tasks, timeout=120)
        assert not not_done and done == set(tasks)
        finished = list(scalems.as_completed(tasks, timeout=120))
        assert sorted(t.result() for t in finished) == [1, 2, 3, 4, 5, 6]
        callbacks = []
        tasks[0].add_done_callback(callbacks.append)
        assert callbacks == [tasks[0]]
        with pytest.raises(ValueError, match="return_when"):
            scalems.wait(tasks, return_when="SOMETIMES")


def test_wait_returns_early_on_failure_or_first_completion(make_workflow, tool, tmp_path):
    gate = tmp_path / "gate"
    with make_workflow(tmp_path / "work"):
        slow = scalems.executable([*tool, "wait-for", str(gate)])
        failing = scalems.submit(fail_with, "early")
        done, not_done = scalems.wait([slow, failing], timeout=120, return_when=scalems.FIRST_EXCEPTION)
        assert done == {failing} and not_done == {slow}
        done, not_done = scalems.wait([slow, failing], timeout=120, return_when=scalems.FIRST_COMPLETED)
        assert failing in done and slow in not_done
        with pytest.raises(concurrent.futures.TimeoutError):
            slow.result(timeout=0.1)
        gate.touch()
        assert slow.result(timeout=120).exitcode == 0


def test_argument_errors_are_reported_at_the_call(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        with pytest.raises(FileNotFoundError, match="no-such-input"):
            scalems.executable(["cat", pathlib.Path("no-such-input.txt")])
        with pytest.raises(TypeError, match="argv"):
            scalems.executable("echo hello")
        with pytest.raises(ValueError, match="resource"):
            scalems.executable(["echo"], resources={"rank": 2})
        task = scalems.executable(["echo"], label="t")
        with pytest.raises(KeyError, match="declares no output file"):
            task.file["nope"]


def test_async_use_inside_running_loop(make_workflow, tmp_path):
    async def notebook_cell():
        async with make_workflow(tmp_path / "work"):
            task = scalems.submit(add_one, 1)
            ensemble = scalems.executable([["echo", str(i)] for i in range(2)])
            value = await task
            results = await ensemble
        return value, [r.exitcode for r in results]

    assert asyncio.run(asyncio.wait_for(notebook_cell(), 180)) == (2, [0, 0])


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
@pytest.mark.needs_processes
def test_no_processes_left_behind(make_workflow, tmp_path, no_leaked_processes):
    with make_workflow(tmp_path / "work"):
        scalems.submit(add_one, 1).result(timeout=120)
        scalems.executable(["echo", "x"]).result(timeout=120)


def crash_worker(code):
    import os

    os._exit(code)


@pytest.mark.needs_processes
def test_function_that_kills_its_process_fails_alone(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        crashed = scalems.submit(crash_worker, 3)
        after = [scalems.submit(add_one, i) for i in range(8)]
        with pytest.raises(TaskFailedError, match="crash_worker|exit|status 3"):
            crashed.result(timeout=120)
        assert [t.result(timeout=120) for t in after] == list(range(1, 9))


def test_backend_that_cannot_start_fails_tasks_with_its_reason(tmp_path):
    from scalems.local.backend import LocalBackend
    from scalems.workflow import WorkflowManager

    class Broken(LocalBackend):
        async def runtime_startup(self):
            raise RuntimeError("allocation refused by the batch system")

    manager = WorkflowManager(lambda m, p: Broken(), directory=tmp_path, progress=False)
    with manager:
        tasks = [scalems.executable(["echo", str(i)]) for i in range(3)]
        for task in tasks:
            with pytest.raises(TaskFailedError, match="could not start: allocation refused"):
                task.result(timeout=60)
    assert manager.backend_error is not None


def test_labels_that_sanitize_alike_get_separate_directories(make_workflow, tmp_path):
    with make_workflow(tmp_path / "work"):
        a = scalems.executable(["echo", "a"], label="run/1")
        b = scalems.executable(["echo", "b"], label="run 1")
        assert a.directory != b.directory
        assert pathlib.Path(a.result(timeout=120).stdout).read_text() == "a\n"
        assert pathlib.Path(b.result(timeout=120).stdout).read_text() == "b\n"


def test_default_labels_stay_unique_when_uids_start_alike(make_workflow, tmp_path, monkeypatch):
    """Default labels carry 8 uid digits; with ~100,000 tasks of one program two uids share them
    (birthday bound), and the tasks must still get distinct labels and directories."""
    import scalems.workflow.naming

    monkeypatch.setattr(scalems.workflow.naming, "LABEL_DIGITS", 1)  # 40 tasks, 16 digits: shared for sure

    def run():
        with make_workflow(tmp_path / "work"):
            tasks = [scalems.executable(["echo", str(i)]) for i in range(40)]
            outputs = [pathlib.Path(t.result(timeout=120).stdout).read_text() for t in tasks]
        return tasks, outputs

    tasks, outputs = run()
    assert outputs == [f"{i}\n" for i in range(40)]
    assert len({t.label for t in tasks}) == 40
    assert len({t.directory for t in tasks}) == 40
    again, outputs_again = run()
    assert [t.label for t in again] == [t.label for t in tasks]  # the same labels when run again
    assert outputs_again == outputs and all(t.from_cache for t in again)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1, "a", None, True), {}),  # plain: fingerprinted without an Encoder
        ((), {}),
        ((2.5,), {}),  # a float is not plain
        ((3,), {"key": None}),
        (([1, 2],), {}),
        (("x" * 3, -7, False), {}),
    ],
)
def test_task_uid_is_the_fingerprint_of_its_material(args, kwargs):
    """The shortcuts for repeated calls of one function give the fingerprint's definition."""
    import json

    from scalems.execution.jobs import DEFAULT_RESOURCES
    from scalems.workflow.fingerprint import Encoder, fingerprint
    from scalems.workflow.spec import FunctionSpec

    def no_files(path):
        raise AssertionError(f"no file argument here, got {path}")

    spec = FunctionSpec(json.dumps, args, kwargs, DEFAULT_RESOURCES, None)
    expected = fingerprint(spec.material(Encoder(no_files)))
    assert spec.uid(Encoder(no_files)) == expected  # also caches the function's head
    assert spec.uid(Encoder(no_files)) == expected  # from the cached head
    assert spec.plain_uid() in (None, expected)
    plain = not kwargs and all(type(a) in (str, int, bool, type(None)) for a in args)
    assert (spec.plain_uid() is not None) == plain


def test_inputs_with_one_base_name_stay_apart_and_an_input_may_be_edited_in_place(make_workflow, tool, tmp_path):
    """Two argv inputs named alike and a placed input of that name each reach the program as
    themselves; a program that edits its input (gmx solvate -p topol.top) declares it as an output."""
    for folder, text in (("a", "from a\n"), ("b", "from b\n"), ("c", "placed\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "in.dat").write_text(text)
    with make_workflow(tmp_path / "work"):
        both = scalems.executable(
            [*tool, "cat", tmp_path / "a" / "in.dat", tmp_path / "b" / "in.dat", "in.dat"],
            inputs=[tmp_path / "c" / "in.dat"],
        )
        edited = scalems.executable(
            [*tool, "append", "added", "topol.top"], inputs=[tmp_path / "a" / "in.dat", ("topol.top", tmp_path / "b" / "in.dat")],
            outputs=["topol.top"],
        )
        text = pathlib.Path(both.result(timeout=120).stdout).read_text()
        assert text == "from a\nfrom b\nplaced\n"
        assert pathlib.Path(edited.result(timeout=120).file["topol.top"]).read_text() == "from b\nadded\n"
    assert (tmp_path / "b" / "in.dat").read_text() == "from b\n"  # the original is untouched
