"""The reliability figures the suite prints at its end (issue 5): what was tried, and how much broke.

Tests call ``record("faults_injected", 3)``; the counts of every xdist worker are summed by the controller and
printed as one line at the end of the run, e.g.::

    reliability: scenarios=212 faults_injected=180 duplicates_delivered=1433 fuzz_cases=2400 violations=0

``violations`` counts the failed tests marked ``reliability`` plus anything recorded under that name, so a red
reliability test can never print "violations=0".
"""

from __future__ import annotations

import threading
from collections import Counter

FIGURES = ("scenarios", "faults_injected", "duplicates_delivered", "reordered_deliveries", "fuzz_cases",
           "race_steps", "violations")

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def record(name: str, amount: int = 1) -> None:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; add it to FIGURES")
    with _lock:
        _counts[name] += amount


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def merge(counts: dict[str, int]) -> None:
    with _lock:
        _counts.update(counts)


def summary_line() -> str:
    counts = snapshot()
    return "reliability: " + " ".join(f"{name}={counts.get(name, 0)}" for name in FIGURES)
