"""Classical codecs to compare against (need the optional ``imagecodecs`` dependency)."""

from tcube.baselines.jpeg2000 import J2K_MODES, j2k_decode, j2k_encode

__all__ = ["J2K_MODES", "j2k_decode", "j2k_encode"]
