"""tcube as a zarr codec: formats 2 and 3, three stores, fresh processes, xarray, errors, batching."""

import base64
import json
import subprocess
import sys
import textwrap

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, MemoryStore, ZipStore

import tcube.zarr_codecs
from tcube.errors import BitstreamError, CorruptBlobError, InputError, TruncatedBlobError, UnknownModelError
from tcube.metrics import psnr_10k
from tcube.readers import read_cube
from tcube.zarr_codecs import TecCodec, TecZarrCodec

CHUNKS = (2, 12, 64, 64)


@pytest.fixture(scope="module")
def real(s2_dir):
    """Held-out place, 4 seasons, cropped so that edge chunks are smaller in time, y and x."""
    seasons = [read_cube(p) for p in sorted((s2_dir / "terracodec").glob("*0080717_*.tif"))]
    cube = np.concatenate(seasons)[:3, :, 30:130, 50:190]
    return np.ascontiguousarray(cube.astype(np.uint16))


@pytest.fixture(scope="module")
def clouded(real):
    cube = real.astype(np.float32)
    cube[1, :, 10:40, 20:70] = np.nan
    return cube


DIMS = ("time", "band", "y", "x")


def _create(store, data, zarr_format, quality=8, chunks=CHUNKS, **kwargs):
    """A zarr array named "cube" coded by tcube, with dimension names xarray understands."""
    dims = DIMS[4 - data.ndim:]
    if zarr_format == 3:
        codec = dict(serializer=TecZarrCodec(quality=quality), compressors=None, dimension_names=dims)
    else:
        codec = dict(compressors=TecCodec(quality=quality), attributes={"_ARRAY_DIMENSIONS": list(dims)})
    arr = zarr.create_array(store, name="cube", shape=data.shape, chunks=chunks[4 - data.ndim:], dtype=data.dtype,
                            zarr_format=zarr_format, **codec, **kwargs)
    arr[:] = data
    return arr


def _store(kind, tmp_path, mode="w"):
    if kind == "local":
        return LocalStore(tmp_path / "cube.zarr")
    if kind == "zip":
        return ZipStore(tmp_path / "cube.zip", mode=mode)
    return MemoryStore()


def _memory_dump(store: MemoryStore) -> dict:
    return {k: base64.b64encode(v.to_bytes()).decode() for k, v in store._store_dict.items()}


FRESH_READER = textwrap.dedent("""
    import base64, json, sys
    import numpy as np, xarray as xr, zarr
    from zarr.storage import LocalStore, MemoryStore, ZipStore
    kind, where, out = sys.argv[1:]
    if kind == "local":
        store = LocalStore(where, read_only=True)
    elif kind == "zip":
        store = ZipStore(where, mode="r")
    else:
        from zarr.core.buffer import default_buffer_prototype
        raw = json.load(open(where))
        store = MemoryStore({k: default_buffer_prototype().buffer.from_bytes(base64.b64decode(v))
                             for k, v in raw.items()})
    assert "tcube" not in sys.modules  # nothing imported by hand: the entry points do it
    direct = zarr.open_array(store, path="cube", mode="r")[:]
    ds = xr.open_zarr(store, consolidated=False)
    assert type(ds["cube"].data).__module__.startswith("dask"), type(ds["cube"].data)
    np.savez(out, direct=direct, xarray=ds["cube"].values, dims=np.array(ds["cube"].dims))
""")


def _fresh_read(kind, tmp_path, store):
    where = {"local": tmp_path / "cube.zarr", "zip": tmp_path / "cube.zip"}.get(kind)
    if kind == "memory":
        where = tmp_path / "memory.json"
        where.write_text(json.dumps(_memory_dump(store)))
    out = tmp_path / "fresh.npz"
    subprocess.run([sys.executable, "-c", FRESH_READER, kind, str(where), str(out)], check=True)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("kind", ["local", "zip", "memory"])
