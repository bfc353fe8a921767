"""Issue 26 (data safety, part two): each numbered case of the audit, and variants of it.

The cases cut across modules (outputs, jobs, codecs, bitstream, masks), so they live together;
each test names the case it covers."""

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from helpers import legacy_header

import tcube
from tcube.bands import L2A_BANDS
from tcube.cli import main
from tcube.errors import BitstreamError, CorruptBlobError, InputError
from tcube.outputs import job_record, locate
from tcube.zarr_codecs import TecCodec, TecZarrCodec, damaged_chunks


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _dataset(sample: np.ndarray, dates: int = 4) -> xr.Dataset:
    cube = sample[:dates, :, :48, :48]
    return xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)},
                      coords={"time": pd.date_range("2024-03-01", periods=dates, freq="5D")})


@pytest.fixture()
def victim(sample, tmp_path) -> Path:
    path = tmp_path / "victim.zarr"
    _dataset(sample).to_zarr(path, zarr_format=3, consolidated=False)
    return path


# 1. The source is deleted when the output is spelled as a URL or a store
def test_1_output_spelled_as_url_or_store_is_still_the_source(victim, tmp_path, capsys):
    before = _tree(victim)
    for out in ("file://" + str(victim), "file://" + str(victim) + "/", "local://" + str(victim),
                "simplecache::file://" + str(victim), str(victim / "inner.zarr")):
        assert main(["compress", str(victim), out, "--overwrite", "--quiet"]) == 3, out
        assert "the source" in capsys.readouterr().err
    ds = xr.open_dataset(victim, engine="zarr", consolidated=False)
    for store in (zarr.storage.LocalStore(str(victim)), zarr.storage.FsspecStore.from_url("file://" + str(victim)),
                  fsspec.get_mapper("file://" + str(victim)), str(victim)):
        with pytest.raises(InputError, match="the source"):
            tcube.xarray2tec(ds, store, overwrite=True)
    assert _tree(victim) == before


def test_1_a_dataset_opened_from_a_store_object_knows_its_source(victim):
    """xarray records no source for stores opened as objects: tcube finds the store the arrays read."""
    for opened in (zarr.storage.LocalStore(str(victim)), fsspec.get_mapper("file://" + str(victim))):
        for chunks in (None, {}):
            ds = xr.open_zarr(opened, consolidated=False, chunks=chunks)
            assert "source" not in ds.encoding
            with pytest.raises(InputError, match="the source"):
                tcube.xarray2tec(ds, str(victim), overwrite=True)
    memory = zarr.storage.MemoryStore()
    _dataset(np.asarray(tcube.data.load_sample_cube())).to_zarr(memory, zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match="the source"):
        tcube.xarray2tec(xr.open_zarr(memory, consolidated=False), memory, overwrite=True)


def test_1_decompress_to_its_own_store_by_url(victim, tmp_path, capsys):
    store = tmp_path / "t.zarr"
    assert main(["compress", str(victim), str(store), "--model", "tec-fp", "--quiet"]) == 0
    capsys.readouterr()
    before = _tree(store)
    assert main(["decompress", str(store), "file://" + str(store), "--overwrite", "--quiet"]) == 3
    assert _tree(store) == before


def test_1_unknown_store_objects_are_refused():
    with pytest.raises(InputError, match="cannot tell where"):
        locate(object())


# 2. A user's folder is wiped because it holds a marker file
@pytest.mark.parametrize("marker", ["zarr.json", ".zgroup", ".zarray", "zarr.json.tcube-unfinished"])
def test_2_a_marker_file_does_not_make_a_folder_a_store(victim, tmp_path, capsys, marker):
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    text = '{"zarr_format": 3, "node_type": "group"}' if "json" in marker else '{"zarr_format": 2}'
    (proj / marker).write_text(text)
    (proj / "thesis.txt").write_text("four years")
    (proj / "sub" / "r.csv").write_text("1,2")
    before = _tree(proj)
    for extra in ([], ["--overwrite"], ["--workers", "1", "--overwrite"]):
        assert main(["compress", str(victim), str(proj), "--quiet", *extra]) == 3
        assert "not a zarr store" in capsys.readouterr().err
    with pytest.raises(InputError, match="it holds sub/r.csv, thesis.txt"):
        tcube.xarray2tec(xr.open_zarr(victim, consolidated=False), proj, overwrite=True)
    assert _tree(proj) == before


