"""Models: capability protocols, the name registry and the backends."""

from skylens.models.base import (
    ImageTextEncoder,
    Model,
    ModelCard,
    available,
    l2_normalize,
    load,
    register_backend,
)

__all__ = [
    "ImageTextEncoder",
    "Model",
    "ModelCard",
    "available",
    "l2_normalize",
    "load",
    "register_backend",
]
