"""Where tcube writes: never over a user's files, never into its own source, never into a missing folder."""

import hashlib
import os
from pathlib import Path

import pytest
import xarray as xr
import zarr

import tcube
from tcube.bands import L2A_BANDS
from tcube.cli import main
from tcube.errors import InputError
from tcube.outputs import NETCDF, check_file_output, check_not_source, check_store_output, writing_file


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with its SHA-256: what must not change."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory, sample):
    """A small zarr dataset (as users keep them) and the tcube store compressed from it."""
    root = tmp_path_factory.mktemp("data")
    cube = sample[:2, :, :40, :48]
    ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)})
    ds.to_zarr(root / "a.zarr", zarr_format=3, consolidated=False)
    assert main(["compress", str(root / "a.zarr"), str(root / "a.tcube.zarr"), "--model", "tec-fp", "--quiet"]) == 0
    return root


def test_a_folder_of_other_files_is_never_written_into(source, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("x")
    for extra in ([], ["--overwrite"], ["--workers", "1"], ["--workers", "1", "--overwrite"]):
        assert main(["compress", str(source / "a.zarr"), str(precious), "--quiet", *extra]) == 3
        assert "is not a zarr store: refusing to write into it" in capsys.readouterr().err
    assert _tree(precious) == {"thesis.txt": hashlib.sha256(b"x").hexdigest()}
    with pytest.raises(InputError, match="not a zarr store"):
        tcube.xarray2tec(xr.open_zarr(source / "a.zarr"), precious, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "x"


def test_overwrite_replaces_a_zarr_store_only_when_asked(source, tmp_path, capsys):
    other = tmp_path / "other.zarr"
    zarr.create_array(other, shape=(4,), dtype="uint8")
    before = _tree(other)
    assert main(["compress", str(source / "a.zarr"), str(other), "--quiet"]) == 3
    assert "no tcube job wrote: pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert _tree(other) == before
    assert main(["compress", str(source / "a.zarr"), str(other), "--quiet", "--overwrite"]) == 0
    assert "tcube_y_x" in zarr.open_group(other).array_keys()


def _spellings(path: Path, tmp_path: Path) -> list[str]:
    link = tmp_path / "link.zarr"
    link.symlink_to(path)
    return [str(path), str(path) + "/", os.path.relpath(path) + "/.", str(link), str(path / "inside.zarr")]


@pytest.mark.parametrize("command", ["compress", "recompress", "decompress"])
def test_a_command_never_writes_into_its_source(source, tmp_path, capsys, command, monkeypatch):
    src = source / ("a.tcube.zarr" if command == "decompress" else "a.zarr")
    monkeypatch.chdir(source)
    before = _tree(src)
    extra = ["--workers", "1"] if command == "recompress" else []
    for out in _spellings(src, tmp_path) + ([str(src / "x.nc")] if command == "decompress" else []):
        for overwrite in ([], ["--overwrite"]):
            assert main([command, str(src), out, "--quiet", *extra, *overwrite]) == 3, out
            err = capsys.readouterr().err
            assert "the source" in err and "refusing to write there" in err and err.count("\n") == 1, err
    assert _tree(src) == before
    (tmp_path / "link.zarr").unlink()


def test_missing_folders_are_named_and_never_created(source, tmp_path, capsys):
    assert main(["decompress", str(source / "a.tcube.zarr"), str(tmp_path / "nodir" / "x.nc"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err == f"tcube: error: {tmp_path / 'nodir' / 'x.nc'}: folder {tmp_path / 'nodir'} does not exist " \
                  "(tcube never creates folders)\n"
    for out in (tmp_path / "missing" / "out.zarr", tmp_path / "missing" / "deeper" / "out.zarr"):
        assert main(["compress", str(source / "a.zarr"), str(out), "--quiet"]) == 3
        assert f"folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_an_existing_file_is_replaced_only_when_it_is_the_commands_kind(source, tmp_path, capsys):
    out = tmp_path / "back.nc"
    assert main(["decompress", str(source / "a.tcube.zarr"), str(out), "--quiet"]) == 0
    assert main(["decompress", str(source / "a.tcube.zarr"), str(out), "--quiet"]) == 3
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert main(["decompress", str(source / "a.tcube.zarr"), str(out), "--quiet", "--overwrite"]) == 0
    notes = tmp_path / "notes.nc"
    notes.write_text("my notes")
    assert main(["decompress", str(source / "a.tcube.zarr"), str(notes), "--quiet", "--overwrite"]) == 3
    assert "is not a NetCDF file: refusing to replace it" in capsys.readouterr().err
    assert notes.read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_a_file_written_until_an_error_never_takes_the_name(tmp_path):
    path = check_file_output(tmp_path / "x.nc", NETCDF)
    with pytest.raises(RuntimeError), writing_file(path) as partial:
        partial.write_bytes(b"CDF\x01 half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_check_helpers_on_stores_of_any_kind(tmp_path):
    memory = zarr.storage.MemoryStore()
    assert check_store_output(memory) == "new"  # empty: a new store
    zarr.create_array(memory, name="x", shape=(2,), dtype="uint8")
    with pytest.raises(InputError, match="no tcube job wrote"):
        check_store_output(memory)
    check_not_source("out.zarr", ["memory://a"])
    with pytest.raises(InputError, match="is the source"):
        check_not_source("s3://bucket/a.zarr/", ["s3://bucket/a.zarr"])
    with pytest.raises(InputError, match="holds the source"):
        check_not_source(tmp_path, [tmp_path / "a" / "b.nc"])
    assert check_store_output(tmp_path / "new.zarr") == "new"


def test_reading_a_missing_store_creates_nothing(tmp_path):
    from tcube.outputs import check_finished, is_unfinished, job_record

    missing = tmp_path / "missing.zarr"
    assert is_unfinished(missing) is False and job_record(missing) is None
    check_finished(missing)
    assert main(["info", str(missing)]) == 3 and main(["decompress", str(missing), str(tmp_path / "x.nc")]) == 3
    assert list(tmp_path.iterdir()) == []