@pytest.mark.slow
def test_write_and_reopen_in_fresh_process(real, tmp_path, kind, zarr_format):
    store = _store(kind, tmp_path)
    arr = _create(store, real, zarr_format)
    here = arr[:]
    if kind == "zip":
        store.close()
    fresh = _fresh_read(kind, tmp_path, store)
    np.testing.assert_array_equal(fresh["direct"], here)
    np.testing.assert_array_equal(fresh["xarray"], here)
    assert tuple(fresh["dims"]) == DIMS
    assert here.dtype == real.dtype and here.shape == real.shape
    assert 36 < psnr_10k(real, here) < 50


def test_configs_round_trip_and_register_in_fresh_process():
    codec = TecCodec(model="tec-fp", quality=3, nodata=None)
    assert numcodecs.get_codec(codec.get_config()) == codec
    v3 = TecZarrCodec(model="tec-fp", quality=3, nodata=-1, device="cpu")
    assert TecZarrCodec.from_dict(v3.to_dict()) == v3 and "device" not in json.dumps(v3.to_dict())
    script = ("import numcodecs, zarr.registry, json; "
              "c = numcodecs.get_codec({'id': 'tcube', 'model': 'tec-fp', 'quality': 3}); "
              "z = zarr.registry.get_codec_class('tcube'); "
              "print(json.dumps([type(c).__module__, c.get_config(), z.__name__]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == ["tcube.zarr_codecs", {"id": "tcube", "model": "tec-fp", "quality": 3, "nodata": 0},
                               "TecZarrCodec"]


@pytest.mark.parametrize("settings, error", [
    ({"model": "tec-xx"}, UnknownModelError), ({"quality": 0}, InputError), ({"quality": "8"}, InputError),
    ({"nodata": "none"}, InputError)])
def test_bad_settings_fail_at_construction(settings, error):
    for cls in (TecCodec, TecZarrCodec):
        with pytest.raises(error):
            cls(**settings)
    with pytest.raises(InputError, match="unknown tcube codec settings"):
        TecZarrCodec.from_dict({"name": "tcube", "configuration": {"quality": 3, "levels": 2}})


@pytest.mark.parametrize("shape, chunks, dtype, match", [
    ((2, 12, 64, 64), (1, 6, 64, 64), "uint16", "split the band axis"),
    ((12, 64, 64), (4, 64, 64), "uint16", "split the band axis"),
    ((2, 12, 64, 64), (1, 12, 64, 64), "uint8", "not uint8"),
    ((2, 12, 64, 64), (1, 12, 64, 64), "int32", "not int32"),
    ((2, 12, 64, 64), (1, 12, 64, 64), "float64", "not float64"),
    ((64, 64), (64, 64), "uint16", "dims"),
])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_array_layouts_are_checked_at_creation(shape, chunks, dtype, match, zarr_format):
    store = MemoryStore()
    codec = {"serializer": TecZarrCodec()} if zarr_format == 3 else {"compressors": TecCodec()}
    with pytest.raises(InputError, match=match):
        zarr.create_array(store, shape=shape, chunks=chunks, dtype=dtype, zarr_format=zarr_format, **codec)
    assert not store._store_dict  # nothing written


