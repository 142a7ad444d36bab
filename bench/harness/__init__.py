"""Shared machinery of bench/run.py, kept apart from the workloads so that each workload module reads alone.

- ``common``: paths, sizes, ``BenchError``/``log`` and running one sample as a fresh process
- ``sampling``: alternating the systems under test, and how disturbed the machine was meanwhile
- ``scripts``: the generated ``python -m scalems.local`` workflow scripts and the scratch directory
- ``report``: the machine description, the table, and bench/RESULTS.md
"""
