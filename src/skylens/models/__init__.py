"""Models: capability protocols, the name registry and the backends."""

from skylens.models.base import (
    Answerer,
    Captioner,
    ImageTextEncoder,
    Model,
    ModelCard,
    TextGenerator,
    available,
    l2_normalize,
    load,
    register_backend,
)

__all__ = [
    "Answerer",
    "Captioner",
    "TextGenerator",
    "ImageTextEncoder",
    "Model",
    "ModelCard",
    "available",
    "l2_normalize",
    "load",
    "register_backend",
]
