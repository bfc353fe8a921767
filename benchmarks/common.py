"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_rows(rows: list[dict], path: Path) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
