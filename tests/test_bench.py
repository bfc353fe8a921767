"""The benchmark suite: cube grouping, a quick run through the CLI, its outputs."""

import csv

import numpy as np
import pytest

from tcube.bench import FIELDS, curves, training_data
from tcube.cli import main
from tcube.data import sample_cube_path
from tcube.readers import load_cubes


def test_places_group_their_dates(s2_dir):
    cubes = dict(load_cubes([s2_dir / "terracodec"]))
    assert len(cubes) == 4 and all(c.shape == (4, 12, 264, 264) and c.dtype == np.uint16 for c in cubes.values())
    assert list(dict(load_cubes([s2_dir / "terracodec"], holdout="0080717"))) == ["ssl4eos12_val_0080717"]
    single = load_cubes([s2_dir / "bigearthnet_example"])
    assert len(single) == 6 and all(c.shape == (1, 12, 120, 120) for _, c in single)


def test_training_data_is_reported():
    text = training_data("tec-hp")
    assert "terracodec (3:" in text and "held out: 0080717" in text and "bigearthnet_example (6:" in text


def test_held_out_places_are_not_reported_as_training_data():
    from tcube.bench import _trained_on

    assert "ssl4eos12_val_0080717" in training_data("tec-pc")  # named in its held-out list
    assert not _trained_on("tec-pc", "ssl4eos12_val_0080717") and not _trained_on("tec-pc", "ssl4eos12_val_0080717_2")
    assert _trained_on("tec-pc", "ssl4eos12_val_0173706") and _trained_on("tec-pc", "ssl4eos12_val_0173706_3")


def test_quick_bench_from_the_command_line(tmp_path, capsys):
    args = ["bench", str(sample_cube_path()), "--holdout", "", "--quick", "--crop", "48", "--out", str(tmp_path),
            "--name", "q", "--baselines", "jpeg2000-joint", "x265-video", "zstd-19", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "BD-rate" in out and "| tec-hp |" in out and "tec-fp was trained on" in out
    rows = list(csv.DictReader(open(tmp_path / "q.csv")))
    assert tuple(rows[0]) == FIELDS and len(rows) == 5 * 4 + 5 + 5 + 1  # 5 models x 4 qualities
    assert (tmp_path / "q.png").stat().st_size > 10_000
    zstd = [r for r in rows if r["codec"] == "zstd-19"][0]
    assert zstd["psnr_10k"] == "inf" and float(zstd["ssim"]) == 1.0
    typed = [{**r, "bytes": int(r["bytes"]), "bpppb": float(r["bpppb"]), "psnr_10k": float(r["psnr_10k"])}
             for r in rows]
    rates, psnrs = curves(typed)["tec-hp"]
    assert np.all(np.diff(rates) > 0) and np.all(np.diff(psnrs) > 0)


@pytest.mark.slow
def test_quality_modes_join_the_suite(tmp_path, capsys):
    args = ["bench", str(sample_cube_path()), "--holdout", "", "--quick", "--crop", "32", "--out", str(tmp_path),
            "--name", "m", "--models", "tec-pc", "--baselines", "jpegls-near", "--modes", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| tec-pc-psnr |" in out and "| tec-pc-max_error |" in out
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    psnr = [r for r in rows if r["codec"] == "tec-pc-psnr"]
    assert len(psnr) == 5 and all(float(r["psnr_10k"]) >= float(r["setting"]) for r in psnr)
    assert len([r for r in rows if r["codec"] == "tec-pc-max_error"]) == 5
