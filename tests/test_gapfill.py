import numpy as np
import pytest

import tcube
from tcube.errors import InputError
from tcube.gapfill import interpolate_time


@pytest.fixture(scope="module")
def series(sample) -> np.ndarray:
    """Four real dates, odd sizes, as float32 DN."""
    return np.ascontiguousarray(sample[:, :, 10:59, 7:70]).astype(np.float32)


def _blob(shape: tuple[int, int], y: int, x: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 < r * r


def test_interpolation_in_time():
    cube = np.zeros((5, 1, 2, 2), np.float32)
    cube[0], cube[3] = 10, 40
    mask = np.ones(cube.shape, bool)
    mask[0] = mask[3] = False
    out = interpolate_time(cube, mask)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [10, 20, 30, 40, 40])  # last one: repeated
    never = mask.copy()
    never[:, :, 0, 0] = True  # never observed: filled from the same date's other pixels
    assert np.isfinite(interpolate_time(cube, never)).all()


def test_cloud_gap_is_filled_better_than_interpolation(series):
    """Observed pixels come back unchanged; masked ones beat linear interpolation on real dates."""
    mask = np.zeros((4, *series.shape[-2:]), bool)
    mask[2] = _blob(series.shape[-2:], 24, 30, 14)
    filled = tcube.inpaint(series, mask, steps=30)
    assert filled.shape == series.shape and filled.dtype == np.float32
    np.testing.assert_array_equal(filled[:, :, ~mask[2]], series[:, :, ~mask[2]])
    np.testing.assert_array_equal(filled[[0, 1, 3]], series[[0, 1, 3]])
    hole = np.broadcast_to(mask[:, None], series.shape)
    err = np.abs(filled - series)[hole].mean()
    base = np.abs(interpolate_time(series, hole) - series)[hole].mean()
    assert err < base


def test_whole_dates_nan_and_band_masks(series):
    """A whole date, the first date, NaN values and a per-band mask are all filled."""
    cube = series.copy()
    cube[1, 3, :5, :5] = np.nan
    mask = np.zeros(cube.shape, bool)
    mask[0] = True
    mask[3, 7] = True
    out = tcube.inpaint(cube, mask, steps=5, quality=4)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], interpolate_time(cube, mask | np.isnan(cube))[0])  # nothing to fit
    assert np.abs(out[0] - series[0]).mean() < 1500 and np.abs(out[3, 7] - series[3, 7]).mean() < 1500
    np.testing.assert_array_equal(out[3, :7], series[3, :7])
    single = tcube.inpaint(series[1], np.zeros(series.shape[-2:], bool)[None], steps=1)
    np.testing.assert_array_equal(single, series[1])  # (band, y, x) in, same out; nothing masked


def test_inpaint_is_deterministic(series):
    mask = np.zeros((4, *series.shape[-2:]), bool)
    mask[1] = _blob(series.shape[-2:], 10, 10, 8)
    a = tcube.inpaint(series, mask, steps=3)
    np.testing.assert_array_equal(a, tcube.inpaint(series, mask, steps=3))


@pytest.mark.parametrize("kwargs, message", [
    ({"mask": np.zeros((4, 5, 5), bool)}, "mask must have shape"),
    ({"mask": np.zeros((4, 49, 63), np.uint8)}, "boolean"),
    ({"model": "tec-hp"}, "learned temporal prior"),
    ({"model": "nope"}, "unknown model"),
    ({"quality": 17}, "quality"),
    ({"steps": -1}, "steps"),
])
def test_inpaint_bad_input(series, kwargs, message):
    args = {"mask": np.zeros((4, 49, 63), bool), **kwargs}
    with pytest.raises(tcube.TcubeError, match=message):
        tcube.inpaint(series, **args)


def test_inpaint_checks_the_cube():
    with pytest.raises(InputError, match="bands"):
        tcube.inpaint(np.zeros((2, 5, 8, 8), np.float32), np.zeros((2, 8, 8), bool))
