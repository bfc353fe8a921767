import json

import numpy as np
import pytest

import tcube
from tcube.cli import main


def test_info_models(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tec-fp", "tec-hp"} and len(out["tec-hp"]["sha256"]) == 64


def test_info_blob(tmp_path, capsys, small):
    path = tmp_path / "x.tcube"
    path.write_bytes(tcube.encode(small, model="tec-fp", quality=3))
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == 3


def test_info_corrupt_blob_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.tcube"
    path.write_bytes(b"garbage")
    assert main(["info", str(path)]) == 2
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
