"""Stores written as jobs: an interrupted job never looks finished, and its rerun completes it."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import tcube
from tcube import jobs
from tcube.bands import L2A_BANDS
from tcube.cli import main
from tcube.errors import InputError, UnfinishedStoreError
from tcube.outputs import is_unfinished, job_record, open_array
from tcube.settings import Settings
from tcube.zarr_codecs import damaged_chunks


def _dataset(sample: np.ndarray, shift: int = 0) -> xr.Dataset:
    cube = sample[:, :, :64, :80] + shift
    return xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)})


def _chunks(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted((store / "tcube_y_x" / "c").rglob("*"))
            if p.is_file()}


def test_a_rerun_of_a_finished_job_writes_nothing_and_says_so(sample, tmp_path):
    ds = _dataset(sample)
    store = tmp_path / "s.zarr"
    first = jobs.run(jobs.prepare(ds, (None, None), store, {"*": {"chunks": (1, 32, 32)}}, Settings("tec-fp", 4)), ds)
    assert first.written == first.chunks == 4 * 2 * 3 and not is_unfinished(store)
    again = jobs.run(jobs.prepare(ds, (None, None), store, {"*": {"chunks": (1, 32, 32)}}, Settings("tec-fp", 4)), ds)
    assert again.written == 0 and "nothing to write" in str(again) and "nan" not in str(again)
    with pytest.raises(InputError, match="holds another job"):  # same sizes, other values: another job
        tcube.xarray2tec(_dataset(sample, shift=1), store, {"*": {"chunks": (1, 32, 32)}}, model="tec-fp", quality=4)


def test_an_interrupted_job_is_unfinished_everywhere_until_its_rerun(sample, tmp_path, monkeypatch):
    ds = _dataset(sample)
    store = tmp_path / "s.zarr"
    job = jobs.prepare(ds, (None, None), store, None, Settings("tec-fp", 4, batch=1))
    calls = []
    real_fill = jobs.fill

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_fill(*args, **kwargs)

    monkeypatch.setattr(jobs, "fill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jobs.run(job, ds)
    monkeypatch.setattr(jobs, "fill", real_fill)
    assert is_unfinished(store) and job_record(store)["finished"] is False
    with pytest.raises(UnfinishedStoreError, match="unfinished.*rerun the same command"):
        tcube.tec2xarray(store)
    with pytest.raises(FileNotFoundError):  # plain xarray finds no group either
        xr.open_zarr(store, consolidated=False)
    with pytest.raises(FileNotFoundError):  # nor plain zarr an array, whose chunks would read as NaN
        zarr.open_array(store, path="tcube_y_x", mode="r")
    missing = damaged_chunks(open_array(store, "tcube_y_x", mode="r"))
    assert len(missing) == 2 and all("did not finish" in v for v in missing.values())
    report = tcube.xarray2tec(ds, store, model="tec-fp", quality=4, batch=1)
    assert report is None and not is_unfinished(store)
    assert tcube.tec2xarray(store)["B04"].shape == (4, 64, 80)


@pytest.fixture(scope="module")
def series(s2_dir) -> Path:
    return s2_dir / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc"


@pytest.mark.slow
def test_ctrl_c_during_compress(series, tmp_path):
    """SIGINT while `tcube compress` writes: one line, exit 130, a store marked unfinished that
    `info` and the readers refuse, and a rerun that completes it to the uninterrupted bytes."""
    store = tmp_path / "cut.zarr"
    cmd = [sys.executable, "-m", "tcube.cli", "compress", str(series), str(store), "--quiet", "--batch", "1",
           "--chunks", "1", "256", "256"]  # one date a chunk: 140 chunks to be interrupted among
    # Ctrl-C as in a terminal, even when these tests run in the background (where a shell starts
    # them with SIGINT ignored, and children inherit that)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "tcube_y_x").rglob("c/*/0/0/0"))) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "tcube: interrupted\n", (proc.returncode, err[-2000:])
    written = len(_chunks(store))
    assert 10 <= written < 140
    info = subprocess.run([sys.executable, "-m", "tcube.cli", "info", str(store)], capture_output=True, text=True)
    assert info.returncode == 4 and "unfinished" in info.stderr and "rerun the same command" in info.stderr
    assert main(["decompress", str(store), str(tmp_path / "x.nc"), "--quiet"]) == 4
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    whole = tmp_path / "whole.zarr"
    assert subprocess.run([*cmd[:5], str(whole), *cmd[6:]], capture_output=True).returncode == 0
    assert _chunks(store) == _chunks(whole) and len(_chunks(whole)) == 140
    assert main(["info", str(store)]) == 0


@pytest.mark.parametrize("writes", [0, 1, 2, 4, 6])
def test_a_job_killed_while_writing_its_skeleton_is_invisible_and_resumes(sample, tmp_path, monkeypatch, writes):
    """Killed after any number of the skeleton's writes: no reader sees a group or an array, and
    the same command completes the store without --overwrite."""
    ds = _dataset(sample)
    store = tmp_path / "s.zarr"
    real_set, count = zarr.storage.LocalStore.set, []

    async def killed(self, key, value):
        if len(count) == writes:
            raise OSError("disk gone")  # (inside zarr's event loop: an exception it passes on)
        count.append(key)
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", killed)
    with pytest.raises(OSError, match="disk gone"):
        tcube.xarray2tec(ds, store, model="tec-fp")
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(store, consolidated=False)
    for path in ("", "tcube_y_x", "time"):
        with pytest.raises((FileNotFoundError, zarr.errors.NodeNotFoundError)):
            zarr.open(store, path=path, mode="r")
    if writes:
        with pytest.raises(UnfinishedStoreError if any(k.startswith("zarr.json") for k in count) else InputError):
            tcube.tec2xarray(store)
    tcube.xarray2tec(ds, store, model="tec-fp")  # the same job: its own store, completed without --overwrite
    assert not is_unfinished(store) and tcube.tec2xarray(store)["B04"].shape == (4, 64, 80)
