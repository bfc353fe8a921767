import numpy as np
import pytest

from tcube.metrics import bpppb, psnr_10k, psnr_full


def test_psnr_10k_hand_computed():
    x = np.full((2, 3, 4, 4), 2000.0)
    y = x.copy()
    y[0] += 100  # frame 0: mse 1e4 -> 40 dB
    y[1, 0, 0, 0] += 48 * 10  # frame 1: mse 480**2 / 48 = 4800
    expected = (40.0 + 10 * np.log10(1e8 / 4800)) / 2
    assert psnr_10k(x, y) == pytest.approx(expected)


def test_psnr_10k_ignores_dark_pixels_but_full_does_not():
    x = np.full((12, 8, 8), 500.0)
    y = x + 300
    assert psnr_10k(x, y) == np.inf  # both below the 1000 offset: unseen by the 10k convention
    assert psnr_full(x, y) == pytest.approx(10 * np.log10(1e8 / 300**2))


def test_psnr_clamps_top():
    x = np.full((1, 2, 2), 20000.0)
    assert psnr_full(x, x + 500) == np.inf


def test_bpppb():
    assert bpppb(12 * 16 * 16 // 8, (12, 16, 16)) == 1.0
