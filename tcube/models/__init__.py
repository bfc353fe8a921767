"""Learned codecs and their registry."""

from tcube.defaults import DEFAULT_MODEL
from tcube.models.base import CodecConfig, FramePayload, LearnedCodec
from tcube.models.registry import build_model, exact_models, has_weights, list_models, load_model, model_digest

__all__ = ["DEFAULT_MODEL", "CodecConfig", "FramePayload", "LearnedCodec", "build_model", "exact_models",
           "has_weights", "list_models", "load_model", "model_digest"]
