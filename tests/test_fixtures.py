"""Format stability: blobs and zarr stores committed in tests/fixtures must keep decoding to the same arrays."""

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import ZipStore

import tcube
from tcube.bitstream import unpack

FIXTURES = Path(__file__).parent / "fixtures"
BLOBS = sorted(FIXTURES.glob("*.tcube"))
STORES = sorted(FIXTURES.glob("zarr*.zip"))


def test_fixtures_exist():
    versions = {p.stem: unpack(p.read_bytes()).header["version"] for p in BLOBS}
    assert sorted(versions.values()) == [1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5, 5, 6, 6, 7, 7, 8, 8, 8, 8,
                                         9, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10]
    assert all(name.startswith(f"v{v}_") for name, v in versions.items())
    assert [p.stem for p in STORES] == ["zarr2_tec-hp_q9", "zarr3_tec-fp_q6", "zarr3_v8_tec-hx_q8",
                                        "zarr3_v8_tec-pc_q4", "zarr3_v9_tec-hx_q8",
                                        "zarr3_v9_tec-hx_q8_dates"]


def _same(decoded: np.ndarray, path: Path, scale: float = 1.0) -> None:
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as ref:
        values = np.ma.getdata(decoded)
        assert values.dtype == ref["decoded"].dtype and values.shape == ref["original"].shape
        # symbols are exact (decode checks their CRC); the float synthesis may round differently
        # on other CPUs and thread counts, so pixels may move by one unit (one digital number),
        # never more (float32 outputs are not rounded: any thread count changes their last bits)
        np.testing.assert_allclose(values.astype(np.float64), ref["decoded"], atol=1.0 * scale, rtol=0)
        if values.dtype.kind != "f":
            assert np.mean(values != ref["decoded"]) < 0.01
        # masked pixels (NaN, no-data 0, saturated 65535, masked-array pixels) are exact
        original = ref["original"]
        exact = np.isnan(original) | (original == 0) if original.dtype.kind == "f" else original == 0
        exact |= original == 65535
        if "mask" in ref and ref["mask"].size:
            assert np.ma.isMaskedArray(decoded)
            np.testing.assert_array_equal(np.ma.getmaskarray(decoded), ref["mask"])
            exact |= ref["mask"]
        np.testing.assert_array_equal(values[exact], original[exact])


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: p.stem)
def test_blob_fixture_decodes(path):
    blob = path.read_bytes()
    _same(tcube.decode(blob), path, unpack(blob).header["scale"])


@pytest.mark.parametrize("path", [p for p in BLOBS if "tec-pc" in p.stem or "tec-hx" in p.stem], ids=lambda p: p.stem)
def test_exact_model_fixture_decodes_to_the_committed_bytes(path):
    """tec-pc's and tec-hx's decoders are exact: the same bytes on any machine, thread count and batch split."""
    decoded = np.ma.getdata(tcube.decode(path.read_bytes(), batch=1))
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as ref:
        assert decoded.tobytes() == ref["decoded"].tobytes()


@pytest.mark.parametrize("path", [p for p in BLOBS if "max_error" in p.stem or "lossless" in p.stem],
                         ids=lambda p: p.stem)
def test_error_bounded_fixture_keeps_its_bound(path):
    blob = path.read_bytes()
    bound = unpack(blob).header["max_error"]
    decoded = tcube.decode(blob).astype(np.float64)
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as ref:
        original = ref["original"].astype(np.float64)
    finite = np.isfinite(original)
    assert np.array_equal(np.isnan(decoded), np.isnan(original))
    assert np.abs(decoded[finite] - original[finite]).max() <= bound


@pytest.mark.parametrize("path", STORES, ids=lambda p: p.stem)
def test_zarr_fixture_decodes(path):
    store = ZipStore(path, mode="r")
    try:
        _same(zarr.open_array(store, path="cube", mode="r")[:], path)
    finally:
        store.close()


def test_format_8_fixtures_keep_negative_zero_and_chunk_positions():
    path = FIXTURES / "v8_tec-pc_q0_float32_negzero_lossless.tcube"
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as ref:
        original = ref["original"]
    decoded = tcube.decode(path.read_bytes())
    assert np.signbit(original).any() and decoded.view(np.uint32).tobytes() == original.view(np.uint32).tobytes()
    store = ZipStore(FIXTURES / "zarr3_v8_tec-pc_q4.zip", mode="r")
    try:
        arr = zarr.open_array(store, path="cube", mode="r")
        for key in ("c/0/0/0/0", "c/1/0/1/1"):
            blob = zarr.core.sync.sync(store.get(f"cube/{key}", zarr.core.buffer.default_buffer_prototype()))
            assert unpack(blob.to_bytes()).header["position"] == [int(i) for i in key.split("/")[1:]]
        assert arr.shape == (2, 12, 40, 40)
    finally:
        store.close()


def test_format_9_fixtures_are_compact_and_bound_to_chunk_positions():
    from tcube.models.hx import Side

    store = ZipStore(FIXTURES / "zarr3_v9_tec-hx_q8.zip", mode="r")
    try:
        assert zarr.open_array(store, path="cube", mode="r").shape == (2, 4, 88, 88)
        for key in ("c/0/0/0/0", "c/1/0/1/1"):
            blob = zarr.core.sync.sync(store.get(f"cube/{key}", zarr.core.buffer.default_buffer_prototype())).to_bytes()
            c = unpack(blob)
            assert c.header["version"] == 9 and c.header["position"] == [int(i) for i in key.split("/")[1:]]
            assert len(blob) - sum(len(s) for f in c.frames for s in f.values()) <= 32  # position included
            assert Side.unpack(c.frames[0]["side"], 4).layout == 1  # compact HEVC streams
    finally:
        store.close()
    old = unpack((FIXTURES / "v8_tec-hx_q8_uint16.tcube").read_bytes())
    assert Side.unpack(old.frames[0]["side"], 12).layout == 0  # HEVC streams as x265 wrote them
