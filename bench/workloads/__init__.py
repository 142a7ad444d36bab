"""The six workloads of bench/run.py, one module each (see bench/README.md for what each measures).

``WORKLOADS`` maps the key used with ``--only`` to the workload class; ``base.Workload`` holds what
they share (rows, targets, the JSON shape).
"""

from workloads.w1_executables import W1
from workloads.w2_functions import W2
from workloads.w3_cached_rerun import W3
from workloads.w4_scale import W4
from workloads.w5_startup import W5
from workloads.w6_radical import W6

WORKLOADS = {"W1": W1, "W2": W2, "W3": W3, "W4": W4, "W5": W5, "W6": W6}