def test_2_overwrite_deletes_only_zarr_entries(victim, tmp_path, capsys):
    """A real zarr store with one foreign file is not provably a store: refused; without it, replaced."""
    other = tmp_path / "other.zarr"
    zarr.create_array(other, shape=(4,), chunks=(2,), dtype="uint8")[:] = 3
    (other / "notes.md").write_text("mine")
    assert main(["compress", str(victim), str(other), "--overwrite", "--quiet"]) == 3
    assert "notes.md" in capsys.readouterr().err and (other / "notes.md").read_text() == "mine"
    (other / "notes.md").unlink()
    assert main(["compress", str(victim), str(other), "--overwrite", "--quiet", "--model", "tec-fp"]) == 0
    assert tcube.tec2xarray(other)["B04"].shape == (4, 48, 48)


# 3. A killed job leaves a store that plain readers take as complete
@pytest.mark.parametrize("delay", [1.5, 3.0, 4.5])
@pytest.mark.slow
def test_3_kill_9_at_any_point_never_leaves_a_store_that_looks_complete(victim, tmp_path, delay):
    store = tmp_path / "k.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "tcube.cli", "compress", str(victim), str(store), "--quiet",
                             "--batch", "1", "--chunks", "1", "16", "16"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    finished = (job_record(store) or {}).get("finished") is True
    if finished:
        assert xr.open_zarr(store, consolidated=False)["tcube_y_x"].notnull().all()
    else:
        for opener in (lambda: xr.open_zarr(store, consolidated=False),
                       lambda: zarr.open_array(store, path="tcube_y_x", mode="r")):
            with pytest.raises((FileNotFoundError, zarr.errors.NodeNotFoundError)):
                opener()
    assert main(["compress", str(victim), str(store), "--quiet", "--chunks", "1", "16", "16"]) == 0  # completes
    assert tcube.tec2xarray(store)["B04"].notnull().all()


# 4. Two jobs on one output
@pytest.mark.slow
def test_4_two_jobs_on_one_output_one_waits_its_turn(victim, tmp_path):
    store = tmp_path / "two.zarr"
    script = textwrap.dedent(f"""
        import sys, time
        import tcube.outputs as o
        real = o.check_store_output
        def slow(*a, **k):
            time.sleep(2)  # a check-to-write window as on network storage
            return real(*a, **k)
        o.check_store_output = slow
        import tcube.jobs
        tcube.jobs.check_store_output = slow
        from tcube.cli import main
        sys.exit(main(["compress", {str(victim)!r}, {str(store)!r}, "--quiet", "--model", "tec-fp", "--quality",
                       sys.argv[1]]))
    """)
    procs = []
    for quality in ("4", "12"):
        procs.append(subprocess.Popen([sys.executable, "-c", script, quality], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        time.sleep(0.3)
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    loser = next(err for code, err in results if code == 3)
    # refused by the lock, or (when the first job finished before the second looked) as another job's store
    assert ("another tcube job is writing it" in loser or "holds another job" in loser) and "Traceback" not in loser
    winner = "4" if results[0][0] == 0 else "12"
    assert zarr.open_array(store, path="tcube_y_x").serializer.quality == int(winner)
    assert not (store / ".tcube-lock").exists()


def test_4_a_store_locked_by_another_process_is_refused_at_once(victim, tmp_path, capsys):
    store = tmp_path / "held.zarr"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tcube.outputs import OutputLock\n"
                               f"OutputLock({str(store)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--overwrite"]):
            assert main(["compress", str(victim), str(store), "--quiet", "--model", "tec-fp", *extra]) == 3
            err = capsys.readouterr().err
            assert f"another tcube job is writing it (process {holder.pid} on" in err
        with pytest.raises(InputError, match="another tcube job"):
            tcube.xarray2tec(xr.open_zarr(victim, consolidated=False), store, append_dim=None, model="tec-fp")
    finally:
        holder.kill()
        holder.wait()
    assert main(["compress", str(victim), str(store), "--quiet", "--model", "tec-fp"]) == 0  # the lock died with it


