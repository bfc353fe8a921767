"""The settings type: built and checked in one place, carried unchanged to the coder and the header."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import MemoryStore

import tcube
from tcube.defaults import BOUNDED_MODEL, BOUNDED_QUALITIES, DEFAULT_MODEL, DEFAULT_QUALITY
from tcube.errors import InputError, UnknownModelError
from tcube.settings import Settings
from tcube.stacks import stacks_in
from tcube.zarr_codecs import TecCodec, TecZarrCodec

PACKAGE = Path(tcube.__file__).parent


def test_make_fills_in_the_defaults_of_each_mode():
    assert Settings.make() == Settings(DEFAULT_MODEL, DEFAULT_QUALITY)
    bounded = Settings.make(max_error=4)
    assert (bounded.model, bounded.quality, bounded.qualities, bounded.mode) == (BOUNDED_MODEL, None,
                                                                                 BOUNDED_QUALITIES, "max_error")
    target = Settings.make(psnr=45)
    assert (target.quality, target.psnr, target.mode, target.qualities[-1]) == (None, 45.0, "psnr", 16)
    assert Settings.make(max_error=0).mode == "lossless" and Settings.make(quality=3).mode == "quality"
    assert Settings.make(model="tec-pc").model_named and not Settings.make().model_named


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"model": "tec-xx"}, UnknownModelError, "unknown model 'tec-xx'"),
    ({"model": 3}, InputError, "model must be a model name"),
    ({"quality": 17}, InputError, "quality must be an integer from 1 to 16"),
    ({"quality": 0}, InputError, "quality must be an integer from 1 to 16"),
    ({"quality": 2.0}, InputError, "quality must be an integer"),
    ({"max_error": -1}, InputError, "max_error must be a whole number"),
    ({"psnr": 45, "quality": 4}, InputError, "psnr chooses the quality"),
    ({"psnr": 5}, InputError, "psnr must be a number of decibels"),
    ({"metric": "rgb"}, InputError, "metric must be '10k' or 'full'"),
    ({"model": "tec-hp", "max_error": 2}, InputError, "max_error needs a model that decodes exactly"),
    ({"model": "tec-fp", "psnr": 40}, InputError, "psnr needs a model that decodes exactly"),
    ({"batch": 0}, InputError, "batch must be a whole number of at least 1"),
    ({"device": 0}, InputError, "device must be a torch device name"),
])
def test_every_bad_setting_is_refused_by_the_one_check(kwargs, error, match):
    with pytest.raises(error, match=match):
        Settings.make(**kwargs)


def test_settings_are_frozen_and_checked_on_replace():
    s = Settings.make(quality=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.quality = 5
    with pytest.raises(InputError, match="quality must be"):
        dataclasses.replace(s, quality=99)
    assert s.run_time(batch=2, device="cpu") == s  # run-time fields never change the bytes: not compared
    assert Settings(model="tec-hx", quality=0, max_error=0).qualities == (0,)  # quality 0: the residual layer alone


@pytest.mark.parametrize(("base", "rule", "expected"), [
    ({"quality": 4}, {"max_error": 0}, {"model": "tec-hx", "max_error": 0}),
    ({"quality": 4}, {"model": "tec-pc"}, {"model": "tec-pc", "quality": 4}),
    ({"max_error": 4}, {"quality": 2}, {"model": "tec-hx", "quality": 2, "max_error": 4}),
    ({"psnr": 40.0}, {"max_error": 0}, {"model": "tec-hx", "max_error": 0}),
    ({"psnr": 40.0}, {"quality": 5}, {"model": "tec-hx", "quality": 5}),
    ({"model": "tec-pc", "quality": 3}, {"max_error": 1}, {"model": "tec-pc", "max_error": 1}),
    ({"quality": 4}, {"chunks": (1, 8, 8)}, {"model": "tec-hx", "quality": 4}),
])
def test_a_rule_over_settings(base, rule, expected):
    assert Settings.make(**base).under(rule).recorded() == expected


def test_the_same_settings_reach_the_header_from_every_entry_point(tmp_path):
    """encode, the two zarr codecs and xarray2tec record what the one settings type resolved."""
    cube = tcube.data.load_sample_cube()[:1, :, :32, :32]
    h = tcube.info(tcube.encode(cube, max_error=3, quality=2))
    assert (h["model"], h["quality"], h["max_error"]) == ("tec-hx", 2, 3.0)
    for codec in (TecCodec(max_error=3, quality=2), TecZarrCodec(max_error=3, quality=2)):
        assert codec.settings == Settings.make(max_error=3, quality=2)
        assert (codec.model, codec.quality, codec.max_error) == ("tec-hx", 2, 3)
    ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(tcube.bands.L2A_BANDS)})
    store = MemoryStore()
    tcube.xarray2tec(ds, store, max_error=3, quality=2)  # the quality of the base is kept, not dropped
    [name] = stacks_in(store)
    assert zarr.open_array(store, path=name).serializer.settings == Settings.make(max_error=3, quality=2)


def test_no_second_default_in_the_package():
    """Defaults live in tcube.defaults and are applied by tcube.settings; nothing else spells them."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("defaults.py", "settings.py"):
            continue
        text = path.read_text()
        for pattern in (r"quality\s*(?::\s*int\s*)?=\s*8\b", r"model\s*(?::\s*str\s*)?=\s*\"tec-hx\"",
                        r"(?<!defaults\.)BOUNDED_QUALITIES\b", r"def resolve_model", r"def check_settings"):
            offenders += [f"{path.relative_to(PACKAGE)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders


def test_decode_batch_checks_its_run_time_settings():
    blob = tcube.encode(np.full((1, 12, 16, 16), 900, np.uint16), model="tec-fp", quality=2)
    with pytest.raises(InputError, match="batch must be"):
        tcube.decode(blob, batch=0)
