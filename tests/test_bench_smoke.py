"""The benchmark harness runs end to end (bench/run.py --smoke).

This checks that the bench works, not the figures: no timing thresholds here.
"""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NON_RP_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_bench_smoke(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--no-write", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"bench/run.py --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    data = json.loads(out.read_text())
    assert data["smoke"] is True
    for key in NON_RP_WORKLOADS:
        assert key in data["workloads"], f"{key} missing from {sorted(data['workloads'])}"
        workload = data["workloads"][key]
        medians = workload["medians"]
        assert medians, f"{key} has no medians: {workload['status']}"
        for name, value in medians.items():
            assert isinstance(value, (int, float)) and math.isfinite(value), f"{key} {name}: {value!r}"
        # Every scalems measurement and stdlib baseline ran. Optional peers (Parsl, Dask) may be
        # "not installed" or have failed on this machine; the bench reports that in their rows instead of crashing.
        for name, status in workload["status"].items():
            if name.startswith("scalems") or name in ("asyncio", "asyncio_pidfd", "ppe", "python"):
                assert status == "ok", f"{key} {name}: {status}"
                assert name in medians
    assert "W6" not in data["workloads"]