@pytest.mark.slow
def test_4_a_lock_left_by_a_killed_job_is_taken_over(victim, tmp_path):
    store = tmp_path / "k.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "tcube.cli", "compress", str(victim), str(store), "--quiet",
                             "--batch", "1", "--chunks", "1", "16", "16"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        if (store / ".tcube-lock").exists():
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert main(["compress", str(victim), str(store), "--quiet", "--chunks", "1", "16", "16"]) == 0



@pytest.mark.slow
@pytest.mark.parametrize("writes", [1, 2, 3, 5, 8])
def test_4_a_job_killed_at_any_write_of_its_skeleton_is_taken_over(victim, tmp_path, monkeypatch, writes):
    """Killed after any number of its skeleton's writes (the coordinates' data among them), the job's
    store is still its own: the same command completes it, to what an uninterrupted run writes."""
    store, whole = tmp_path / "k.zarr", tmp_path / "whole.zarr"
    cmd = ["compress", str(victim), "--quiet", "--model", "tec-fp", "--chunks", "1", "64", "64"]
    real_set, count = zarr.storage.LocalStore.set, []

    async def killed(self, key, value):
        if str(store) in str(self.root) and key != ".tcube-lock":
            if len(count) == writes:
                raise OSError("power cut")
            count.append(key)
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", killed)
    with pytest.raises(OSError, match="power cut"):
        main([cmd[0], cmd[1], str(store), *cmd[2:]])
    monkeypatch.undo()
    assert main([cmd[0], cmd[1], str(store), *cmd[2:]]) == 0
    assert main([cmd[0], cmd[1], str(whole), *cmd[2:]]) == 0
    data = lambda path: {k: v for k, v in _tree(path).items() if not k.endswith("zarr.json")}  # noqa: E731
    assert data(store) == data(whole) and any(k.startswith("time/") for k in data(store))
    assert tcube.tec2xarray(store).load().identical(tcube.tec2xarray(whole).load())

# 5. Swapped chunk files decode as valid
def test_5_swapped_chunk_files_are_named_not_decoded(victim, tmp_path):
    store = tmp_path / "s.zarr"
    assert main(["compress", str(victim), str(store), "--quiet", "--model", "tec-fp"]) == 0
    chunks = store / "tcube_y_x" / "c"
    a, b = chunks / "0" / "0" / "0" / "0", chunks / "1" / "0" / "0" / "0"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(CorruptBlobError, match=r"written for the chunk at grid position \([01], 0, 0, 0\)"):
        tcube.tec2xarray(store)["B04"].load()
    problems = damaged_chunks(zarr.open_array(store, path="tcube_y_x"))
    assert set(problems) == {"c/0/0/0/0", "c/1/0/0/0"} and all("swapped" in p for p in problems.values())
    assert main(["compress", str(victim), str(store), "--quiet", "--model", "tec-fp"]) == 0  # the rerun repairs
    assert not damaged_chunks(zarr.open_array(store, path="tcube_y_x"))


def test_5_plain_zarr_writes_bind_chunks_too(sample):
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(2, 12, 32, 32), chunks=(1, 12, 32, 32),
                            dtype="uint16", serializer=TecZarrCodec(max_error=0), compressors=None)
    arr[:] = sample[:2, :, :32, :32]
    raw = arr.store._store_dict
    raw["c/0/0/0/0"], raw["c/1/0/0/0"] = raw["c/1/0/0/0"], raw["c/0/0/0/0"]
    with pytest.raises(CorruptBlobError, match="swapped"):
        arr[0]


