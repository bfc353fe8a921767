"""Regenerate the benchmark suite's results shown in the README.

Run:  python benchmarks/rd.py [--quick]

Two runs of ``tcube.bench`` (the same as ``tcube bench``), written to ``benchmarks/results``:

- ``rd_validation``: the four seasons of place 0080717 of ``../shared/data/s2/terracodec``, which
  no model was trained on;
- ``rd_bigearthnet``: the six single-date ``bigearthnet_example`` patches (20/60 m bands resampled
  to 10 m). They are in the models' training data; the report says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tcube.bench import benchmark
from tcube.cli import Progress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "s2"
RUNS = {"rd_validation": ([DATA / "terracodec"], "0080717"), "rd_bigearthnet": ([DATA / "bigearthnet_example"], None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer settings and 96 x 96 crops")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    for name, (paths, holdout) in RUNS.items():
        print(f"== {name}", flush=True)
        print(benchmark(paths, args.out, name=name, holdout=holdout, quick=args.quick,
                        crop=96 if args.quick else None, progress=Progress(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
