"""Capability protocols and the model-name registry.

A model is a name (``../shared/STYLE.md`` #3): ``skylens.load("default")``,
``load("openclip:ViT-B-32:/path/RemoteCLIP-ViT-B-32.pt")``. Each backend registers a *scheme* (the
part before the first ``:``) with a factory that receives the rest of the name. Tests register a
deterministic fake backend the same way (``tests/conftest.py``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from skylens.errors import CapabilityError, ModelError


@dataclass(frozen=True)
class ModelCard:
    """Metadata that travels with weights and is checked when they load.

    Attributes:
        name: registry name the model answers to (``default``, ``openclip:ViT-B-32:...``).
        version: short digest of the weights; an index refuses queries from another version.
        image_size: square input side in pixels the image tower expects.
        embed_dim: size of the joint image-text embedding.
        bands: number of input channels (3 = RGB).
        mean, std: per-channel normalisation applied to [0, 1] pixels.
        source, citation: where the weights come from and what to cite.
    """

    name: str
    version: str
    image_size: int
    embed_dim: int
    bands: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    source: str = ""
    citation: str = ""
    extra: dict = field(default_factory=dict)


#: Prompt templates for zero-shot classification of overhead imagery (CLIP-style ensemble).
RS_TEMPLATES: tuple[str, ...] = (
    "an aerial image of {}.",
    "a satellite photo of {}.",
    "{} seen from above.",
    "a remote sensing image of {}.",
    "there is {} in this picture.",
)


class Model(ABC):
    """Anything ``skylens.load`` returns. Capabilities are the protocols below."""

    card: ModelCard

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def require(self, capability: type) -> None:
        """Raise ``CapabilityError`` unless this model implements ``capability``."""
        if not isinstance(self, capability):
            raise CapabilityError(
                f"model '{self.name}' cannot do {capability.__name__}; "
                f"see `skylens models` for models that can"
            )


class ImageTextEncoder(Model):
    """Embeds images and texts into one space; outputs are L2-normalised float32 rows."""

    @property
    def image_size(self) -> int:
        return self.card.image_size

    @property
    def embed_dim(self) -> int:
        return self.card.embed_dim

    @abstractmethod
    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed RGB uint8 images (each HxWx3, any size; resized internally) -> (N, embed_dim)."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> (N, embed_dim)."""

    def text_classifier(
        self, class_names: Sequence[str], templates: Sequence[str] = RS_TEMPLATES
    ) -> np.ndarray:
        """Zero-shot weights: the normalised mean of each class's prompt embeddings -> (C, D).

        Backends with extra zero-shot knowledge (the default's ImageNet prior) override this.
        """
        prompts = [t.format(c) for c in class_names for t in templates]
        emb = self.encode_texts(prompts).reshape(len(class_names), len(templates), -1).mean(1)
        return _l2(emb)


class Captioner(Model):
    """Describes images in words."""

    @abstractmethod
    def caption_images(
        self, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        """One caption per RGB uint8 image (HxWx3, any size)."""


class Answerer(Model):
    """Answers questions about one image.

    ``answer`` returns a ``skylens.models.answerer.Answer``; a question outside the model's reach gets
    ``supported=False``, the text "cannot answer with this model" and the reason, never a guess.
    """

    @abstractmethod
    def answer(self, image: np.ndarray, question: str):
        """Answer ``question`` about an RGB uint8 image (HxWx3)."""


class TextGenerator(Model):
    """A language model: completes chat messages (``[{"role": ..., "content": ...}]``)."""

    @abstractmethod
    def generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> str:
        """The assistant's reply to ``messages``."""


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


l2_normalize = _l2

Factory = Callable[[str], Model]


@dataclass(frozen=True)
class Backend:
    scheme: str
    factory: Factory
    description: str
    example: str


_BACKENDS: dict[str, Backend] = {}
_LOADED: dict[str, Model] = {}
_LOCK = threading.Lock()


def register_backend(
    scheme: str, description: str, example: str = ""
) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(rest_of_name) -> Model`` under ``scheme``."""

    def deco(factory: Factory) -> Factory:
        _BACKENDS[scheme] = Backend(scheme, factory, description, example or scheme)
        return factory

    return deco


def unregister_backend(scheme: str) -> None:
    _BACKENDS.pop(scheme, None)
    for key in [k for k in _LOADED if k.split(":", 1)[0] == scheme]:
        _LOADED.pop(key)


def available() -> list[Backend]:
    """Registered backends (scheme, description, example name)."""
    _ensure_builtin_backends()
    return sorted(_BACKENDS.values(), key=lambda b: b.scheme)


def load(name: str = "default", *, cache: bool = True) -> Model:
    """Resolve a model name to a loaded model (cached per process).

    Args:
        name: ``default``, ``openclip:ARCH:CHECKPOINT`` or any other registered scheme.
        cache: reuse an already loaded model of the same name.
    """
    _ensure_builtin_backends()
    name = name.strip()
    scheme, _, rest = name.partition(":")
    backend = _BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(sorted(_BACKENDS)) or "none"
        raise ModelError(f"unknown model '{name}': no backend '{scheme}' (known: {known})")
    with _LOCK:
        if cache and name in _LOADED:
            return _LOADED[name]
        model = backend.factory(rest)
        if cache:
            _LOADED[name] = model
        return model


#: Modules that register the built-in schemes (each imports its heavy libraries lazily).
BUILTIN_BACKEND_MODULES = (
    "skylens.models.default",
    "skylens.models.openclip",
    "skylens.models.hf",
    "skylens.models.openai_compat",
    "skylens.models.gguf",
)


def _ensure_builtin_backends() -> None:
    # Importing the backend modules registers them; they import heavy libraries lazily.
    import importlib

    for module in BUILTIN_BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a backend module missing from this install
            if exc.name != module:
                raise
