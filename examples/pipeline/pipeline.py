"""Data flowing between steps: executable -> Python function -> executable.

    python -m scalems.local examples/pipeline/pipeline.py [N]

1. ``seq`` writes the numbers 1..N to ``numbers.txt``.
2. ``summarize``, a Python function task, reads that file and returns count, sum and mean.
3. ``tee`` writes a report built from the function's return value to ``report.txt``.

Re-running in the same work directory runs nothing; changing N re-runs all three steps.
"""

import sys

import scalems


def summarize(path) -> dict:
    """Count, sum and mean of the numbers in a text file, one per line."""
    with open(path) as fh:
        numbers = [int(line) for line in fh if line.strip()]
    return {"count": len(numbers), "sum": sum(numbers), "mean": sum(numbers) / len(numbers)}


@scalems.app
def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    numbers = scalems.executable(["seq", "1", str(n)], stdout="numbers.txt", label="numbers")
    summary = scalems.submit(summarize, numbers.file["numbers.txt"])
    stats = summary.result()
    report = scalems.executable(
        ["tee", scalems.output_file("report.txt")],
        stdin=f"count={stats['count']} sum={stats['sum']} mean={stats['mean']:g}\n",
        label="report",
    )
    print("summary:", stats)
    print("report:", report.result().file["report.txt"])
