"""Mean and covariance of the 12 L2A bands over the training data, for standing in for missing bands.

Run:  python -m tcube.train.band_covariance [S2_DATA_DIR]

Uses the training places of ``terracodec/`` (every place but the held-out 0080717) and
``bigearthnet_example/`` (20 and 60 m bands resampled to 10 m), pixels with B02 below 2500 DN
(clouds and snow left out, they distort the land spectra). Prints the constants stored in
:mod:`tcube.bands` as ``L2A_FILL_MEAN`` and ``L2A_FILL_COV``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tcube.readers import read_cube

HOLDOUT = "0080717"


def band_statistics(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean (12,), covariance (12, 12)) of clear land pixels in the training data under ``root``."""
    cubes = [read_cube(p) for p in sorted((root / "terracodec").glob("*.tif")) if HOLDOUT not in p.name]
    cubes += [read_cube(p) for p in sorted((root / "bigearthnet_example").iterdir()) if p.is_dir()]
    x = np.concatenate([c.transpose(1, 0, 2, 3).reshape(12, -1) for c in cubes], axis=1).astype(np.float64)
    x = x[:, x[1] < 2500]
    return x.mean(axis=1), np.cov(x)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "shared/data/s2"
    mean, cov = band_statistics(root)
    print("L2A_FILL_MEAN = (" + ", ".join(f"{v:.1f}" for v in mean) + ")")
    print("L2A_FILL_COV = (")
    for row in cov:
        print("    (" + ", ".join(f"{v:.0f}" for v in row) + "),")
    print(")")


if __name__ == "__main__":
    main()
