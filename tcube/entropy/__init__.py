"""Entropy models (training-time likelihoods) and the table-driven range coder."""

from tcube.entropy.coder import decode_symbols, encode_symbols
from tcube.entropy.factorized import FactorizedDensity
from tcube.entropy.gaussian import GaussianConditional
from tcube.entropy.tables import TableSet

__all__ = ["FactorizedDensity", "GaussianConditional", "TableSet", "decode_symbols", "encode_symbols"]
