"""The models: one interface (:class:`Model`), one module per architecture, and their registry.

A new model is a module here (a :class:`Model` subclass with its config type) plus its weights,
registered in :data:`tcube.models.registry.ARCHITECTURES` and ``MODELS``.
"""

from tcube.defaults import DEFAULT_MODEL
from tcube.models.base import FramePayload, Model, ModelConfig
from tcube.models.registry import build_model, exact_models, has_weights, list_models, load_model, model_digest

__all__ = ["DEFAULT_MODEL", "FramePayload", "Model", "ModelConfig", "build_model", "exact_models", "has_weights",
           "list_models", "load_model", "model_digest"]
