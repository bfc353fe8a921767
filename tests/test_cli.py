import json

import numpy as np
import pytest

import tcube
from tcube.cli import main


def test_info_models(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tec-fp", "tec-hp", "tec-tt"} and len(out["tec-hp"]["sha256"]) == 64


def test_info_blob(tmp_path, capsys, small):
    path = tmp_path / "x.tcube"
    path.write_bytes(tcube.encode(small, model="tec-fp", quality=3))
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == 3


def test_info_corrupt_blob_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.tcube"
    path.write_bytes(b"garbage")
    assert main(["info", str(path)]) == 4
    assert "not a tcube blob" in capsys.readouterr().err


def test_demo_json(capsys):
    assert main(["demo", "--models", "tec-fp", "--qualities", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["codec"] == "tec-fp" and rows[0]["bytes"] > 0 and np.isfinite(rows[0]["psnr_10k"])
    assert any(r["codec"] == "jpeg2000" for r in rows)


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


def test_compress_info_preview_decompress(dates_folder, tmp_path, capsys):
    store = tmp_path / "cube.zarr"
    assert main(["compress", str(dates_folder), str(store), "--quality", "6", "--chunks", "1", "128", "128",
                 "--stats", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ratio"] > 20 and {v["variable"] for v in summary["variables"]} >= {"B02", "B12", "spatial_ref"}
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
def test_cli_round_trip_of_real_datasets(s2_dir, tmp_path, source):
    from helpers import assert_same

    from tcube.io import open_dataset

    store, out = tmp_path / "c.zarr", tmp_path / "back.nc"
    assert main(["compress", str(s2_dir / source), str(store), "--quiet", "--json"]) == 0
    assert main(["decompress", str(store), str(out), "--quiet", "--json"]) == 0
    assert_same(open_dataset(s2_dir / source), open_dataset(out), min_psnr=20)
