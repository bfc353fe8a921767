"""tec-pc's pieces on a small untrained model: the KLT side information, exact decoding, any band set."""

import numpy as np
import pytest
import torch
from helpers import correlated_frames as _frames

from tcube.errors import CorruptBlobError, InputError, SymbolChecksumError
from tcube.models import FramePayload, build_model
from tcube.models.pc import MAX_BANDS, pack_side, side_amplitudes, spectral_fit, spectral_inverse, unpack_side


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
    every = torch.ones(5, dtype=torch.bool)
    side = pack_side(mean[0], basis[0], amp[0], every)
    assert len(side) == 5 + 2 * 5 + 2 * 25
    m, b, refinements = unpack_side(side, 5, every)
    assert refinements == [] and torch.equal(m, mean[0]) and torch.equal(b, basis[0])
    assert torch.equal(side_amplitudes(side, 5), amp[0])
    with pytest.raises(CorruptBlobError, match="spectral side information"):
        unpack_side(side[:-1], 5, every)
    with pytest.raises(CorruptBlobError, match="spectral side information"):
        side_amplitudes(side[:14], 5)


def test_side_information_carries_only_the_coded_rows():
    mean, basis, _, amp = spectral_fit(_frames(5, n=1).double())
    coded = torch.tensor([True, True, False, True, False])
    side = pack_side(mean[0], basis[0], amp[0], coded)
    assert len(side) == 5 + 2 * 5 + 2 * 5 * 3
    _, b, _ = unpack_side(side, 5, coded)
    assert torch.equal(b[coded], basis[0][coded]) and not b[~coded].any()
    full = pack_side(mean[0], basis[0], amp[0], torch.ones(5, dtype=torch.bool))  # blobs of the first weights
    assert torch.equal(unpack_side(full, 5, coded)[1], b)


def test_side_information_lists_refinements_of_coded_components_only():
    mean, basis, _, amp = spectral_fit(_frames(5, n=1).double())
    coded = torch.tensor([True, True, False, True, False])
    side = pack_side(mean[0], basis[0], amp[0], coded, [(0, 3), (3, -20)])
    assert len(side) == 5 + 2 * 5 + 2 * 5 * 3 + 1 + 2 * 2
    assert unpack_side(side, 5, coded)[2] == [(0, 3), (3, -20)]
    for bad in (pack_side(mean[0], basis[0], amp[0], coded, [(2, 3)]),  # an uncoded component
                pack_side(mean[0], basis[0], amp[0], coded, [(7, 3)]),  # no such component
                side[:-1], side + b"\0"):
        with pytest.raises(CorruptBlobError, match="spectral side information"):
            unpack_side(bad, 5, coded)


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


# -- the shipped model through the array API ---------------------------------------------------
import tcube  # noqa: E402


@pytest.mark.parametrize(("bands", "dtype"), [(1, "uint16"), (4, "uint16"), (6, "int16"), (13, "float32")])
def test_shipped_model_codes_any_band_set_through_the_api(bands, dtype):
    cube = _frames(bands, n=2, h=37, w=50).numpy().astype(dtype)
    cube[0, :, :4, :6] = 0
    if dtype == "float32":
        cube[1, 2, 5:9, 10:20] = np.nan
    blob = tcube.encode(cube, model="tec-pc", quality=12, nodata=0)
    out = tcube.decode(blob)
    assert out.shape == cube.shape and out.dtype == cube.dtype
    np.testing.assert_array_equal(out[0, :, :4, :6], 0)
    valid = cube != 0
    if dtype == "float32":
        assert np.isnan(out[1, 2, 5:9, 10:20]).all()
        valid &= ~np.isnan(cube)
    assert (out[valid] != 0).all()  # no-data never appears at a valid pixel
    assert tcube.info(blob)["shape"] == list(cube.shape)


def test_shipped_model_decodes_the_same_bytes_on_any_thread_count_and_batch(restore_threads):
    cube = _frames(12, n=5, h=48, w=40, seed=3).numpy().astype("uint16")
    blob = tcube.encode(cube, model="tec-pc", quality=9)
    outs = []
    for threads, batch in ((1, 1), (2, 8), (2, 3)):
        torch.set_num_threads(threads)
        outs.append(tcube.decode(blob, batch=batch).tobytes())
    assert outs[0] == outs[1] == outs[2]
    floats = _frames(4, n=3, h=33, w=41, seed=4).numpy().astype("float32") * np.float32(1e-4)
    fblob = tcube.encode(floats, model="tec-pc", quality=14, scale=1e-4)
    torch.set_num_threads(1)
    one = tcube.decode(fblob, batch=1).tobytes()
    torch.set_num_threads(2)
    assert tcube.decode(fblob, batch=8).tobytes() == one  # float32 too, to the last bit


def test_bright_and_saturated_values_never_decode_to_zero_or_no_data():
    cube = _frames(12, n=1, h=40, w=40, seed=5).numpy()
    cube[0, :, 10:20, 10:20] = 9000 + 3000 * np.random.default_rng(1).random((12, 10, 10))  # cloud
    cube[0, :, 25:30, 5:15] = 65535
    cube = cube.astype("uint16")
    for quality in (1, 8, 16):
        out = tcube.decode(tcube.encode(cube, model="tec-pc", quality=quality, nodata=0))
        assert (out != 0).all()
        np.testing.assert_array_equal(out[0, :, 25:30, 5:15], 65535)
        assert out[0, :, 10:20, 10:20].mean() > 7000


def test_refinements_lift_the_top_of_bright_scenes_and_decode_exactly(s2_dir, restore_threads, monkeypatch):
    """A snow-covered date at quality 16: the strongest components get a second pass on their
    residual (listed in the side information), which a decoder reproduces bit for bit."""
    import tcube.models.pc as pc
    from tcube.bitstream import unpack
    from tcube.metrics import psnr_10k
    from tcube.models.registry import load_model
    from tcube.readers import read_cube

    snow = np.ascontiguousarray(read_cube(s2_dir / "terracodec" / "ssl4eos12_val_0193833_0.tif")[:, :, :96, :128])
    snow = snow.astype("uint16")
    blob = tcube.encode(snow, model="tec-pc", quality=16)
    model, c = load_model("tec-pc", "cpu"), snow.shape[1]
    side = unpack(blob).frames[0]["spectral"]
    amp = side_amplitudes(side, c)
    coded = model.coded(model.relative(amp[None], model.quality_index(16, 1)))[0]
    assert len(unpack_side(side, c, coded)[2]) >= 1
    outs = []
    for threads, batch in ((1, 1), (2, 8)):
        torch.set_num_threads(threads)
        outs.append(tcube.decode(blob, batch=batch))
    assert outs[0].tobytes() == outs[1].tobytes()
    monkeypatch.setattr(pc, "REFINE_FROM", 99.0)  # an encoder that never refines
    plain = tcube.encode(snow, model="tec-pc", quality=16)
    assert psnr_10k(snow, outs[0]) > psnr_10k(snow, tcube.decode(plain)) + 1.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_cpu_decode_the_same_bytes():  # pragma: no cover - GPU machines only
    cube = _frames(6, n=3, h=70, w=90, seed=6).numpy().astype("uint16")
    blob = tcube.encode(cube, model="tec-pc", quality=10, device="cuda")
    assert tcube.decode(blob, device="cuda").tobytes() == tcube.decode(blob, device="cpu").tobytes()
