"""Model registry: weights by digest, so that retraining a model never orphans its blobs."""

import shutil

import numpy as np
import pytest
import torch

import tcube
from tcube.errors import WeightsMismatchError
from tcube.models import registry


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    """A private copy of the shipped tec-fp weights, seen by the registry as the installation's."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(registry.weights_path("tec-fp"), folder)
    monkeypatch.setattr(registry, "_weights_dir", lambda: folder)
    registry._cached.cache_clear()
    yield folder
    registry._cached.cache_clear()


def _retrain(folder) -> None:
    """Replace the current tec-fp weights by other ones, as an export of new training does."""
    model = registry.read_weights(folder / "tec-fp.safetensors")
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    registry.save_weights(model, folder / "tec-fp.safetensors")  # keeps the weights it replaces
    registry._cached.cache_clear()


def test_blobs_of_retired_weights_keep_decoding(weights_dir, small):
    blob = tcube.encode(small, model="tec-fp", quality=5)
    before = tcube.decode(blob)
    old = tcube.info(blob)["weights"]
    _retrain(weights_dir)
    assert len(list((weights_dir / "earlier").glob(f"tec-fp-{old}*.safetensors"))) == 1  # blobs hold a prefix
    assert tcube.info(tcube.encode(small, model="tec-fp", quality=5))["weights"] != old
    np.testing.assert_array_equal(tcube.decode(blob), before)
    assert registry.has_weights("tec-fp", old) and registry.retire_weights("tec-fp").exists()


def test_blob_of_weights_this_installation_lacks_names_them(weights_dir, small):
    blob = tcube.encode(small[:1, :, :16, :16], model="tec-fp", quality=5)
    _retrain(weights_dir)
    shutil.rmtree(weights_dir / "earlier")
    registry._cached.cache_clear()
    with pytest.raises(WeightsMismatchError, match="other weights of 'tec-fp'.*no earlier weights"):
        tcube.decode(blob)


def test_earlier_weights_must_match_their_name(weights_dir, small):
    blob = tcube.encode(small[:1, :, :16, :16], model="tec-fp", quality=5)
    _retrain(weights_dir)
    old = tcube.info(blob)["weights"]
    (earlier,) = (weights_dir / "earlier").glob(f"tec-fp-{old}*.safetensors")
    earlier.write_bytes((weights_dir / "tec-fp.safetensors").read_bytes())  # other weights under the old digest
    registry._cached.cache_clear()
    with pytest.raises(tcube.errors.TcubeError, match="does not match its name"):
        tcube.decode(blob)


def test_shipped_weights_are_safetensors_under_60_mb_in_all():
    folder = registry.weights_path("tec-hp").parent
    files = sorted(folder.rglob("*.safetensors"))
    assert {p.stem for p in files} >= set(registry.list_models())
    assert sum(p.stat().st_size for p in files) < 60e6
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pth"))  # no pickles
