"""tec-hx: the HEVC engine, the side information, exact decoding, any band set, damaged payloads."""

import dataclasses
import zlib

import numpy as np
import pytest
import torch
from helpers import correlated_frames
from helpers import correlated_frames as _frames

import tcube
from tcube.errors import CorruptBlobError, InputError, SymbolChecksumError
from tcube.metrics import psnr_10k
from tcube.models import FramePayload, hevc, load_model
from tcube.models.hx import Side, detail_bands, sources


@pytest.fixture(scope="module")
def model():
    return load_model("tec-hx", "cpu")


@pytest.fixture
def per_date(model, monkeypatch):
    """tec-hx coding each date of a call on its own (as its blobs before chunks over time)."""
    monkeypatch.setattr(model, "over_time", False)
    return model


def _series(dates: int = 6, bands: int = 4, h: int = 40, w: int = 48, cloudy: int = 3) -> torch.Tensor:
    """Dates of one scene that drifts a little, with a bright cloudy date ``cloudy``."""
    scene = correlated_frames(bands, n=1, h=h, w=w, seed=5)
    drift = torch.linspace(0.95, 1.05, dates).view(dates, 1, 1, 1)
    x = (scene * drift + torch.from_numpy(np.random.default_rng(6).normal(0, 15, (dates, bands, h, w)))).round()
    x[cloudy] = (x[cloudy] * 0.3 + 6000).round()
    return x.clamp(0, 10000)


