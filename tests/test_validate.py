"""What users hand to tcube: counts, units, value ranges, masked arrays; a property test over dtypes,
shapes, extreme values and NaN / infinity / no-data patterns."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcube
from tcube.errors import InputError
from tcube.masks import CODED_RANGE
from tcube.zarr_codecs import TecCodec, TecZarrCodec

#: Largest error at a valid pixel of real Sentinel-2 content, any model and quality (the clean
#: held-out sample crop reaches 1190 DN at quality 1; an outlier's smooth fill costs its
#: neighbours next to nothing).
USUAL_ERROR = 2000


@pytest.mark.parametrize("call", [
    lambda c: tcube.encode(c, batch=-1), lambda c: tcube.encode(c, batch=0),
    lambda c: tcube.decode(tcube.encode(c), batch=-1), lambda c: tcube.decode(tcube.encode(c), batch=0),
    lambda c: TecZarrCodec(batch=-1), lambda c: TecCodec(batch=0),
    lambda c: TecZarrCodec(batch=True), lambda c: tcube.xarray2tec(None, None, batch=0),
])
def test_counts_are_checked_at_the_call(call):
    cube = np.full((12, 16, 16), 900, np.uint16)
    with pytest.raises(InputError, match="must be a whole number of at least 1"):
        call(cube)


def test_float_reflectance_is_refused_and_scale_codes_it(sample):
    dn = sample[0, :, :48, :48].astype(np.float32)
    reflectance = dn / 1e4
    with pytest.raises(InputError, match="float reflectance.*scale=1e-4"):
        tcube.encode(reflectance)
    blob = tcube.encode(reflectance, scale=1e-4, quality=12)
    back = tcube.decode(blob)
    assert back.dtype == np.float32 and tcube.info(blob)["scale"] == 1e-4
    reference = tcube.decode(tcube.encode(dn, quality=12)) / 1e4  # the same digital numbers, in reflectance
    np.testing.assert_allclose(back, reference, atol=2e-4)
    assert np.abs(back - reflectance).max() < USUAL_ERROR * 1e-4
    offset = tcube.decode(tcube.encode(reflectance - np.float32(0.1), scale=1e-4, offset=-0.1, quality=12))
    np.testing.assert_allclose(offset + np.float32(0.1), back, atol=2e-4)


def test_integers_in_reflectance_units_are_digital_numbers():
    cube = np.ones((12, 16, 16), np.float32)  # integers below 3: digital numbers, however dark
    assert tcube.decode(tcube.encode(cube)).shape == cube.shape


@pytest.mark.parametrize("dtype, value", [("uint16", 65535), ("uint16", 20001), ("int16", -5000), ("int16", 32767),
                                          ("int16", -32768), ("float32", 999999.0), ("float32", -3.0e38),
                                          ("float32", 65536.5)])
def test_values_outside_the_coded_range_are_exact_and_spare_their_neighbours(sample, dtype, value):
    cube = sample[1, :, :64, :64].astype(dtype)
    clean = tcube.decode(tcube.encode(cube, nodata=0, quality=8)).astype(np.float64)
    cube[:, 20:40, 20:40] = value
    out = tcube.decode(tcube.encode(cube, nodata=0, quality=8))
    np.testing.assert_array_equal(out[:, 20:40, 20:40], cube[:, 20:40, 20:40])
    valid = np.ones(cube.shape, bool)
    valid[:, 20:40, 20:40] = False
    error = np.abs(out.astype(np.float64) - cube.astype(np.float64))[valid]
    assert error.max() < USUAL_ERROR and not (out[valid] == 0).any()
    ring = np.zeros(cube.shape[1:], bool)
    ring[14:46, 14:46], ring[20:40, 20:40] = True, False
    # around the block, errors stay those of the scene without it (saturation leaves no halo)
    assert np.abs(out.astype(np.float64) - clean)[:, ring].mean() < 40


def test_masked_arrays_keep_their_mask_and_values(sample):
    cube = np.ma.MaskedArray(sample[0, :, :40, :40].astype(np.uint16), np.zeros((12, 40, 40), bool))
    cube[:, 5:15, 10:20] = np.ma.masked
    cube[3, 30:35, 0:5] = np.ma.masked  # one band only
    out = tcube.decode(tcube.encode(cube, model="tec-fp"))
    assert isinstance(out, np.ma.MaskedArray)
    np.testing.assert_array_equal(np.ma.getmaskarray(out), np.ma.getmaskarray(cube))
    np.testing.assert_array_equal(out.data[cube.mask], cube.data[cube.mask])  # the values under the mask too
    plain = np.ma.MaskedArray(sample[0, :, :16, :16])  # nothing masked: a masked array comes back all the same
    assert isinstance(tcube.decode(tcube.encode(plain)), np.ma.MaskedArray)


# -- property test: any dtype, shape and value pattern round-trips or is refused ---------------------
DTYPES = {"uint16": np.uint16, "int16": np.int16, "float32": np.float32}


@st.composite
def cubes(draw):
    """A real crop of the held-out sample in a random dtype and shape, with random pixels set to the
    dtype's extremes, values beyond the coded range, NaN, infinities and the no-data value."""
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    info = np.finfo(np.float32) if dtype == "float32" else np.iinfo(dtype)
    t, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 40)), draw(st.integers(1, 40))
    y0, x0 = draw(st.integers(0, 128 - h)), draw(st.integers(0, 128 - w))
    cube = tcube.data.load_sample_cube()[:t, :, y0:y0 + h, x0:x0 + w].astype(DTYPES[dtype])
    nodata = draw(st.sampled_from([None, 0, int(info.max), int(info.min) if dtype != "float32" else -1.0]))
    specials = [v for v in (info.max, info.min, 0, 1, CODED_RANGE[1] + 1, CODED_RANGE[0] - 1, 20000)
                if info.min <= v <= info.max]
    if dtype == "float32":
        specials += [np.nan, np.inf, -np.inf, 1e-30, -0.0, 65535.5]
    if nodata is not None:
        specials.append(nodata)
    n = draw(st.integers(0, 30))
    for _ in range(n):
        index = (draw(st.integers(0, t - 1)), draw(st.integers(0, 11)), draw(st.integers(0, h - 1)),
                 draw(st.integers(0, w - 1)))
        value = draw(st.sampled_from(specials))
        if draw(st.booleans()):
            cube[index[0], :, index[2], index[3]] = value  # a whole spectrum
        else:
            cube[index] = value
    return cube if draw(st.booleans()) else cube[0], nodata, draw(st.sampled_from(["tec-fp", "tec-hp", "tec-tt"])), \
        draw(st.integers(1, 16))