def test_units_in_the_codec_config(real):
    reflectance = real[:1].astype(np.float32) * np.float32(1e-4)
    v3 = TecZarrCodec(model="tec-fp", quality=9, scale=1e-4)
    assert TecZarrCodec.from_dict(v3.to_dict()) == v3 and v3.to_dict()["configuration"]["scale"] == 1e-4
    v2 = TecCodec(model="tec-fp", quality=9, scale=1e-4)
    assert numcodecs.get_codec(v2.get_config()).scale == 1e-4
    for fmt, codec in ((3, {"serializer": v3, "compressors": None}), (2, {"compressors": v2})):
        arr = zarr.create_array(MemoryStore(), shape=reflectance.shape, chunks=(1, 12, 64, 64), dtype="float32",
                                zarr_format=fmt, **codec)
        arr[:] = reflectance
        assert np.abs(arr[:] - reflectance).max() < 0.2 and psnr_10k(real[:1], arr[:] * 1e4) > 35
        with pytest.raises(InputError, match="apply to float32"):
            zarr.create_array(MemoryStore(), shape=(12, 8, 8), dtype="uint16", zarr_format=fmt,
                              **{k: v for k, v in codec.items()})
    with pytest.raises(InputError, match="float reflectance"):  # without units, refused chunk by chunk
        arr = zarr.create_array(MemoryStore(), shape=reflectance.shape, chunks=(1, 12, 64, 64), dtype="float32",
                                serializer=TecZarrCodec(model="tec-fp"), compressors=None)
        arr[:] = reflectance


def test_numcodecs_codec_rejects_flat_buffers():
    with pytest.raises(InputError, match="chunk's shape"):
        TecCodec().encode(np.zeros(12 * 16 * 16, np.uint16))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_band_first_layout_int16(real, zarr_format):
    data = real[1].astype(np.int16)
    arr = _create(MemoryStore(), data, zarr_format, quality=12)
    out = arr[:]
    assert out.shape == data.shape and out.dtype == np.int16 and psnr_10k(data, out) > 38
    np.testing.assert_array_equal(arr[:, 70:90, 100:140], out[:, 70:90, 100:140])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_nan_and_fill_values_survive(clouded, zarr_format):
    fill = np.nan if zarr_format == 3 else 0  # v2 fill values meet the codec's default no-data 0
    codec = {"serializer": TecZarrCodec(), "compressors": None} if zarr_format == 3 else {"compressors": TecCodec()}
    arr = zarr.create_array(MemoryStore(), shape=(5, 12, 100, 140), chunks=CHUNKS, dtype="float32",
                            fill_value=fill, zarr_format=zarr_format, **codec)
    arr[:3, :, :, :100] = clouded[:, :, :, :100]  # leaves chunks unwritten and edge chunks half written
    out = arr[:]
    written = out[:3, :, :, :100]
    nan = np.isnan(clouded[:, :, :, :100])
    np.testing.assert_array_equal(np.isnan(written), nan)
    assert psnr_10k(clouded[:, :, :, :100][~nan], written[~nan]) > 36
    rest = np.concatenate([out[3:].ravel(), out[:3, :, :, 100:].ravel()])
    np.testing.assert_array_equal(rest, np.full(rest.shape, fill, np.float32))
    assert arr.nchunks_initialized < arr.nchunks


def _count_decoded(monkeypatch):
    calls = []
    original = tcube.zarr_codecs._uncode

    def counting(blobs, *args, **kwargs):
        calls.append(len(blobs))
        return original(blobs, *args, **kwargs)

    monkeypatch.setattr(tcube.zarr_codecs, "_uncode", counting)
    return calls


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_partial_reads_decode_only_the_chunks_they_touch(real, monkeypatch, zarr_format):
    arr = _create(MemoryStore(), real, zarr_format)  # 2 x 2 x 3 chunks
    calls = _count_decoded(monkeypatch)
    arr[0, :, :10, :10]
    assert sum(calls) == 1
    arr[2, 5, 60:70, 60:70]  # one date, across a chunk corner
    assert sum(calls) == 1 + 4


def test_a_batch_of_chunks_is_decoded_in_one_model_call(real, monkeypatch):
    arr = _create(MemoryStore(), real, 3)
    calls = _count_decoded(monkeypatch)
    with zarr.config.set({"codec_pipeline.batch_size": 4}):  # read when the array is opened
        out = zarr.open_array(arr.store, path="cube")[:]
    assert sorted(calls) == [4, 4, 4]
    calls.clear()
    np.testing.assert_array_equal(arr[:], out)  # batching does not change the result
    assert calls == [1] * 12


