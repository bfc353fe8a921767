import json

import numpy as np
import pytest
import torch

from tcube.models.registry import read_weights
from tcube.models.tt import TemporalCodec
from tcube.train import TrainConfig, train


@pytest.mark.slow
def test_train_export_resume(s2_dir, tmp_path):
    logs = []
    cfg = TrainConfig(arch="hp", name="tec-test", data=[str(s2_dir / "terracodec")], holdout="0080717",
                      out=str(tmp_path / "run"), steps=3, epoch_steps=2, batch=2, crop=32,
                      export=str(tmp_path / "w.safetensors"))
    train(cfg, log=logs.append)
    assert any("validation frames: 4" in line for line in logs)
    model = read_weights(tmp_path / "w.safetensors")
    x = torch.from_numpy(np.full((1, 12, 20, 36), 1500.0, dtype=np.float32))
    payloads = model.compress(x, 5)
    assert model.decompress(payloads, 5, 20, 36).shape == (1, 12, 20, 36)
    card = (tmp_path / "w.md").read_text()
    assert "Validation" in card and "0080717" in card and "| 16 |" in card

    cfg.steps = 5
    train(cfg, log=logs.append)
    assert any("resumed" in line and "step 3" in line for line in logs)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5


def test_train_from_weights_records_the_stages(tmp_path):
    """--init starts from earlier weights; the card and metadata list the earlier commands."""
    from tcube.data import sample_cube_path
    from tcube.models.registry import lineage
    from tcube.train.temporal import TemporalConfig, train_temporal

    first = tmp_path / "tt.safetensors"
    train_temporal(TemporalConfig(data=[str(sample_cube_path())], holdout="none", steps=1, export=str(first)))
    logs = []
    cfg = TrainConfig(arch="tt", name="tec-tt-ft", data=[str(sample_cube_path())], holdout=None,
                      out=str(tmp_path / "run"), steps=1, batch=1, crop=32, init=str(first),
                      export=str(tmp_path / "ft.safetensors"), command="tcube train --arch tt (fine-tune)")
    model = train(cfg, log=logs.append)  # the one entry point: tt goes to the temporal trainer
    assert isinstance(model, TemporalCodec) and json.loads(logs[-1])["steps"] == 1
    assert read_weights(tmp_path / "ft.safetensors").config == model.config
    stages = lineage(str(tmp_path / "ft.safetensors"))
    assert len(stages) == 3 and stages[0].startswith("tcube train --arch fp")  # tec-fp's own training
    assert stages[1].startswith("tcube train --arch tt --init tec-fp")
    assert stages[2].startswith(f"tcube train --arch tt --init {first}")
    assert "Earlier stage 2: `tcube train --arch tt --init tec-fp" in (tmp_path / "ft.md").read_text()


def test_temporal_training_exports_a_working_model(tmp_path):
    import numpy as np

    import tcube
    from tcube.data import sample_cube_path
    from tcube.models.registry import read_weights
    from tcube.train.temporal import TemporalConfig, train_temporal

    out = tmp_path / "tt.safetensors"
    report = train_temporal(TemporalConfig(data=[str(sample_cube_path())], holdout="none", steps=3,
                                           export=str(out)))
    assert report["series"] == 1 and out.exists() and "## Training" in out.with_suffix(".md").read_text()
    model = read_weights(out)
    cube = tcube.data.load_sample_cube()[:, :, :32, :32].astype(np.float32)
    import torch

    x = torch.from_numpy(cube)
    assert model.decompress(model.compress(x, 6), 6, 32, 32).shape == (4, 12, 32, 32)


def test_export_never_replaces_what_is_not_weights(tmp_path):
    """Checked before any training: a file that is not safetensors, or a missing folder, is refused."""
    import pytest

    from tcube.errors import InputError
    from tcube.train import TrainConfig, train
    from tcube.train.temporal import TemporalConfig, train_temporal

    notes = tmp_path / "notes.safetensors"
    notes.write_text("my notes")
    for target, match in ((notes, "not a safetensors file"), (tmp_path / "no" / "w.safetensors", "does not exist")):
        with pytest.raises(InputError, match=match):
            train(TrainConfig(arch="fp", name="x", data=["nothing"], export=str(target), out=str(tmp_path / "run")))
        with pytest.raises(InputError, match=match):
            train_temporal(TemporalConfig(data=["nothing"], export=str(target)))
    assert notes.read_text() == "my notes" and not (tmp_path / "run").exists() and not (tmp_path / "no").exists()


def test_band_agnostic_training_exports_weights_that_code_any_band_set(tmp_path):
    """tec-pc trains on groups of different band sets, resumes, and records cumulative steps."""
    from safetensors import safe_open

    from tcube.train.corpus import Group, save_corpus
    from tcube.train.spectral import train_pc

    rng = np.random.default_rng(0)

    def frames(n, c, side):
        base = np.cumsum(np.cumsum(rng.normal(0, 40, (n, 1, side, side)), -1), -2)
        return np.clip(2000 + base * rng.uniform(0.5, 1.5, (1, c, 1, 1)), 0, 9000).astype(np.uint16)

    groups = [Group("a/four", ("B02", "B03", "B04", "B08"), frames(3, 4, 48)),
              Group("b/thirteen", tuple(f"B{i:02d}" for i in range(1, 14)), frames(2, 13, 40)),
              Group("held/0080717_0", ("B02", "B03"), frames(2, 2, 32))]
    save_corpus(groups, tmp_path / "corpus.npz")
    logs = []
    cfg = TrainConfig(arch="pc", name="tec-test", data=[str(tmp_path / "corpus.npz")], holdout="0080717_0",
                      out=str(tmp_path / "run"), steps=3, epoch_steps=2, batch=2, crop=32,
                      model={"widths": [8, 8], "m": 8, "nh": 8}, export=str(tmp_path / "w.safetensors"))
    train_pc(cfg, log=logs.append)
    assert any("held out: held/0080717_0" in line for line in logs)
    model = read_weights(tmp_path / "w.safetensors")
    for bands in (1, 4, 13):
        x = torch.from_numpy(frames(1, bands, 24).astype(np.float64))
        assert model.decompress(model.compress(x, 8), 8, 24, 24, bands=bands).shape == (1, bands, 24, 24)
    card = (tmp_path / "w.md").read_text()
    assert "held/0080717_0" in card and "| 16 |" in card and "Cumulative over all stages: 3 steps" in card
    cfg.steps, cfg.init, cfg.out, cfg.export = 2, str(tmp_path / "w.safetensors"), str(tmp_path / "run2"), \
        str(tmp_path / "w2.safetensors")
    train_pc(cfg, log=logs.append)
    with safe_open(str(tmp_path / "w2.safetensors"), framework="pt") as f:
        assert f.metadata()["cumulative_steps"] == "5"
