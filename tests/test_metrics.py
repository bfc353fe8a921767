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


def test_ssim_by_hand():
    from tcube.metrics import ssim

    a = np.zeros((4, 4))
    b = np.full((4, 4), 100.0)  # planes smaller than the window: one window, constant planes
    c1 = (0.01 * 10000) ** 2
    expected = (2 * 0 * 100 + c1) / (0 + 100**2 + c1)  # luminance term only (no variance)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
    x = np.random.default_rng(1).uniform(0, 8000, (3, 40, 40))
    assert ssim(x, x) == 1.0 and ssim(x, x[::-1]) < 0.5


def test_compression_ratio_and_bpppb():
    from tcube.metrics import bpppb, compression_ratio

    assert compression_ratio(1200, (2, 12, 10, 10)) == pytest.approx(4.0)
    assert bpppb(1200, (2, 12, 10, 10)) == pytest.approx(4.0)


def test_bd_rate_known_answers():
    from tcube.metrics import bd_rate

    p = np.array([32.0, 35.0, 38.0, 41.0, 44.0])
    r = np.exp(p / 6.0) * 1e-3
    assert bd_rate(0.5 * r, p, r, p) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(1.25 * r, p, r, p) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(r, p + 1.0, r, p) == pytest.approx(100 * (np.exp(-1 / 6.0) - 1), abs=1e-6)  # 1 dB better
    assert np.isnan(bd_rate(r, p, r, p + 20))  # no overlap