def test_engine_round_trip_and_damage():
    x = (np.arange(3 * 40 * 44) % 900 + 1000).reshape(3, 40, 44).astype(np.uint16)
    data = hevc.encode(x, 2)
    out = hevc.decode(data, 3, 40, 44)
    assert out.shape == x.shape and np.abs(out.astype(int) - x).mean() < 3
    with pytest.raises(CorruptBlobError, match="frames"):
        hevc.decode(data, 4, 40, 44)
    with pytest.raises(CorruptBlobError):
        hevc.decode(data[: len(data) // 2], 3, 40, 44)
    with pytest.raises(CorruptBlobError):
        hevc.decode(b"not a stream" * 8, 3, 40, 44)
    with pytest.raises(InputError, match="12-bit"):
        hevc.encode(np.full((1, 8, 8), 5000, np.uint16), 20)
    with pytest.raises(InputError, match="preset"):
        hevc.encode(x, 20, preset="placebo2")


def test_compact_streams_decode_the_same_and_reject_damage():
    x = (np.arange(4 * 64 * 64) % 900 + 1000).reshape(4, 64, 64).astype(np.uint16)
    stream = hevc.encode(x, 20)
    small = hevc.compact(stream)
    parameters, framing = hevc.overhead(small)
    assert parameters <= 8 and framing <= 12 and len(small) < len(stream) - 70  # sizes in the shipped dictionary
    np.testing.assert_array_equal(hevc.decode(hevc.expand(small), 4, 64, 64), hevc.decode(stream, 4, 64, 64))
    odd = hevc.encode(x[:, :40, :56], 20)  # a size the dictionary lacks: still exact, a few bytes more
    np.testing.assert_array_equal(hevc.decode(hevc.expand(hevc.compact(odd)), 4, 40, 56), hevc.decode(odd, 4, 40, 56))
    rng = np.random.default_rng(5)
    for n in range(len(small)):  # every truncation: an error or a shorter stream, never another exception
        try:
            hevc.expand(small[:n])
        except CorruptBlobError:
            pass
    for _ in range(300):
        bad = bytearray(small)
        bad[rng.integers(0, 12)] ^= 1 << int(rng.integers(8))
        try:
            hevc.expand(bytes(bad))
        except CorruptBlobError:
            pass


def test_the_parameter_set_dictionary_is_the_shipped_one():
    import hashlib

    assert hashlib.sha256(hevc.dictionary()).hexdigest() == hevc.DICTIONARY_SHA256
    assert len(hevc.dictionary()) < 32 * 1024  # within deflate's window


def test_detail_bands_are_exact_integers():
    planes = np.random.default_rng(1).integers(0, 4096, (2, 9, 11))
    bands = detail_bands(planes)
    assert bands.shape == (2, 2, 9, 11)
    np.testing.assert_array_equal(bands, np.round(bands))
    centre = planes[0, 3:6, 4:7]  # an interior 3 x 3 window
    assert bands[0, 0, 4, 5] == 9 * planes[0, 4, 5] - centre.sum()


def test_sources_are_the_leading_components_and_itself():
    assert sources(0, 12) == [0, 1, 2, 3] and sources(7, 12) == [0, 1, 2, 3, 7] and sources(1, 2) == [0, 1]


@pytest.mark.parametrize("bands", [1, 4, 13, 32])
def test_any_band_count_round_trips(model, bands):
    x = _frames(bands, n=1, h=24, w=70)
    payloads = model.compress(x, 14)
    out = model.decompress(payloads, 14, 24, 70, bands=bands)
    assert out.shape == x.shape
    assert psnr_10k(x.numpy(), np.round(out.numpy())) > 45


def test_quality_orders_size_and_error(model):
    x = _frames(6, n=1, h=64, w=64)
    sizes, errors = [], []
    for q in (2, 8, 16):
        p = model.compress(x, q)[0]
        sizes.append(sum(map(len, p.streams.values())))
        errors.append(float((model.decompress([p], q, 64, 64, bands=6) - x).abs().mean()))
    assert sizes[0] < sizes[1] < sizes[2] and errors[0] > errors[1] > errors[2]


def test_decoding_is_bit_identical_across_batches_and_threads(per_date):
    model = per_date
    x = _frames(5, n=8, h=36, w=44, seed=3)
    payloads = model.compress(x, 9)
    whole = model.decompress(payloads, 9, 36, 44, bands=5)
    alone = torch.cat([model.decompress([p], 9, 36, 44, bands=5) for p in payloads])
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = model.decompress(payloads, 9, 36, 44, bands=5)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(whole, alone) and torch.equal(whole, single)


def test_encoding_a_batch_gives_each_frame_the_payload_it_gets_alone(per_date):
    model = per_date
    """The spectral fit of a batch is one call; every frame's streams are those it gets on its own."""
    x = _frames(5, n=6, h=36, w=44, seed=4)
    batch = model.compress(x, 7, list(range(6)))
    alone = [model.compress(x[i: i + 1], 7, [i])[0] for i in range(6)]
    assert [p.streams for p in batch] == [p.streams for p in alone]
    assert [p.symbol_crc for p in batch] == [p.symbol_crc for p in alone]


def test_side_information_round_trips_and_rejects_damage():
    side = Side(2, 30, 9, np.array([1200, -5, 900]), np.array([[600, 500, -3], [2, -700, 40]]), np.array([-40, 7]),
                [(3, [1, -2, 0, 5]), None])
    back = Side.unpack(side.pack(), 3)
    assert dataclasses.asdict(back).keys() == dataclasses.asdict(side).keys()
    assert back.detail == side.detail and back.basis.tolist() == side.basis.tolist()
    with pytest.raises(CorruptBlobError):
        Side.unpack(side.pack()[:-3], 3)
    with pytest.raises(CorruptBlobError, match="left over|inconsistent|ends"):
        Side.unpack(side.pack() + b"\xff", 3)
    with pytest.raises(CorruptBlobError, match="layout"):
        Side.unpack(bytes([0xF0]) + side.pack()[1:], 3)


def test_damaged_payloads_raise_clear_errors(model):
    x = _frames(4, n=1, h=32, w=32)
    p = model.compress(x, 8)[0]
    flipped = bytearray(p.streams["hevc"])
    flipped[len(flipped) // 2] ^= 0x10
    bad = FramePayload({**p.streams, "hevc": bytes(flipped)}, p.symbol_crc, p.seed)
    with pytest.raises(SymbolChecksumError):
        model.decompress([bad], 8, 32, 32, bands=4)
    forged = FramePayload({**p.streams, "side": b"\x00"}, 0, 0)
    forged.symbol_crc = __import__("zlib").crc32(p.streams["hevc"], __import__("zlib").crc32(b"\x00"))
    with pytest.raises(CorruptBlobError):
        model.decompress([forged], 8, 32, 32, bands=4)


def test_through_the_api_with_nodata_and_error_bound():
    cube = _frames(4, n=2, h=30, w=34).numpy().astype(np.uint16)
    cube[0, :, :4] = 0
    out = tcube.decode(tcube.encode(cube, model="tec-hx", quality=10, nodata=0))
    assert out.shape == cube.shape and np.array_equal(out == 0, cube == 0)
    bounded = tcube.decode(tcube.encode(cube, model="tec-hx", max_error=3, quality=6))
    assert int(np.abs(bounded.astype(int) - cube).max()) <= 3


def test_a_chunk_codes_its_dates_over_time_and_decodes_exactly(model, monkeypatch):
    x = _series()
    chunk = model.compress(x, 10, list(range(6)))
    head = Side.unpack(chunk[0].streams["side"], 4)
    assert head.dates == 6 and head.alone == [False, False, False, True, False, False]
    assert chunk[0].streams["hevc"] and not any(chunk[t].streams["hevc"] for t in (1, 2, 4, 5))
    assert Side.unpack(chunk[3].streams["side"], 4).layout == 1  # the cloudy date, with its own KLT and stream
    out = model.decompress(chunk, 10, 40, 48, bands=4)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(model.decompress(chunk, 10, 40, 48, bands=4), out)
    finally:
        torch.set_num_threads(n)
    monkeypatch.setattr(model, "over_time", False)
    dates = model.compress(x, 10, list(range(6)))
    alone = model.decompress(dates, 10, 40, 48, bands=4)
    size = sum(len(v) for p in chunk for v in p.streams.values())
    assert size < 0.8 * sum(len(v) for p in dates for v in p.streams.values())  # time pays on a static scene
    assert psnr_10k(x.numpy(), out.numpy()) > psnr_10k(x.numpy(), alone.numpy()) - 1.0


def test_a_chunk_decodes_only_whole(model):
    chunk = model.compress(_series(), 8, list(range(6)))
    with pytest.raises(CorruptBlobError, match="later date without"):
        model.decompress(chunk[1:], 8, 40, 48, bands=4)
    with pytest.raises(CorruptBlobError, match="chunk of 6 dates starts at frame 0 of 4"):
        model.decompress(chunk[:4], 8, 40, 48, bands=4)

    def forged(side: bytes, hevc: bytes) -> FramePayload:
        return FramePayload({"side": side, "hevc": hevc}, zlib.crc32(hevc, zlib.crc32(side, 2)), 2)

    with pytest.raises(CorruptBlobError, match="frame 2 is a later date but holds HEVC"):
        model.decompress([*chunk[:2], forged(chunk[2].streams["side"], b"\x00"), *chunk[3:]], 8, 40, 48, bands=4)
    with pytest.raises(CorruptBlobError, match="not one"):
        model.decompress([*chunk[:2], forged(chunk[0].streams["side"], b""), *chunk[3:]], 8, 40, 48, bands=4)
    with pytest.raises(CorruptBlobError, match="frame 3 should be coded alone"):
        model.decompress([*chunk[:3], chunk[0], *chunk[4:]], 8, 40, 48, bands=4)
    head = Side.unpack(chunk[0].streams["side"], 4)
    head.alone[-1] = True
    forged_head = FramePayload({**chunk[0].streams, "side": head.pack()}, 0, 0)
    forged_head.symbol_crc = zlib.crc32(chunk[0].streams["hevc"], zlib.crc32(head.pack(), 0))
    with pytest.raises(CorruptBlobError, match="chunk at frame 0: its first or last date"):
        model.decompress([forged_head, *chunk[1:]], 8, 40, 48, bands=4)
    with pytest.raises(SymbolChecksumError):
        model.decompress([*chunk[:5], FramePayload(chunk[5].streams, chunk[5].symbol_crc ^ 1, 5)], 8, 40, 48, bands=4)


def test_chunk_side_information_round_trips():
    head = Side(1, 20, 12, np.array([900, 800]), np.array([[3000, 2000]]), np.array([-5]), [(2, [1, -1])],
                layout=2, dates=3, alone=[False, True, False])
    back = Side.unpack(head.pack(), 2)
    assert (back.dates, back.alone, back.detail) == (3, [False, True, False], head.detail)
    later = head.for_date([(1, [4, 0, -2, 7])], previous=True)
    again = back.later(later.pack())
    assert again.previous and again.detail == later.detail and again.basis.tolist() == head.basis.tolist()
    with pytest.raises(CorruptBlobError, match="dates"):
        Side.unpack(dataclasses.replace(head, dates=1, alone=[False]).pack(), 2)


def test_a_chunk_cut_into_tiles_round_trips(model, monkeypatch):
    """Frames larger than a tile: each tile codes its own runs of dates (here 4 tiles of at most 24 x 32)."""
    import tcube.models.hx as hx

    x = _series(dates=4, h=40, w=48, cloudy=2)
    whole = model.decompress(model.compress(x, 9), 9, 40, 48, bands=4)
    monkeypatch.setattr(hx, "TILE", 32)
    tiled = model.compress(x, 9)
    out = model.decompress(tiled, 9, 40, 48, bands=4)
    assert out.shape == x.shape and abs(psnr_10k(x.numpy(), out.numpy()) - psnr_10k(x.numpy(), whole.numpy())) < 1.5
    monkeypatch.setattr(hx, "TILE", 2048)
    with pytest.raises(CorruptBlobError):  # the tile count is the frame size's: other streams are refused
        model.decompress(tiled, 9, 40, 48, bands=4)
