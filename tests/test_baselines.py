"""Every classical baseline round-trips (lossless ones exactly) and sweeps a useful rate range."""

import numpy as np
import pytest

from tcube.baselines import BASELINES, get_baseline, list_baselines
from tcube.errors import InputError, UnknownModelError
from tcube.metrics import bpppb, psnr_10k


@pytest.fixture(scope="module")
def cube(sample):
    return np.ascontiguousarray(np.clip(sample[:2, :, :48, :56], 0, None).astype(np.uint16))


def test_registry():
    assert list_baselines() == ["jpeg2000-per_band", "jpeg2000-joint", "jpeg2000-pca", "jpeg2000-lossless",
                                "jpegxl-per_band", "jpegxl-lossless", "x265-video", "x265-intra-pca",
                                "x265-intra-pca-veryslow", "x265-video-pca", "zstd-19", "jpegls-near",
                                "jpegls-lossless", "sz3"]
    with pytest.raises(UnknownModelError, match="unknown baseline"):
        get_baseline("webp")


@pytest.mark.parametrize("name", [n for n, b in BASELINES.items() if b.lossless])
def test_lossless_round_trip_is_exact(cube, name):
    b = get_baseline(name)
    out = b.decode(b.encode(cube, b.settings[0]), cube.shape)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, cube)


@pytest.mark.parametrize("name", [n for n, b in BASELINES.items() if b.bounded])
def test_error_bounded_baselines_keep_their_bound(cube, name):
    b = get_baseline(name)
    rates = []
    for bound in b.settings:
        blob = b.encode(cube, bound)
        out = b.decode(blob, cube.shape)
        assert out.dtype == np.uint16 and int(np.abs(out.astype(int) - cube).max()) <= bound
        rates.append(len(blob))
    assert rates == sorted(rates)  # from the smallest output


@pytest.mark.parametrize("name", [n for n, b in BASELINES.items() if not b.lossless and not b.bounded])
def test_lossy_round_trip_and_sweep(cube, name):
    b = get_baseline(name)
    results = []
    for setting in (b.settings[0], b.settings[len(b.settings) // 2], b.settings[-1]):
        blob = b.encode(cube, setting)
        out = b.decode(blob, cube.shape)
        assert out.shape == cube.shape and out.dtype == np.uint16
        results.append((bpppb(len(blob), cube.shape), psnr_10k(cube, out)))
    rates, psnrs = zip(*results)
    assert rates[0] < rates[1] < rates[2] and psnrs[0] < psnrs[2]  # the knob runs from small to large
    assert psnrs[2] > 45 and rates[0] < 0.6  # wide sweep even on this small crop


def test_odd_sizes_and_single_date(sample):
    cube = np.ascontiguousarray(np.clip(sample[:1, :, :17, :23], 0, None).astype(np.uint16))
    for name in ("jpeg2000-pca", "jpegxl-per_band", "x265-video", "x265-intra-pca", "x265-intra-pca-veryslow",
                                "x265-video-pca", "zstd-19"):
        b = get_baseline(name)
        assert b.decode(b.encode(cube, b.settings[-1]), cube.shape).shape == cube.shape


def test_bad_input():
    with pytest.raises(InputError, match="0..65535"):
        get_baseline("zstd-19").encode(np.full((1, 12, 4, 4), -1, np.int16), 19)
    with pytest.raises(InputError, match="T, C, H, W"):
        get_baseline("zstd-19").encode(np.zeros((12, 4, 4), np.uint16), 19)


def test_intra_pca_codes_any_band_count_and_counts_its_side_information(sample):
    b = get_baseline("x265-intra-pca")
    for bands in (1, 4, 13):
        cube = np.ascontiguousarray(np.clip(sample[:2, :bands, :40, :44], 0, None).astype(np.uint16)) if bands <= 12 \
            else np.ascontiguousarray(np.concatenate([sample[:2, :, :40, :44], sample[:2, :1, :40, :44]], 1)
                                      .clip(0, None).astype(np.uint16))
        blob = b.encode(cube, b.settings[-1])
        assert len(blob) > 2 * (4 * bands * bands + 8 * bands)  # the float32 side information is in the size
        assert psnr_10k(cube, b.decode(blob, cube.shape)) > 45


def test_video_pca_codes_time_and_counts_its_side_information(sample):
    """One KLT per cube and one video per component over time: on a slowly changing series it needs
    far fewer bytes than the per-date intra layout at the same CRF, for any band count."""
    rng = np.random.default_rng(0)
    first = np.clip(sample[:1, :, :40, :44], 0, None).astype(np.float64)
    series = first + rng.normal(0, 3, (6, *first.shape[1:])).cumsum(axis=0)
    video, intra = get_baseline("x265-video-pca"), get_baseline("x265-intra-pca")
    for bands in (1, 4, 12):
        cube = np.ascontiguousarray(np.clip(series[:, :bands], 0, 65535).round().astype(np.uint16))
        blob = video.encode(cube, 20)
        out = video.decode(blob, cube.shape)
        assert out.shape == cube.shape and out.dtype == np.uint16
        assert len(blob) > 4 * bands * bands + 8 * bands  # the float32 side information is in the size
        assert psnr_10k(cube, out) > 40
        assert len(blob) < 0.7 * len(intra.encode(cube, 20))