# 6. zarr format 2 arrays with order="F"
@pytest.mark.parametrize("order", ["F", "C"])
def test_6_zarr_format_2_in_fortran_order_is_exact(sample, order):
    x = np.ascontiguousarray(sample[0, :, :40, :48])
    store = zarr.storage.MemoryStore()
    arr = zarr.create_array(store, shape=x.shape, chunks=(12, 32, 32), dtype="uint16", zarr_format=2,
                            compressors=TecCodec(max_error=0), order=order)
    arr[:] = x
    arr[:, 3:5, 30:34] = 7
    x[:, 3:5, 30:34] = 7
    np.testing.assert_array_equal(arr[:], x)
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], x)


# 7. A plain xarray append breaks a tcube store
def test_7_appending_dates_through_tcube(sample, tmp_path, capsys):
    ds = _dataset(sample)
    ds["SCL"] = (("time", "y", "x"), np.full((4, 48, 48), 4, np.uint8))
    store = tmp_path / "a.zarr"
    tcube.xarray2tec(ds.isel(time=slice(0, 2)), store, max_error=0)
    tcube.xarray2tec(ds.isel(time=slice(2, 3)), store, append_dim="time")
    ds.isel(time=slice(3, 4)).to_netcdf(tmp_path / "week.nc")
    assert main(["compress", str(tmp_path / "week.nc"), str(store), "--append", "--quiet"]) == 0
    back = tcube.tec2xarray(store)
    assert (back.time.values == ds.time.values).all()
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    with pytest.raises(InputError, match="give no quality"):
        tcube.xarray2tec(ds.isel(time=slice(3, 4)), store, append_dim="time", quality=4)
    with pytest.raises(InputError, match="appending adds dates, not variables"):
        tcube.xarray2tec(ds.isel(time=slice(3, 4)).assign(B99x=ds["SCL"][3:4]), store, append_dim="time")


def test_7_an_interrupted_append_is_invisible_and_completes(sample, tmp_path, monkeypatch):
    from tcube import jobs

    ds = _dataset(sample)
    store = tmp_path / "a.zarr"
    tcube.xarray2tec(ds.isel(time=slice(0, 2)), store, model="tec-fp")
    real_fill = jobs.fill

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "fill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tcube.xarray2tec(ds.isel(time=slice(2, 4)), store, append_dim="time")
    monkeypatch.setattr(jobs, "fill", real_fill)
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(store, consolidated=False)
    assert zarr.open_array(store, path="tcube_y_x", mode="r").shape[0] == 2  # the old metadata, complete
    tcube.xarray2tec(ds.isel(time=slice(2, 4)), store, append_dim="time")
    assert tcube.tec2xarray(store)["B04"].shape == (4, 48, 48)


def test_7_a_plain_xarray_append_is_named_and_repaired(sample, tmp_path, capsys):
    ds = _dataset(sample)
    store = tmp_path / "xt.zarr"
    tcube.xarray2tec(ds.isel(time=slice(0, 2)), store, max_error=0)
    ds.isel(time=slice(2, 4)).to_zarr(store, append_dim="time")
    with pytest.raises(InputError, match="tcube repair"):
        tcube.tec2xarray(store)
    assert main(["decompress", str(store), str(tmp_path / "x.nc"), "--quiet"]) == 3
    assert "tcube repair" in capsys.readouterr().err
    assert main(["repair", str(store), "--quiet"]) == 0
    back = tcube.tec2xarray(store)
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert "B04" not in list(zarr.open_group(store).array_keys())
    assert tcube.repair_store(store) is False


# 8. Lossless float32 is not bit for bit
def test_8_lossless_keeps_negative_zero(sample):
    x = sample[:1, :, :32, :32].astype(np.float32)
    x[0, 0, :4, :4] = -0.0
    x[0, 5, 7, 9] = np.float32(-0.0)
    for blob in (tcube.encode(x, max_error=0), tcube.encode(x, max_error=3), tcube.encode(x)):
        y = tcube.decode(blob)
        assert np.signbit(y[0, 0, :4, :4]).all() and np.signbit(y[0, 5, 7, 9])
    np.testing.assert_array_equal(tcube.decode(tcube.encode(x, max_error=0)).view(np.uint32), x.view(np.uint32))


