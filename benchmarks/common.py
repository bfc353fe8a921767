"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_rows(rows: list[dict], path: Path) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def mb_per_s(cube: np.ndarray, fn: Callable[[], object], repeat: int = 3) -> float:
    """MB/s of raw uint16 ``cube`` (2 bytes a value) of the fastest of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return cube.size * 2 / 1e6 / best
