import numpy as np
import pytest
import torch

from tcube.entropy import FactorizedDensity, GaussianConditional, TableSet, decode_symbols, encode_symbols
from tcube.errors import CorruptBlobError
from tcube.models.layers import IntegerConv2d


def test_coder_round_trip_with_escapes():
    rng = np.random.default_rng(0)
    tables = TableSet.from_pmfs([np.array([0.1, 0.8, 0.1]), np.ones(9) / 9], offsets=[-1, -4], escape=[1e-3, 1e-3])
    values = rng.integers(-5, 6, 2000)
    values[:3] = [2**20, -(2**20), 12345]
    idx = rng.integers(0, 2, 2000)
    data = encode_symbols(values, idx, tables)
    np.testing.assert_array_equal(decode_symbols(data, idx, tables), values)


def test_coder_empty():
    tables = TableSet.from_pmfs([np.array([0.5, 0.5])], offsets=[0])
    empty = np.zeros(0, dtype=np.int64)
    assert decode_symbols(encode_symbols(empty, empty, tables), empty, tables).size == 0


def test_coder_rate_close_to_entropy():
    rng = np.random.default_rng(1)
    p = np.array([0.05, 0.15, 0.6, 0.15, 0.05])
    tables = TableSet.from_pmfs([p], offsets=[-2])
    values = rng.choice(5, size=100_000, p=p) - 2
    data = encode_symbols(values, np.zeros_like(values), tables)
    ideal = -np.log2(p[values + 2]).sum() / 8  # bytes of an ideal coder for this message
    assert 0.999 * ideal < len(data) < 1.01 * ideal + 16


def test_decoder_rejects_odd_length():
    tables = TableSet.from_pmfs([np.array([0.5, 0.5])], offsets=[0])
    with pytest.raises(CorruptBlobError):
        decode_symbols(b"abc", np.zeros(3, dtype=np.int64), tables)


def test_factorized_likelihoods_sum_to_one():
    d = FactorizedDensity(3)
    k = torch.arange(-300, 301, dtype=torch.float32).repeat(3, 1)
    total = d.bin_likelihood(k - 0.5, k + 0.5).sum(1)
    torch.testing.assert_close(total, torch.ones(3), atol=1e-3, rtol=0)


def test_factorized_tables_per_gain():
    d = FactorizedDensity(2)
    ts = d.tables(np.array([[1.0, 1.0], [4.0, 4.0]]))
    assert ts.n_tables == 4
    for t in range(4):
        assert ts.table(t).sum() == pytest.approx(1.0, abs=1e-5)
    assert ts.length[2] > ts.length[0]  # a larger gain spreads the same density over more symbols


def test_gaussian_tables_match_likelihood():
    gc = GaussianConditional(levels=16)
    ts = gc.tables()
    i = 9
    lo, hi = ts.support(i)
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    lik = gc.likelihood(k, torch.zeros_like(k), gc.scale(torch.tensor(float(i), dtype=torch.float64)))
    np.testing.assert_allclose(ts.table(i)[:-1], lik.numpy(), atol=1e-6)


def test_table_state_dict_round_trip():
    ts = GaussianConditional(levels=4).tables()
    back = TableSet.from_state_dict(ts.state_dict("x"), "x")
    np.testing.assert_array_equal(back.pmf, ts.pmf)
    np.testing.assert_array_equal(back.offset, ts.offset)


def test_integer_conv_exact_matches_simulation():
    torch.manual_seed(0)
    layer = IntegerConv2d(4, 6, in_frac=0, out_frac=4)
    x = torch.randint(-20, 20, (2, 4, 5, 7)).float()
    sim = layer(x)
    exact = layer.forward_exact(x.double()) / 2**4
    torch.testing.assert_close(sim.double(), exact, atol=1 / 16 + 1e-6, rtol=0)
    assert torch.equal(exact, torch.floor(exact * 16) / 16)


def test_exp_golomb_round_trips_and_refuses_damage():
    from tcube.entropy.golomb import BitReader, BitWriter
    from tcube.errors import CorruptBlobError

    values = [0, 1, -1, 7, -300, 1 << 20, -(1 << 33)]
    w = BitWriter()
    w.signed(values, 3)
    w.unsigned([0, 5, 4095])
    w.bits(9, 4)
    data = w.getvalue()
    r = BitReader(data)
    assert r.signed(len(values), 3) == values and r.unsigned(3) == [0, 5, 4095] and r.bits(4) == 9
    r.check_end()
    with pytest.raises(CorruptBlobError, match="ends"):
        BitReader(data[:3]).signed(len(values), 3)
    with pytest.raises(CorruptBlobError, match="long code"):
        BitReader(bytes(8)).unsigned(1)
    longer = BitReader(data + b"\x80")
    longer.signed(len(values), 3), longer.unsigned(3), longer.bits(4)
    with pytest.raises(CorruptBlobError, match="left over"):
        longer.check_end()
