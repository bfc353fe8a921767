"""tcube.parallel on a LocalCluster of 2 workers: same store as xarray2tec, resume after damage and
after kill -9, job records, recompress / decompress, GPU pinning of workers, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

distributed = pytest.importorskip("distributed")

from tcube import jobs, parallel  # noqa: E402
from tcube.bands import L2A_BANDS  # noqa: E402
from tcube.datasets import tec2xarray, xarray2tec  # noqa: E402
from tcube.errors import InputError, UnknownModelError  # noqa: E402
from tcube.metrics import psnr_10k  # noqa: E402
from tcube.zarr_codecs import TecZarrCodec  # noqa: E402

RULES = {"*": {"chunks": (1, 48, 48)}}
SETTINGS = dict(model="tec-fp", quality=6, rules=RULES)


@pytest.fixture(scope="module")
def client():
    with parallel.local_cluster(workers=2) as cluster, distributed.Client(cluster) as c:
        yield c


def _dataset(sample: np.ndarray, dates: int = 3) -> xr.Dataset:
    """Real bands (odd sizes: edge chunks in y and x), a lossless SCL, a cloud of NaN and coordinates."""
    cube = np.concatenate([sample] * (-(-dates // len(sample))))[:dates, :, :100, :110].astype(np.float32)
    cube[1, :, 10:30, 40:70] = np.nan
    ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)},
                    coords={"time": np.arange(dates), "y": 10.0 * np.arange(100), "x": 10.0 * np.arange(110)})
    ds["SCL"] = (("time", "y", "x"), (cube[:, 3] // 500).astype(np.uint8))
    return ds


@pytest.fixture(scope="module")
def source(tmp_path_factory, sample):
    path = tmp_path_factory.mktemp("src") / "src.zarr"
    _dataset(sample).to_zarr(path, zarr_format=3, consolidated=False, encoding={"SCL": {"chunks": (2, 50, 55)}})
    return path


def _chunks(store: Path) -> dict[str, bytes]:
    """Every stored chunk of a zarr 3 store (keys ARRAY/c/i/j/...), by key."""
    files = [p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts[1:2]]
    return {str(p.relative_to(store)): p.read_bytes() for p in files}


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Same variables and values (attributes may differ)."""
    assert sorted(a.data_vars) == sorted(b.data_vars)  # zarr lists a group's arrays in no fixed order
    for name in a.data_vars:
        xr.testing.assert_equal(a[name].load(), b[name].load())


@pytest.fixture(scope="module")
def coded(tmp_path_factory, client, source, monkeypatch_module):
    """The parallel store (SCL written by tasks too) and the serial store of the same dataset."""
    monkeypatch_module.setattr(jobs, "SMALL_BYTES", 0)
    out = tmp_path_factory.mktemp("out")
    report = parallel.compress(source, out / "par.zarr", client=client, batch=3, **SETTINGS)
    xarray2tec(xr.open_zarr(source, consolidated=False, chunks=None), out / "ser.zarr", RULES, model="tec-fp",
               quality=6)
    return out, report


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
def test_compress_writes_what_xarray2tec_writes(coded):
    out, report = coded
    _same(tec2xarray(out / "par.zarr"), tec2xarray(out / "ser.zarr"))
    stack = zarr.open_array(out / "par.zarr", path="tcube_y_x")
    assert isinstance(stack.serializer, TecZarrCodec) and (stack.serializer.model, stack.serializer.quality) == (
        "tec-fp", 6)
    # 3 dates x 3 x 3 tiles of the stack, and SCL in the source's chunks (by tasks: SMALL_BYTES is 0)
    scl = zarr.open_array(out / "par.zarr", path="SCL")
    assert scl.chunks == (1, 48, 48)  # the rule's
    assert report.chunks == report.written == 27 + scl.nchunks
    tcube_bytes = sum(len(b) for k, b in _chunks(out / "par.zarr").items() if k.startswith("tcube_"))
    assert report.bytes_out > tcube_bytes > 0
    assert report.bytes_in == 3 * 100 * 110 * (12 * 4 + 1)  # float32 bands and uint8 SCL, as in the source
    assert sum(w["chunks"] for w in report.workers.values()) == report.chunks
    assert {w["device"] for w in report.workers.values()} == {"cpu"}
    assert f"{report.chunks} of {report.chunks} chunks written" in str(report)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_rerun_rewrites_only_missing_and_damaged_chunks(coded, client, source, tmp_path):
    out, _ = coded
    store = _copy(out / "par.zarr", tmp_path / "par.zarr")
    before = _chunks(store)
    (store / "tcube_y_x/c/1/0/1/1").unlink()  # missing
    cut = store / "tcube_y_x/c/2/0/2/0"
    cut.write_bytes(cut.read_bytes()[:-7])  # half written (by another writer than zarr's)
    (store / "SCL/c/0/1/1").write_bytes(b"not zstd")  # a lossless chunk that does not decode
    (store / "tcube_y_x/c/0/0/0/0.1234.partial").write_bytes(b"partial")  # a killed local write's leftover
    report = parallel.compress(source, store, client=client, batch=3, **SETTINGS)
    assert report.written == 3
    assert _chunks(store) == before  # byte for byte what the uninterrupted run stored
    assert not list(store.rglob("*.partial"))
    again = parallel.compress(source, store, client=client, batch=3, **SETTINGS)
    assert again.written == 0 and again.bytes_in == 0


