"""Every registered model implements the one model interface fully, from its own config type."""

import dataclasses

import numpy as np
import pytest
import torch

from tcube.models import Model, ModelConfig, build_model, list_models, load_model
from tcube.models.base import N_QUALITIES, FramePayload
from tcube.models.registry import ARCHITECTURES, MODELS

INTERFACE = ("band_counts", "background", "compress", "decompress", "reconstruct", "export_tables")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_each_architecture_overrides_the_whole_interface(arch):
    cls = ARCHITECTURES[arch]
    assert issubclass(cls, Model) and issubclass(cls.config_type, ModelConfig) and cls.config_type is not ModelConfig
    missing = [name for name in INTERFACE if getattr(cls, name) is getattr(Model, name)]
    assert missing == []
    assert all(isinstance(getattr(cls, flag), bool) for flag in ("any_bands", "exact", "temporal"))
    assert cls.stream_names


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_configs_are_per_architecture_and_round_trip(arch):
    model = build_model(arch)
    config = model.config
    assert type(config) is ARCHITECTURES[arch].config_type and config.arch == arch
    assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown fields"):
        type(config).from_dict({**config.to_dict(), "colour": 3})
    with pytest.raises(TypeError, match="takes a"):
        ARCHITECTURES[arch](ModelConfig(arch=arch))


def test_only_fields_of_an_architecture_are_in_its_config():
    names = {arch: {f.name for f in dataclasses.fields(cls.config_type)} for arch, cls in ARCHITECTURES.items()}
    assert names["hx"] == {"arch", "steps"}
    assert "nh" not in names["fp"] and "nt" not in names["hp"] and "steps" not in names["hp"]
    assert "nt" in names["tt"] and {"steps", "drop"} <= names["pc"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_codes_its_band_counts_and_declares_what_it_is(name):
    model = load_model(name, "cpu")
    assert model.temporal == (name in ("tec-hx", "tec-tt")) and model.exact == (name in ("tec-hx", "tec-pc"))
    counts = model.band_counts
    assert isinstance(counts, range) and len(counts) >= 1
    for bands in dict.fromkeys((counts[0], counts[-1])):
        ramp = np.add.outer(np.arange(24.0), np.arange(20.0)) * 20  # smooth scenes of distinct bands
        x = torch.from_numpy((1000 + ramp + 150 * np.arange(bands)[:, None, None]
                              + 300 * np.arange(2)[:, None, None, None]).astype(np.float32))
        payloads = model.compress(x, 12, [7, 8])
        assert [type(p) for p in payloads] == [FramePayload] * 2
        assert set(payloads[0].streams) == set(model.stream_names)
        out = model.decompress(payloads, 12, 24, 20, bands=bands)
        assert out.shape == x.shape and float((out - x).abs().mean()) < 0.1 * float(x.mean())
        pieces = torch.zeros_like(out)

        def sink(frames, rows, cols, piece, pieces=pieces):
            pieces[frames, :, rows, cols] = piece

        assert model.decompress(payloads, 12, 24, 20, sink, bands=bands) is None
        torch.testing.assert_close(pieces, out, rtol=0, atol=0)
        assert model.reconstruct(x, 12).shape == x.shape
        assert model.background(bands).shape == (bands,)
    assert MODELS[name] == model.config.arch
    with pytest.raises(Exception, match="quality must be"):
        model.compress(x, N_QUALITIES + 1)
