import numpy as np
import torch

from tcube.models.registry import read_weights
from tcube.train import TrainConfig, train


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