def test_another_job_needs_overwrite(coded, client, source, tmp_path):
    store = _copy(coded[0] / "par.zarr", tmp_path / "par.zarr")
    with pytest.raises(InputError, match="holds another job"):
        parallel.compress(source, store, client=client, model="tec-fp", quality=7, rules=RULES)
    report = parallel.compress(source, store, client=client, model="tec-fp", quality=7, rules=RULES, overwrite=True)
    assert report.written == report.chunks
    assert zarr.open_array(store, path="tcube_y_x").serializer.quality == 7
    plain = tmp_path / "plain.zarr"
    xr.open_zarr(source, consolidated=False).to_zarr(plain, consolidated=False)
    with pytest.raises(InputError, match="a zarr store that no tcube job wrote"):
        parallel.compress(source, plain, client=client)
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not a zarr store"):
        parallel.compress(source, folder, client=client, overwrite=True)
    assert (folder / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_decompress_then_recompress(coded, client, tmp_path):
    out, _ = coded
    plain = tmp_path / "plain.zarr"
    parallel.decompress(out / "par.zarr", plain, client=client)
    group = zarr.open_group(plain)
    assert not any(isinstance(group[k].serializer, TecZarrCodec) for k in group.array_keys())
    decoded = tec2xarray(out / "par.zarr")
    _same(xr.open_zarr(plain, consolidated=False)[list(decoded.data_vars)], decoded)
    again = tmp_path / "again.zarr"
    report = parallel.recompress(plain, again, model="tec-hp", quality=14, client=client)
    assert report.written == report.chunks > 0
    back = tec2xarray(again)
    assert zarr.open_array(again, path="tcube_y_x").serializer.model == "tec-hp"
    np.testing.assert_array_equal(back["SCL"], decoded["SCL"])
    valid = np.isfinite(decoded["B04"].values)
    np.testing.assert_array_equal(np.isfinite(back["B04"].values), valid)
    assert psnr_10k(back["B04"].values[valid][None], decoded["B04"].values[valid][None]) > 38


def test_bad_input_fails_before_any_work(client, source, tmp_path):
    dst = tmp_path / "never.zarr"
    with pytest.raises(InputError, match="quality"):
        parallel.compress(source, dst, client=client, quality=17)
    with pytest.raises(UnknownModelError):
        parallel.compress(source, dst, client=client, model="tec-xx")
    with pytest.raises(InputError, match="batch"):
        parallel.compress(source, dst, client=client, batch=0)
    with pytest.raises(InputError, match="not both"):
        parallel.compress(source, dst, client=client, workers=2)
    with pytest.raises(InputError, match="one worker per GPU"):
        parallel.local_cluster(workers=3, gpus=[0, 1])
    with pytest.raises(TypeError, match="unexpected"):
        parallel.decompress(source, dst, model="tec-hp")
    assert not dst.exists()


def test_local_cluster_pins_one_worker_per_gpu():
    """Each GPU worker sees only its GPU; without CUDA (here) they code on the CPU."""
    environ = dict(os.environ)
    with parallel.local_cluster(gpus=["0", "1"]) as cluster, distributed.Client(cluster) as c:
        assert dict(os.environ) == environ  # the workers' threads settings stay out of the caller's process
        seen = c.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(seen.values()) == ["0", "1"]
        assert len(cluster.workers) == 2 and all(w.nthreads == 1 for w in cluster.workers.values())


def test_models_load_once_per_worker(client, source, tmp_path):
    """The plugin loads the models at registration; tasks only find them in the process cache."""
    from tcube.models import registry

    parallel.compress(source, tmp_path / "a.zarr", client=client, **SETTINGS)
    before = client.run(lambda: registry._cached.cache_info().misses)
    parallel.compress(source, tmp_path / "b.zarr", client=client, **SETTINGS)
    assert client.run(lambda: registry._cached.cache_info().misses) == before


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tcube.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


@pytest.mark.slow
def test_killed_job_resumes_to_the_uninterrupted_result(sample, tmp_path):
    """kill -9 of the whole job (client, scheduler, workers) half way; the rerun completes it."""
    src = tmp_path / "src.zarr"
    _dataset(sample, dates=16).to_zarr(src, zarr_format=3, consolidated=False)
    flags = ["--model", "tec-fp", "--quality", "6", "--chunks", "1", "48", "48", "--batch", "2", "--workers", "2",
             "--quiet"]
    whole = tmp_path / "whole.zarr"
    assert _cli("compress", str(src), str(whole), *flags).wait(timeout=300) == 0
    expected = _chunks(whole)
    stack_chunks = 16 * 9
    killed = tmp_path / "killed.zarr"
    job = _cli("compress", str(src), str(killed), *flags)
    deadline = time.monotonic() + 240
    while len(list(killed.glob("tcube_y_x/c/*/*/*/*"))) < stack_chunks // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done = len(list(killed.glob("tcube_y_x/c/*/*/*/*")))
    assert 0 < done < stack_chunks, "the job was not killed half way"
    rerun = _cli("compress", str(src), str(killed), *flags, "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    import json

    report = json.loads(out)
    assert 0 < report["written"] < report["chunks"]
    assert _chunks(killed) == expected


def test_cli_refuses_what_dask_runs_cannot_do(source, tmp_path, capsys):
    from tcube.cli import EXIT_INPUT, main

    assert main(["compress", str(source), str(tmp_path / "a.zarr"), "--workers", "1", "--stats"]) == EXIT_INPUT
    assert "--stats" in capsys.readouterr().err
    assert main(["decompress", str(source), str(tmp_path / "a.nc"), "--workers", "1"]) == EXIT_INPUT
    assert "plain zarr (.zarr) only" in capsys.readouterr().err
    assert main(["compress", str(source), str(tmp_path / "a.zarr"), "--gpus", ","]) == EXIT_INPUT
    assert not (tmp_path / "a.zarr").exists()


@pytest.mark.slow
def test_serial_and_dask_runs_give_the_same_store_and_dtypes(client, s2_dir, tmp_path):
    """The README's Romania example through `tcube compress` with and without dask, and back."""
    from tcube.cli import main
    from tcube.datasets import describe_store
    from tcube.readers import open_dataset

    src = s2_dir / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc"
    address = client.scheduler.address
    serial, dask_store = tmp_path / "serial.zarr", tmp_path / "dask.zarr"
    assert main(["compress", str(src), str(serial), "--quiet"]) == 0
    assert main(["compress", str(src), str(dask_store), "--quiet", "--scheduler", address]) == 0
    a, b = zarr.open_group(serial, mode="r"), zarr.open_group(dask_store, mode="r")
    layout = {k: (a[k].dtype, a[k].chunks, a[k].shape) for k in a.array_keys()}
    assert layout == {k: (b[k].dtype, b[k].chunks, b[k].shape) for k in b.array_keys()}
    source = open_dataset(src)
    for name, var in source.data_vars.items():  # stored as the source holds them (SCL: float32, not float64)
        assert tec2xarray(dask_store)[name].dtype == tec2xarray(serial)[name].dtype == var.dtype, name
    assert describe_store(serial)["raw_bytes"] == describe_store(dask_store)["raw_bytes"]
    assert describe_store(serial)["raw_bytes"] == sum(v.nbytes for v in source.variables.values())
    for store in (serial, dask_store):
        back = tmp_path / f"back_{store.name}"
        flags = ["--scheduler", address] if store == dask_store else []
        assert main(["decompress", str(store), str(back), "--quiet", *flags]) == 0
        plain = xr.open_zarr(back, consolidated=False)
        assert {n: v.dtype for n, v in plain.data_vars.items()} == {n: v.dtype for n, v in source.data_vars.items()}


@pytest.mark.slow
def test_compress_with_an_error_bound_on_the_cluster(client, source, tmp_path):
    report = parallel.compress(source, tmp_path / "bounded.zarr", client=client, max_error=8, rules=RULES)
    assert report.written == report.chunks
    a = xr.open_zarr(source, consolidated=False)
    b = tec2xarray(tmp_path / "bounded.zarr")
    for name in L2A_BANDS:
        x, y = a[name].values, b[name].values
        nan = np.isnan(x)
        assert (np.isnan(y) == nan).all() and float(np.abs(x[~nan] - y[~nan]).max()) <= 8, name
    assert zarr.open_array(tmp_path / "bounded.zarr", path="tcube_y_x").serializer.max_error == 8
