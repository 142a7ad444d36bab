"""The run history names, per attempt, the tasks it took input from (record layout 3).

``python -m scalems forget`` needs this to find what was computed from a forgotten result;
older records gain the column when opened and read as "not known".
"""

import sqlite3

import scalems
import scalems.local
from scalems.store import LAYOUT, SCHEMA_VERSION, FileStore
from scalems.store.history import HistoryReader, split_uids

# The layout-2 attempt table, as scalems wrote it before the upstream column.
LAYOUT_2_ATTEMPT = """
CREATE TABLE attempt (
    uid TEXT NOT NULL, run INTEGER NOT NULL, attempt INTEGER NOT NULL, label TEXT NOT NULL,
    kind TEXT NOT NULL, started REAL NOT NULL, ended REAL NOT NULL, host TEXT NOT NULL, place TEXT,
    outcome TEXT NOT NULL, exitcode INTEGER, error TEXT, PRIMARY KEY (uid, run, attempt)
)
"""


def _double(x):
    return 2 * x


def test_attempts_name_their_upstream_tasks(tmp_path):
    with scalems.local.workflow(directory=tmp_path, cores=2, progress=False):
        first = scalems.executable(["sh", "-c", "echo 1 > n"], outputs=["n"], label="first")
        second = scalems.executable(["cat", first.file["n"]], label="second")
        value = scalems.function_task(_double, args=(3,), label="value")
        both = scalems.function_task(_double, args=([second, value],), label="both")
    with HistoryReader(tmp_path / LAYOUT / "record.sqlite") as reader:
        upstream = {a.label: split_uids(a.upstream) for a in reader.attempts()}
        edges = dict(reader.dependencies())
        assert reader.without_dependencies() == set()
    assert upstream == {"first": [], "second": [first.uid], "value": [], "both": [second.uid, value.uid]}
    assert edges == {second.uid: first.uid, both.uid: second.uid + value.uid}


def test_a_layout_2_record_gains_the_column_and_reads_as_unknown(tmp_path):
    db = tmp_path / LAYOUT / "record.sqlite"
    FileStore(tmp_path).open().close()
    with sqlite3.connect(db) as conn:  # make it a layout-2 record holding one attempt
        conn.execute("DROP TABLE attempt")
        conn.execute(LAYOUT_2_ATTEMPT)
        conn.execute(
            "INSERT INTO attempt VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ("a" * 64, 1, 1, "old", "executable", 1.0, 2.0, "h", "cores 0", "done", 0, None),
        )
        conn.execute("INSERT INTO task VALUES (?,?,?,?,?,?,?,?)", ("a" * 64, "old", "executable", "complete", None, "{}", None, 2.0))
        conn.execute("PRAGMA user_version=2")
    conn.close()
    with HistoryReader(db) as reader:  # read as it is (a reader never migrates)
        [attempt] = reader.attempts()
        assert attempt.label == "old" and attempt.upstream is None
        assert list(reader.dependencies()) == [] and reader.without_dependencies() == {"a" * 64}
    FileStore(tmp_path).open().close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("SELECT label, upstream FROM attempt").fetchall() == [("old", None)]
    conn.close()
    with HistoryReader(db) as reader:
        assert reader.without_dependencies() == {"a" * 64}
