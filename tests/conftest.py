import os
from pathlib import Path

import numpy as np
import pytest

from tcube.data import load_sample_cube

S2 = Path(os.environ.get("TCUBE_S2_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "s2"))


@pytest.fixture(scope="session")
def s2_dir() -> Path:
    if not S2.exists():
        pytest.skip(f"shared Sentinel-2 data not found at {S2} (set TCUBE_S2_DATA)")
    return S2


@pytest.fixture(scope="session")
def sample() -> np.ndarray:
    return load_sample_cube()


@pytest.fixture(scope="session")
def small(sample) -> np.ndarray:
    """A real 2-date crop with odd sizes."""
    return np.ascontiguousarray(sample[:2, :, 5:42, 3:64])
