import numpy as np
import pytest

from tcube.bands import L2A_BANDS
from tcube.errors import InputError
from tcube.readers import band_name, find_cubes, read_cube


def test_band_names():
    assert band_name("S2B_MSIL2A_20180204T94161_57_38_B8A.tif") == "B8A"
    assert band_name("B4") == "B04"
    assert band_name("SCL") is None


def test_multiband_geotiff(s2_dir):
    cube = read_cube(s2_dir / "terracodec" / "ssl4eos12_val_0080717_0.tif")
    assert cube.shape == (1, 12, 264, 264) and cube.dtype == np.float32


def test_folder_of_per_band_geotiffs_is_resampled(s2_dir):
    folder = next((s2_dir / "bigearthnet_example").glob("S2*"))
    cube = read_cube(folder)
    assert cube.shape == (1, 12, 120, 120)


def test_folder_of_dates(s2_dir, tmp_path):
    import shutil

    for i in range(2):
        shutil.copy(s2_dir / "terracodec" / f"ssl4eos12_val_0080717_{i}.tif", tmp_path)
    assert read_cube(tmp_path).shape == (2, 12, 264, 264)


def test_l1c_npy_drops_b10_and_scales(s2_dir):
    cube = read_cube(s2_dir / "eolearn" / "REFERENCE_SCENES.npy")
    assert cube.shape == (5, 12, 101, 100) and cube.max() > 100


def test_netcdf_with_missing_bands(s2_dir):
    with pytest.raises(InputError, match="missing bands B01"):
        read_cube(s2_dir / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc")


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_netcdf_and_zarr_band_variables(tmp_path, suffix):
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    ds = xr.Dataset({b: (("time", "y", "x"), rng.integers(0, 5000, (3, 8, 9)).astype(np.uint16)) for b in L2A_BANDS})
    path = tmp_path / f"cube{suffix}"
    ds.to_netcdf(path) if suffix == ".nc" else ds.to_zarr(path)
    cube = read_cube(path)
    assert cube.shape == (3, 12, 8, 9)
    np.testing.assert_array_equal(cube[:, 2], ds["B03"].values)


def test_find_cubes(s2_dir):
    found = find_cubes([s2_dir / "terracodec", s2_dir / "bigearthnet_example"])
    assert len(found) == 16 + 6


def test_missing_path():
    with pytest.raises(InputError, match="no such file"):
        read_cube("/nonexistent/cube.tif")
