"""Encoder and decoder must derive identical entropy-coder parameters on any thread count/device."""

import numpy as np
import pytest
import torch

import tcube
from tcube.bitstream import unpack
from tcube.entropy import decode_symbols
from tcube.models import load_model


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _decoded_symbols(blob: bytes) -> list[np.ndarray]:
    """Symbols of every stream, decoded the way tcube.decode does (checks the symbol CRC too)."""
    c = unpack(blob)
    model = load_model(c.header["model"])
    h, w = c.header["shape"][-2:]
    shapes = model.latent_shapes(*model.padded_size(h, w))
    q = model.quality_index(c.header["quality"], 1)
    out = []
    for f in c.frames:
        syms = {}
        for name in model.stream_names:
            idx = model.table_index(name, syms, q, shapes[name]).numpy()
            syms[name] = torch.from_numpy(decode_symbols(f[name], idx[0], model.tables[name]).reshape(1, *shapes[name]))
            out.append(syms[name].numpy())
    return out


@pytest.mark.parametrize("model", ["tec-fp", "tec-hp"])
def test_decoded_symbols_do_not_depend_on_thread_count(model, sample, restore_threads):
    torch.set_num_threads(2)
    blob = tcube.encode(sample[:2, :, :80, :96], model=model, quality=10)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append((_decoded_symbols(blob), tcube.decode(blob)))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1)


def test_hyper_parameters_are_bit_exact_across_threads_and_batching(restore_threads):
    model = load_model("tec-hp", "cpu")
    gen = torch.Generator().manual_seed(0)
    z = torch.randint(-40, 40, (5, model.config.nh, 7, 9), generator=gen)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        whole = model.params_exact(z, (25, 33))
        parts = [model.params_exact(z[i: i + 1], (25, 33)) for i in range(len(z))]
        results.append(whole)
        for i, (idx, mean) in enumerate(parts):
            assert torch.equal(idx[0], whole[0][i]) and torch.equal(mean[0], whole[1][i])
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_encoded_blob_decodes_on_cpu(sample):  # pragma: no cover - GPU machines only
    blob = tcube.encode(sample[:2, :, :64, :64], model="tec-hp", quality=8, device="cuda")
    out = tcube.decode(blob, device="cpu")
    np.testing.assert_allclose(out, tcube.decode(blob, device="cuda"), atol=2)


def test_temporal_model_sequences(sample):
    """tec-tt: any T, odd sizes, the first date codes alone, decoding is thread-independent."""
    import tcube

    cube = np.ascontiguousarray(sample[:, :, 3:40, 5:62])
    one = tcube.decode(tcube.encode(cube[:1], model="tec-tt", quality=9))
    blob = tcube.encode(cube, model="tec-tt", quality=9)
    assert np.abs(one.astype(int) - tcube.decode(blob)[:1]).max() <= 1  # same symbols; synthesis batch of 1 vs 3
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = tcube.decode(blob)
        torch.set_num_threads(2)
        double = tcube.decode(blob)  # symbols are exact (CRC checked); the float synthesis may move 1 unit
    finally:
        torch.set_num_threads(threads)
    assert single.shape == cube.shape and np.abs(single.astype(int) - double).max() <= 1
    hp = tcube.encode(cube, model="tec-hp", quality=9)
    assert len(blob) < len(hp)  # the previous dates help
    blobs = tcube.api.encode_batch([cube[:2], cube[1:]], model="tec-tt", quality=5)
    assert [b.shape for b in tcube.api.decode_batch(blobs)] == [(2, 12, 37, 57), (3, 12, 37, 57)]
