"""The sample cube shipped with tcube (real Sentinel-2 L2A, see ATTRIBUTION.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

SAMPLE_DATES = ("season 0", "season 1", "season 2", "season 3")


def sample_cube_path() -> Path:
    """Path of the shipped sample: 4 dates x 12 L2A bands x 128 x 128, int16.

    Examples
    --------
    >>> sample_cube_path().name
    'sample_l2a_0080717.npz'
    """
    return Path(str(resources.files("tcube") / "data" / "sample_l2a_0080717.npz"))


def load_sample_cube() -> np.ndarray:
    """The sample cube as an int16 array (time, band, y, x), L2A band order B01..B12 without B10.

    It is cut from SSL4EO-S12 v1.1 place 0080717, which no shipped model was trained on.

    Examples
    --------
    >>> load_sample_cube().shape
    (4, 12, 128, 128)
    """
    with np.load(sample_cube_path(), allow_pickle=False) as z:
        return z["cube"]
