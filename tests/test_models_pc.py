"""tec-pc's pieces on a small untrained model: the KLT side information, exact decoding, any band set."""

import numpy as np
import pytest
import torch

from tcube.errors import CorruptBlobError, InputError, SymbolChecksumError
from tcube.models import FramePayload, build_model
from tcube.models.pc import MAX_BANDS, pack_side, spectral_fit, spectral_inverse, unpack_side


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("pc", widths=[8, 8, 8], m=8, nh=8)
    m.eval().export_tables()
    return m


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _frames(bands: int, n: int = 2, h: int = 40, w: int = 52, seed: int = 0) -> torch.Tensor:
    """Correlated bands with spatial structure, like reflectance."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(0, 30, (n, 1, h, w)), -1), -2)
    mix = rng.uniform(0.5, 1.5, (1, bands, 1, 1))
    x = 1500 + base * mix + rng.normal(0, 20, (n, bands, h, w))
    return torch.from_numpy(np.clip(x, 0, 10000).round())


def test_spectral_transform_is_exactly_inverted_on_integer_components():
    x = _frames(12, n=1).double()
    mean, basis, comps, amp = spectral_fit(x)
    assert torch.all(amp[:, :-1] >= amp[:, 1:])  # components by decreasing amplitude
    back = spectral_inverse(torch.floor(comps + 0.5), mean, basis)
    assert float((back - x).abs().max()) < 3  # only the rounding of the components is lost
    again = spectral_inverse(torch.floor(comps + 0.5), mean, basis)
    assert torch.equal(back, again)


def test_side_information_round_trips_and_refuses_a_wrong_length():
    mean, basis, _, amp = spectral_fit(_frames(5, n=1).double())
    side = pack_side(mean[0], basis[0], amp[0])
    assert len(side) == 5 + 2 * 5 + 2 * 25
    m, b, a = unpack_side(side, 5)
    assert torch.equal(m, mean[0]) and torch.equal(b, basis[0]) and torch.equal(a, amp[0])
    with pytest.raises(CorruptBlobError, match="spectral side information"):
        unpack_side(side[:-1], 5)


@pytest.mark.parametrize("bands", [1, 4, 6, 13])
def test_any_band_count_codes_natively(model, bands):
    x = _frames(bands)
    payloads = model.compress(x, 12)
    out = model.decompress(payloads, 12, *x.shape[-2:], bands=bands)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_band_counts_beyond_the_limit_are_refused(model):
    with pytest.raises(InputError, match="bands"):
        model.compress(torch.zeros(1, MAX_BANDS + 1, 16, 16), 8)


def test_decoding_is_bit_identical_across_threads_and_batches(model, restore_threads):
    x = _frames(7, n=3, h=70, w=45)
    payloads = model.compress(x, 14)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        whole = model.decompress(payloads, 14, 70, 45, bands=7)
        alone = torch.cat([model.decompress([p], 14, 70, 45, bands=7) for p in payloads])
        assert torch.equal(whole, alone)
        results.append(whole)
    assert torch.equal(results[0], results[1])


def test_damaged_payloads_raise(model):
    x = _frames(4, n=1)
    (p,) = model.compress(x, 10)
    y = bytearray(p.streams["y"])
    y[-1] ^= 0x40
    damaged = FramePayload({**p.streams, "y": bytes(y)}, p.symbol_crc, p.seed)
    with pytest.raises((CorruptBlobError, SymbolChecksumError)):
        model.decompress([damaged], 10, *x.shape[-2:], bands=4)
    short = FramePayload({**p.streams, "y": p.streams["y"][:3]}, p.symbol_crc, p.seed)
    with pytest.raises(CorruptBlobError, match="truncated"):
        model.decompress([short], 10, *x.shape[-2:], bands=4)
    side = bytearray(p.streams["spectral"])
    side[7] ^= 1
    forged = FramePayload({**p.streams, "spectral": bytes(side)}, p.symbol_crc, p.seed)
    with pytest.raises((CorruptBlobError, SymbolChecksumError)):
        model.decompress([forged], 10, *x.shape[-2:], bands=4)