def _valid(cube: np.ndarray, nodata) -> np.ndarray:
    valid = np.isfinite(cube) if cube.dtype.kind == "f" else np.ones(cube.shape, bool)
    if nodata is not None:
        valid &= cube != nodata
    return valid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cubes())
@pytest.mark.slow
def test_round_trips_keep_their_promises(case):
    cube, nodata, model, quality = case
    try:
        blob = tcube.encode(cube, model=model, quality=quality, nodata=nodata)
    except InputError as exc:  # refused, clearly: only float data that looks like reflectance
        assert "reflectance" in str(exc)
        return
    out = tcube.decode(blob)
    assert out.shape == cube.shape and out.dtype == cube.dtype
    valid = _valid(cube, nodata)
    coded = valid & (cube >= CODED_RANGE[0]) & (cube <= CODED_RANGE[1])
    # NaN, infinities, no-data and values beyond the coded range come back bit for bit
    np.testing.assert_array_equal(out[~coded].view(f"u{cube.itemsize}"), cube[~coded].view(f"u{cube.itemsize}"))
    if nodata is not None:
        assert not (out[valid] == nodata).any()  # a valid pixel never decodes to no-data
    # the rest went through the model: decoded within the coded range (its error depends on the
    # content; on real scenes it stays below USUAL_ERROR, see the tests above)
    decoded = out[coded].astype(np.float64)
    assert np.isfinite(decoded).all()
    assert (decoded >= CODED_RANGE[0] - 1).all() and (decoded <= CODED_RANGE[1] + 1).all()
