import struct
import zlib

import numpy as np
import pytest

import tcube
from tcube.bitstream import MAGIC, pack, unpack
from tcube.errors import (
    BitstreamError,
    CorruptBlobError,
    NotATcubeBlobError,
    SymbolChecksumError,
    TruncatedBlobError,
    UnsupportedVersionError,
    WeightsMismatchError,
)


@pytest.fixture(scope="module")
def blob(small):
    return tcube.encode(small[:1, :, :16, :16], model="tec-hp", quality=6)


def _reheader(blob: bytes, **changes) -> bytes:
    """Same payload, edited header, valid checksum."""
    c = unpack(blob)
    header = {**c.header, **changes}
    header["frames"] = [{"crc": f["crc"]} for f in header["frames"]]
    return pack(header, c.frames)


def test_every_single_bit_flip_is_an_error(blob):
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            tcube.decode(bytes(bad))


def test_every_truncation_is_an_error(blob):
    for n in range(len(blob)):
        with pytest.raises(BitstreamError):
            tcube.decode(blob[:n])


def test_truncation_is_named(blob):
    with pytest.raises(TruncatedBlobError, match="truncated"):
        tcube.decode(blob[:-1])
    with pytest.raises(TruncatedBlobError):
        tcube.decode(blob[:3])


def test_flip_in_payload_is_corrupt(blob):
    bad = bytearray(blob)
    bad[-6] ^= 0x10
    with pytest.raises(CorruptBlobError, match="checksum"):
        tcube.decode(bytes(bad))


def test_trailing_bytes(blob):
    with pytest.raises(CorruptBlobError, match="trailing"):
        tcube.decode(blob + b"\0")


@pytest.mark.parametrize("foreign", [b"", b"PK\x03\x04" + bytes(100), b"\x89PNG\r\n\x1a\n" + bytes(50), bytes(64)])
def test_foreign_blob(foreign):
    with pytest.raises(NotATcubeBlobError):
        tcube.decode(foreign)


def test_unsupported_version(blob):
    body = bytearray(blob[:-4])
    struct.pack_into("<H", body, len(MAGIC), 99)
    bad = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(UnsupportedVersionError, match="version 99"):
        tcube.decode(bad)


def test_other_weights(blob):
    with pytest.raises(WeightsMismatchError, match="other weights"):
        tcube.decode(_reheader(blob, weights="0" * 32))


def test_unknown_model_in_blob(blob):
    with pytest.raises(tcube.errors.UnknownModelError, match="tec-zz"):
        tcube.decode(_reheader(blob, model="tec-zz"))


def test_symbol_checksum_mismatch(blob):
    c = unpack(blob)
    header = dict(c.header)
    header["frames"] = [{"crc": (f["crc"] + 1) % 2**32} for f in header["frames"]]
    with pytest.raises(SymbolChecksumError, match="symbols"):
        tcube.decode(pack(header, c.frames))


def test_swapped_streams_are_caught(small):
    frames = np.stack([small[0, :, :16, :16], np.full((12, 16, 16), 3000, np.int16)])
    c = unpack(tcube.encode(frames, model="tec-hp", quality=6))
    assert c.header["frames"][0]["crc"] != c.header["frames"][1]["crc"]
    header = dict(c.header)
    header["frames"] = [{"crc": f["crc"]} for f in header["frames"]]
    with pytest.raises(BitstreamError):
        tcube.decode(pack(header, c.frames[::-1]))


def test_header_is_self_describing_and_small(blob):
    h = unpack(blob).header
    assert h["model"] == "tec-hp" and h["quality"] == 6 and h["dtype"] == "int16" and h["shape"] == [1, 12, 16, 16]
    assert len(h["weights"]) == 32 and "mean" not in h  # the digest pins the weights and their normalisation
    assert set(h["frames"][0]["streams"]) == {"mask", "y", "z"} and h["version"] == 3 and h["nodata"] is None
    assert (h["scale"], h["offset"], h["flags"]) == (1.0, 0.0, 0)
    assert struct.unpack_from("<I", blob, 10)[0] < 130


def test_info_rejects_corrupt(blob):
    with pytest.raises(BitstreamError):
        tcube.info(blob[:-2])


def test_pack_unpack_keeps_stream_order(blob):
    header = {**unpack(blob).header, "frames": [{"crc": 1}, {"crc": 2}]}
    c = unpack(pack(header, [{"z": b"zz", "y": b"yyyy"}, {"z": b"", "y": b"q"}]))
    assert c.frames == [{"y": b"yyyy", "z": b"zz"}, {"y": b"q", "z": b""}]
    np.testing.assert_equal([f["crc"] for f in c.header["frames"]], [1, 2])
