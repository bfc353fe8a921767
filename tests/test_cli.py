import json

import numpy as np
import pytest

import tcube
from tcube.cli import main


def test_info_models(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tec-fp", "tec-hp", "tec-hx", "tec-pc", "tec-tt"} and len(out["tec-hp"]["sha256"]) == 64
    assert out["tec-pc"]["bands"] == "any, 1 to 32"


def test_info_blob(tmp_path, capsys, small):
    path = tmp_path / "x.tcube"
    path.write_bytes(tcube.encode(small, model="tec-fp", quality=3))
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == 3


def test_info_names_the_file_and_tells_foreign_from_damaged(tmp_path, capsys, small):
    foreign = tmp_path / "sample.nc"
    foreign.write_bytes(b"CDF\x01" + bytes(100))
    assert main(["info", str(foreign)]) == 3  # bad input, not damaged data
    err = capsys.readouterr().err
    assert "sample.nc: not a tcube blob or store" in err and "Traceback" not in err
    damaged = tmp_path / "cut.tcube"
    damaged.write_bytes(tcube.encode(small, model="tec-fp", quality=3)[:-3])
    assert main(["info", str(damaged)]) == 4
    assert "cut.tcube: blob truncated" in capsys.readouterr().err


def test_a_closed_output_pipe_ends_quietly():
    import subprocess
    import sys

    run = subprocess.Popen([sys.executable, "-m", "tcube.cli", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # the reader goes away before tcube writes, as `| head -c 0` does
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_demo_json(capsys):
    assert main(["demo", "--models", "tec-fp", "--qualities", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["codec"] == "tec-fp" and rows[0]["bytes"] > 0 and np.isfinite(rows[0]["psnr_10k"])
    assert {r["codec"] for r in rows} == {"tec-fp", "x265-intra-pca", "jpeg2000-pca"}


def test_help_teaches():
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0


@pytest.fixture(scope="module")
def dates_folder(s2_dir, tmp_path_factory):
    """The four seasons of the held-out place as a folder of per-date GeoTIFFs."""
    folder = tmp_path_factory.mktemp("dates")
    for p in sorted((s2_dir / "terracodec").glob("*0080717_*.tif")):
        (folder / p.name).symlink_to(p)
    return folder


@pytest.mark.slow
def test_compress_info_preview_decompress(dates_folder, tmp_path, capsys):
    store = tmp_path / "cube.zarr"
    assert main(["compress", str(dates_folder), str(store), "--quality", "6", "--chunks", "1", "128", "128",
                 "--stats", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ratio"] > 20 and {v["variable"] for v in summary["variables"]} >= {"B02", "B12"}
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in info["arrays"] if a["name"].startswith("tcube_")] == ["tcube_y_x"]
    png = tmp_path / "preview.png"
    assert main(["preview", str(dates_folder), str(store), str(png), "--date", "2", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert png.stat().st_size > 10_000 and stats["date"] == 2 and stats["psnr_full"] > 30
    assert main(["preview", str(dates_folder), str(store), str(png), "--date", "9", "--overwrite"]) == 3
    assert "date 9 is outside 0..3" in capsys.readouterr().err
    out = tmp_path / "back.nc"
    assert main(["decompress", str(store), str(out), "--quiet"]) == 0
    import xarray as xr

    with xr.open_dataset(out) as back:
        assert back["B04"].dtype == np.int16 and back.sizes["time"] == 4 and list(back["file"].values)[0].endswith(
            "_0.tif")


@pytest.mark.parametrize("argv, code, message", [
    (["compress", "missing.nc", "x.zarr"], 3, "no such file"),
    (["compress", "DATES", "x.zarr", "--quality", "17"], 3, "quality"),
    (["compress", "DATES", "x.zarr", "--model", "tec-zz"], 3, "unknown model"),
    (["preview", "DATES", "DATES", "x.png"], 3, "not a tcube store"),
])
def test_exit_codes(dates_folder, tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    argv = [str(dates_folder) if a == "DATES" else a for a in argv]
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_damaged_store_exit_code(dates_folder, tmp_path, capsys):
    store = tmp_path / "cube.zarr"
    assert main(["compress", str(dates_folder), str(store), "--quiet", "--json"]) == 0
    chunk = store / "tcube_y_x" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    capsys.readouterr()
    assert main(["decompress", str(store), str(tmp_path / "out.nc"), "--quiet"]) == 4
    assert "chunk 'c/0/0/0/0' of zarr array 'tcube_y_x'" in capsys.readouterr().err


def test_compress_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes" in text and "--rules" in text


@pytest.mark.parametrize("source", ["nrt_romania/sentinel2_cube_subset_romania_10m.nc",
                                    "worldcereal/S2_L2A_20m_00002806639B424A_32631_2017-08-01_2018-11-30.nc",
                                    "bigearthnet_example/S2A_MSIL2A_20170613T101031_87_48"])
@pytest.mark.slow
def test_cli_round_trip_of_real_datasets(s2_dir, tmp_path, source):
    from helpers import assert_same

    from tcube.readers import open_dataset

    store, out = tmp_path / "c.zarr", tmp_path / "back.nc"
    assert main(["compress", str(s2_dir / source), str(store), "--quiet", "--json"]) == 0
    assert main(["decompress", str(store), str(out), "--quiet", "--json"]) == 0
    assert_same(open_dataset(s2_dir / source), open_dataset(out), min_psnr=20)


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("tcube ")
    for command, expected in (("compress", "(default: 8)"), ("decompress", "(default: 8)"), ("demo", "(default: 1 4"),
                              ("train", "(default: 4000)"), ("bench", "(default: rd)")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert expected in capsys.readouterr().out, command


@pytest.fixture(scope="module")
def readme_stores(sample, tmp_path_factory):
    """The README's zarr examples: one format 3 array, one format 2 array, an xarray `encoding` store."""
    import xarray as xr
    import zarr

    from tcube.zarr_codecs import TecCodec, TecZarrCodec

    root = tmp_path_factory.mktemp("readme")
    cube = sample[:2, :, :64, :64]
    zarr.create_array(root / "cube.zarr", shape=cube.shape, chunks=(1, 12, 32, 32), dtype="int16",
                      serializer=TecZarrCodec(model="tec-fp"), compressors=None)[:] = cube
    zarr.create_array(root / "cube2.zarr", shape=cube.shape, chunks=(1, 12, 32, 32), dtype="int16", zarr_format=2,
                      compressors=TecCodec(model="tec-fp"))[:] = cube
    ds = xr.Dataset({"reflectance": (("time", "band", "y", "x"), cube)})
    ds.to_zarr(root / "ds.zarr", consolidated=False, encoding={"reflectance": {
        "serializer": TecZarrCodec(model="tec-fp"), "compressors": None, "chunks": (1, 12, 32, 32)}})
    return root


@pytest.mark.parametrize("name, array", [("cube.zarr", "/"), ("cube2.zarr", "/"), ("ds.zarr", "reflectance")])
def test_info_describes_any_tcube_coded_store(readme_stores, capsys, name, array):
    assert main(["info", str(readme_stores / name), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    coded = [a for a in info["arrays"] if a["name"] == array]
    assert coded and coded[0]["codec"] == "tcube tec-fp q8" and coded[0]["raw_bytes"] == 2 * 12 * 64 * 64 * 2
    assert main(["info", str(readme_stores / name)]) == 0 and "tcube tec-fp q8" in capsys.readouterr().out


def test_decompress_refuses_what_tcube_did_not_write(readme_stores, tmp_path, capsys):
    import xarray as xr

    xr.Dataset({"a": ("x", [1, 2])}).to_zarr(tmp_path / "plain.zarr", consolidated=False)
    assert main(["decompress", str(tmp_path / "plain.zarr"), str(tmp_path / "x.nc")]) == 3
    assert "tcube did not write" in capsys.readouterr().err
    assert main(["decompress", str(readme_stores / "cube.zarr"), str(tmp_path / "x.nc")]) == 3
    assert "a single zarr array" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["compress", "missing.nc", "x.zarr"], ["decompress", "missing.zarr", "x.nc"],
                                  ["info", "missing.tcube"], ["preview", "missing.nc", "missing.zarr", "p.png"],
                                  ["recompress", "missing.zarr", "x.zarr", "--workers", "1"]])
def test_missing_inputs_read_the_same_everywhere(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 3
    assert capsys.readouterr().err == f"tcube: error: {argv[1]}: no such file or folder\n"
    assert list(tmp_path.iterdir()) == []


def test_float_reflectance_needs_scale_and_stats_never_print_inf(s2_dir, tmp_path, capsys):
    """A NetCDF of float reflectance 0..1 without a scale_factor: refused before any write, then coded
    with --scale; the statistics of lossy variables are finite (undefined ones read n/a)."""
    import xarray as xr

    from tcube.readers import open_dataset

    ds = open_dataset(s2_dir / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc").isel(time=slice(40, 46))
    bands = ["B2", "B3", "B4", "B8"]
    flat = xr.Dataset({b: (ds[b] / 1e4).astype(np.float32) for b in bands})
    for b in bands:
        flat[b].encoding = {}
    src = tmp_path / "reflectance.nc"
    flat.to_netcdf(src)
    assert main(["compress", str(src), str(tmp_path / "r.zarr"), "--stats"]) == 3
    assert "float reflectance" in capsys.readouterr().err and not (tmp_path / "r.zarr").exists()
    assert main(["compress", str(src), str(tmp_path / "r.zarr"), "--stats", "--scale", "0.0001", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert " inf " not in out and "B4" in out
    back = xr.open_dataset(tmp_path / "back.nc") if main(["decompress", str(tmp_path / "r.zarr"),
                                                            str(tmp_path / "back.nc"), "--quiet"]) == 0 else None
    assert float(np.abs(back["B4"] - flat["B4"]).mean()) < 0.02  # in the source's units


def test_band_labels_by_common_name_and_l1c_b10(sample, tmp_path, capsys):
    import xarray as xr

    import tcube

    rgbn = sample[:2, [1, 2, 3, 7], :40, :40]
    da = xr.DataArray(rgbn, dims=("time", "band", "y", "x"), coords={"band": ["blue", "green", "red", "nir"]})
    tcube.xarray2tec(xr.Dataset({"reflectance": da}), tmp_path / "rgbn.zarr")
    meta = json.loads(json.dumps(dict(__import__("zarr").open_array(tmp_path / "rgbn.zarr", path="tcube_y_x")
                                      .attrs["tcube"])))
    assert meta["variables"]["reflectance"]["bands"] == {"blue": 0, "green": 1, "red": 2, "nir": 3}  # its own bands
    l1c = np.concatenate([sample[:1, :10], sample[:1, :1] // 10, sample[:1, 10:]], axis=1)[:, :, :32, :32]
    np.save(tmp_path / "l1c.npy", l1c)  # 13 bands in L1C order: B10 is one of the 13 the default codes natively
    assert main(["compress", str(tmp_path / "l1c.npy"), str(tmp_path / "l1c.zarr"), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("B10" in a["variables"] for a in summary["arrays"])
    back = tcube.tec2xarray(tmp_path / "l1c.zarr")
    assert float(np.abs(back["B10"].values.astype(float) - l1c[:, 10]).mean()) < 20


@pytest.fixture(scope="module")
def small_nc(sample, tmp_path_factory):
    """Four dates of 12 real bands, 40 x 52, as a NetCDF file of int16 band variables."""
    import xarray as xr

    path = tmp_path_factory.mktemp("nc") / "small.nc"
    cube = sample[:, :, :40, :52]
    xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(tcube.bands.L2A_BANDS)}).to_netcdf(path)
    return path


@pytest.mark.parametrize(("flags", "bound"), [(["--lossless"], 0), (["--max-error", "8"], 8)])
def test_compress_with_an_error_bound(small_nc, tmp_path, flags, bound):
    import xarray as xr

    store = tmp_path / "bounded.zarr"
    assert main(["compress", str(small_nc), str(store), "--quiet", *flags]) == 0
    back = tcube.tec2xarray(str(store))
    with xr.open_dataset(small_nc) as ds:
        for b in tcube.bands.L2A_BANDS:
            assert back[b].dtype == ds[b].dtype
            assert int(np.abs(back[b].values.astype(int) - ds[b].values).max()) <= bound, b
    import zarr

    codec = zarr.open_array(str(store), path="tcube_y_x").serializer
    assert (codec.model, codec.max_error, codec.quality) == ("tec-hx", bound, None)


def test_compress_with_a_psnr_target(small_nc, tmp_path):
    import xarray as xr

    from tcube.metrics import frame_psnr

    store = tmp_path / "target.zarr"
    assert main(["compress", str(small_nc), str(store), "--quiet", "--psnr", "48", "--metric", "full"]) == 0
    back = tcube.tec2xarray(str(store))
    with xr.open_dataset(small_nc) as ds:
        a = np.stack([ds[b].values for b in tcube.bands.L2A_BANDS], 1).astype(float)
    b = np.stack([back[b].values for b in tcube.bands.L2A_BANDS], 1).astype(float)
    assert (frame_psnr(a, b, "full") >= 48).all()


def test_mode_flags_exclude_each_other(small_nc, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(small_nc), str(tmp_path / "x.zarr"), "--lossless", "--psnr", "40"])
    assert exc.value.code == 2
    assert main(["compress", str(small_nc), str(tmp_path / "y.zarr"), "--max-error", "-3"]) == 3
    assert "max_error" in capsys.readouterr().err


def test_a_netcdf_with_a_text_band_coordinate_goes_there_and_back(tmp_path, small):
    """The store records the coordinate's dtype as numpy reads it back ("<U3", not its name "str96"), and
    keeps the text as zarr 3's variable-length strings (fixed-length ones make zarr warn at every write)."""
    import warnings

    import xarray as xr

    da = xr.DataArray(small[:2, [1, 2, 3, 7], :32, :32], dims=("time", "band", "y", "x"), name="reflectance",
                      coords={"time": np.array(["2020-01-01", "2020-02-01"], "datetime64[ns]"),
                              "band": np.array(["B02", "B03", "B04", "B08"]), "y": np.arange(32.0),
                              "x": np.arange(32.0)})
    da.to_dataset().to_netcdf(tmp_path / "sample_band.nc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["compress", str(tmp_path / "sample_band.nc"), str(tmp_path / "band.zarr"), "--quiet"]) == 0
    assert not [w for w in caught if "Unstable" in w.category.__name__]
    assert tcube.tec2xarray(str(tmp_path / "band.zarr"))["band"].dtype == np.dtype("<U3")
    assert main(["decompress", str(tmp_path / "band.zarr"), str(tmp_path / "back.nc"), "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "back.nc") as back:
        assert list(back["band"].values) == ["B02", "B03", "B04", "B08"]


@pytest.mark.slow
def test_demo_prints_its_table_as_it_goes():
    import subprocess
    import sys

    run = subprocess.Popen([sys.executable, "-m", "tcube.cli", "demo", "--models", "tec-hx", "--qualities", "2", "4"],
                           stdout=subprocess.PIPE, text=True)
    first = [run.stdout.readline() for _ in range(3)]  # the cube, the columns, the first row
    still_running = run.poll() is None  # the other rows (tec-hx, x265, JPEG2000) are still being measured
    rest = run.stdout.read()
    assert run.wait(timeout=300) == 0
    assert first[1].split()[:2] == ["codec", "setting"] and first[2].split()[:3] == ["tec-hx", "quality", "2"]
    assert still_running and "jpeg2000-pca" in rest