# 9. A small forged blob costs seconds and gigabytes
def test_9_a_forged_shape_is_refused_at_once(sample):
    import struct
    import tracemalloc
    import zlib

    from tcube import bitstream

    blob = tcube.encode(sample[:1, :, :40, :40].astype(np.float32), max_error=4)
    c = bitstream.unpack(blob)
    for version in (10, 9, 8, 7):
        h = {k: v for k, v in c.header.items() if k != "version"}
        h["shape"] = [1, 32, 4096, 4096]
        if version >= 9:
            body = bitstream._compact_body(h, c.frames, version)  # not padded as pack would
        else:
            h = legacy_header(h)
            hbytes = bitstream._encode_header(h, c.frames, version)
            payload = b"".join(s[n] for s in c.frames for n in sorted(s))
            body = bitstream._PREFIX.pack(bitstream.MAGIC, version, len(hbytes)) + hbytes + payload
        forged = body + struct.pack("<I", zlib.crc32(body))  # the checksum recomputed
        assert len(forged) < 12_000
        tracemalloc.start()
        start = time.perf_counter()
        with pytest.raises(BitstreamError, match="announces"):
            tcube.decode(forged)
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert seconds < 0.5 and peak < 50e6


@pytest.mark.slow
def test_9_huge_sparse_cubes_pad_to_stay_decodable():
    from tcube import bitstream

    x = np.zeros((1, 12, 1024, 1024), np.uint16)  # 12.6 M values of one constant
    blob = tcube.encode(x, model="tec-pc", quality=1)
    assert len(blob) * bitstream.VALUES_PER_BYTE + bitstream.FREE_VALUES >= x.size
    np.testing.assert_array_equal(tcube.decode(blob), tcube.decode(blob))


# 10. One dark date makes a job impossible to finish
def test_10_units_are_decided_once_for_the_whole_job(sample, tmp_path, capsys):
    ds = _dataset(sample).astype(np.float32)
    dark = np.random.default_rng(0).uniform(0, 2, (12, 48, 48)).astype(np.float32)
    for i, b in enumerate(L2A_BANDS):
        ds[b][-1] = dark[i]
    src = tmp_path / "dark.nc"
    ds.to_netcdf(src)
    store = tmp_path / "dark.zarr"
    assert main(["compress", str(src), str(store), "--quiet", "--model", "tec-fp"]) == 0
    assert tcube.tec2xarray(store)["B04"][-1].max() < 200
    wrong = tmp_path / "scaled.zarr"
    assert main(["compress", str(src), str(wrong), "--quiet", "--scale", "0.0001"]) == 3
    assert "outside the digital numbers tcube codes" in capsys.readouterr().err and not wrong.exists()
    reflectance = (_dataset(sample).astype(np.float32) * 1e-4)
    with pytest.raises(InputError, match="float reflectance"):
        tcube.xarray2tec(reflectance, tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()


# 11. A symlinked output
def test_11_a_symlink_to_an_empty_folder_is_written_through(victim, tmp_path):
    target = tmp_path / "emptydir"
    target.mkdir()
    link = tmp_path / "el.zarr"
    link.symlink_to(target)
    assert main(["compress", str(victim), str(link), "--quiet", "--model", "tec-fp"]) == 0
    assert link.is_symlink() and tcube.tec2xarray(link)["B04"].shape == (4, 48, 48)
    assert (target / "zarr.json").exists()
    assert main(["compress", str(victim), str(link), "--quiet", "--model", "tec-fp", "--quality", "4",
                 "--overwrite"]) == 0
    assert link.is_symlink() and zarr.open_array(target, path="tcube_y_x").serializer.quality == 4
    dangling = tmp_path / "dl.zarr"
    dangling.symlink_to(tmp_path / "nowhere" / "x.zarr")
    assert main(["compress", str(victim), str(dangling), "--quiet"]) == 3
    assert os.path.islink(dangling)