def _damage(arr, key, how):
    raw = arr.store_path.store._store_dict
    full = f"cube/{key}"
    blob = bytearray(raw[full].to_bytes())
    if how == "flip":
        blob[len(blob) // 2] ^= 0x10
    else:
        blob = blob[: len(blob) // 2]
    raw[full] = raw[full].from_bytes(bytes(blob))


@pytest.mark.parametrize("how, error", [("flip", CorruptBlobError), ("truncate", TruncatedBlobError)])
def test_corrupt_chunk_error_names_array_and_key(real, how, error):
    arr = _create(MemoryStore(), real, 3)
    _damage(arr, "c/1/0/1/0", how)
    arr[0]  # other chunks still read
    with pytest.raises(error, match=r"chunk 'c/1/0/1/0' of zarr array 'cube'"):
        arr[2]


def test_corrupt_chunk_in_format_2(real):
    arr = _create(MemoryStore(), real, 2)
    _damage(arr, "1.0.1.0", "flip")
    with pytest.raises(BitstreamError, match="zarr format 2 chunk: blob corrupt"):
        arr[:]


@pytest.mark.parametrize("zarr_format, key", [(2, "1.0.1.0"), (3, "c/1/0/1/0")])
def test_damaged_chunks_lists_the_keys(real, zarr_format, key):
    arr = _create(MemoryStore(), real, zarr_format)
    assert tcube.zarr_codecs.damaged_chunks(arr) == {}
    _damage(arr, key, "flip")
    found = tcube.zarr_codecs.damaged_chunks(arr)
    assert list(found) == [key] and "checksum" in found[key]
    plain = zarr.create_array(MemoryStore(), shape=(12, 8, 8), dtype="uint16")
    with pytest.raises(InputError, match="not coded by tcube alone"):
        tcube.zarr_codecs.damaged_chunks(plain)


def test_device_comes_from_the_environment(monkeypatch):
    from tcube.models.registry import default_device

    monkeypatch.setenv("TCUBE_DEVICE", "cpu")
    assert default_device() == "cpu"
    monkeypatch.delenv("TCUBE_DEVICE")
    assert default_device() in ("cpu", "cuda")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_encoding_writes_and_reads_lazily(clouded, tmp_path, zarr_format, monkeypatch):
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset({"reflectance": (DIMS, clouded)}, coords={"time": np.arange(len(clouded))},
                    attrs={"title": "held-out place"})
    codec = {"serializer": TecZarrCodec(quality=10), "compressors": None} if zarr_format == 3 else {
        "compressors": [TecCodec(quality=10)]}
    ds.to_zarr(tmp_path / "ds.zarr", encoding={"reflectance": {**codec, "chunks": CHUNKS}}, zarr_format=zarr_format,
               consolidated=False)
    calls = _count_decoded(monkeypatch)
    back = xr.open_zarr(tmp_path / "ds.zarr", consolidated=False)
    assert back.attrs["title"] == "held-out place" and not calls  # lazy: nothing decoded yet
    one = back["reflectance"].isel(time=0, x=slice(0, 10)).values
    assert sum(calls) == 2  # one date, x in one chunk column: the two y chunks
    values = back["reflectance"].values
    np.testing.assert_array_equal(one, values[0, :, :, :10])
    nan = np.isnan(clouded)
    np.testing.assert_array_equal(np.isnan(values), nan)
    assert psnr_10k(clouded[~nan], values[~nan]) > 38


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_chunks_decode_on_cpu(real, monkeypatch):
    store = MemoryStore()
    gpu = zarr.create_array(store, name="cube", shape=real.shape, chunks=CHUNKS, dtype=real.dtype,
                            serializer=TecZarrCodec(device="cuda"), compressors=None)
    gpu[:] = real
    monkeypatch.setenv("TCUBE_DEVICE", "cpu")
    cpu = zarr.open_array(store, path="cube")  # a fresh codec from the stored config, on the CPU
    np.testing.assert_allclose(cpu[:].astype(float), gpu[:].astype(float), atol=1)


def test_temporal_model_as_zarr_codec(real):
    """tec-tt codes the dates of each chunk as a sequence; chunks of 2 dates beat tec-hp's bytes."""
    sizes = {}
    for model in ("tec-hp", "tec-tt"):
        store = MemoryStore()
        arr = zarr.create_array(store, name="cube", shape=real.shape, chunks=(3, 12, 64, 64), dtype=real.dtype,
                                serializer=TecZarrCodec(model=model, quality=12), compressors=None)
        arr[:] = real
        assert psnr_10k(real, zarr.open_array(store, path="cube")[:]) > 36
        sizes[model] = arr.nbytes_stored()
    assert sizes["tec-tt"] < sizes["tec-hp"]


# ---- quality modes in the codec configuration ---------------------------------------------------------------------

@pytest.mark.parametrize("settings", [{"max_error": 4}, {"max_error": 0}, {"psnr": 45.0, "metric": "10k"},
                                      {"psnr": 60.0, "metric": "full"}, {"max_error": 16, "quality": 3},
                                      {"max_error": 2, "quality": 0}])
def test_mode_settings_round_trip_and_hold_in_zarr_3(sample, settings):
    codec = TecZarrCodec(**settings)
    assert codec.model == "tec-hx"
    config = json.loads(json.dumps(codec.to_dict()))
    assert config["configuration"] == {"model": "tec-hx", **settings}  # the metric is written with psnr
    assert TecZarrCodec.from_dict(config) == codec
    cube = np.ascontiguousarray(sample[:2, :, :40, :70])
    arr = zarr.create_array(MemoryStore(), shape=cube.shape, chunks=(1, 12, 32, 32), dtype=cube.dtype,
                            serializer=codec, compressors=None)
    arr[:] = cube
    back = arr[:]
    if "max_error" in settings:
        assert int(np.abs(back.astype(int) - cube).max()) <= settings["max_error"]
    else:
        from tcube.metrics import frame_psnr

        metric = settings.get("metric", "10k")
        for t, y, x in np.ndindex(2, 2, 3):  # every date of every chunk
            part = (slice(t, t + 1), slice(None), slice(32 * y, 32 * y + 32), slice(32 * x, 32 * x + 32))
            assert frame_psnr(cube[part].astype(float), back[part].astype(float), metric)[0] >= settings["psnr"]


def test_mode_settings_in_numcodecs(sample):
    codec = TecCodec(max_error=0)
    assert codec.get_config() == {"id": "tcube", "model": "tec-hx", "max_error": 0, "nodata": 0}
    again = numcodecs.get_codec(codec.get_config())
    chunk = np.ascontiguousarray(sample[:1, :, :24, :24])
    assert np.array_equal(again.decode(again.encode(chunk)), chunk)
    assert repr(codec) == "TecCodec(model='tec-hx', max_error=0, nodata=0)"


@pytest.mark.parametrize(("settings", "match"), [({"max_error": 4, "model": "tec-hp"}, "decodes exactly"),
                                                 ({"max_error": -1}, "max_error"),
                                                 ({"psnr": 40, "quality": 4}, "not both"),
                                                 ({"psnr": 400}, "decibels")])
def test_bad_mode_settings_are_refused(settings, match):
    with pytest.raises(InputError, match=match):
        TecZarrCodec(**settings)
    with pytest.raises(InputError, match=match):
        TecCodec(**settings)


def test_bounded_float_arrays_of_reflectance_are_refused_when_written():
    arr = zarr.create_array(MemoryStore(), shape=(12, 8, 8), chunks=(12, 8, 8), dtype="float32",
                            serializer=TecZarrCodec(max_error=2, scale=1e-4), compressors=None)
    with pytest.raises(InputError, match="whole digital numbers"):
        arr[:] = np.float32(0.1234)
