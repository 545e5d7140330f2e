"""``hf:`` backend: Hugging Face transformers vision-language models, and text-only chat LLMs.

Names (everything after ``hf:`` reaches :func:`load_hf`):

* ``hf:ORG/MODEL`` a hub model id, e.g. ``hf:HuggingFaceTB/SmolVLM-256M-Instruct`` (Idefics3),
  ``hf:Qwen/Qwen2-VL-2B-Instruct``, ``hf:llava-hf/llava-1.5-7b-hf``; fetched once into the
  Hugging Face cache (``HF_HUB_OFFLINE=1`` uses the cache only);
* ``hf:/path/to/folder`` a local folder written by ``save_pretrained`` (``config.json``, weights,
  tokenizer or processor files and a chat template);
* options after ``#``, comma-separated: ``device=cpu|cuda|cuda:1|mps`` (default ``SKYLENS_DEVICE``,
  else ``cpu``) and ``dtype=float32|bfloat16|float16`` (default float32 on CPU, the checkpoint's own
  on an accelerator), e.g. ``hf:Qwen/Qwen2-VL-2B-Instruct#device=cuda,dtype=bfloat16``.

A model whose type transformers maps to ``AutoModelForImageTextToText`` loads as a
:class:`HFVisionLanguageModel` (``Captioner``, ``Answerer``, ``TextGenerator``); one it maps to
``AutoModelForCausalLM`` only loads as a text-only :class:`HFChatModel` (``TextGenerator``), and asking
it about an image raises ``CapabilityError``. Every prompt goes through the model's own chat template
(a model without one is refused at load: its prompt format would be a guess). Generation is greedy,
or beam search with ``beam`` beams for captions; ``temperature > 0`` samples.

``SKYLENS_THREADS`` sets torch's CPU threads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from skylens._lazy import lazy_import
from skylens.errors import ModelError
from skylens.models.base import Answerer, Captioner, ModelCard, TextGenerator, register_backend
from skylens.models.messages import (
    ANSWER_SUFFIX,
    CAPTION_PROMPT,
    answer_from_reply,
    check_image,
    image_message,
    normalize_messages,
    text_only,
)

OPTIONS = ("device", "dtype")
DTYPES = ("float32", "bfloat16", "float16")


def parse_name(rest: str) -> tuple[str, dict[str, str]]:
    """``SOURCE#key=value,...`` -> (source, options); ``ModelError`` on an unknown option."""
    source, _, fragment = rest.strip().partition("#")
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in fragment.replace("&", ",").split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in OPTIONS or not value:
            raise ModelError(
                f"hf:{rest}: bad option '{item}' (options: device=cpu|cuda, dtype={'|'.join(DTYPES)})"
            )
        options[key] = value
    if options.get("dtype", "float32") not in DTYPES:
        raise ModelError(f"hf:{rest}: dtype must be one of {', '.join(DTYPES)}")
    if not source:
        raise ModelError(
            "hf: needs a model: hf:ORG/MODEL (hub id) or hf:/path/to/folder, "
            "e.g. hf:HuggingFaceTB/SmolVLM-256M-Instruct"
        )
    return source, options


def resolve_source(source: str) -> str:
    """A local model folder (checked) or a hub id (passed on); ``ModelError`` naming the path."""
    path = Path(source).expanduser()
    local = path.exists() or source.startswith(("/", ".", "~")) or source.count("/") > 1
    if not local:
        return source
    if not path.exists():
        raise ModelError(f"{path}: model folder not found (hf: wants a hub id or a local folder)")
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise ModelError(
            f"{path}: not a transformers model folder (no config.json); give the folder that "
            "save_pretrained wrote, or a hub id such as HuggingFaceTB/SmolVLM-256M-Instruct"
        )
    return str(path.resolve())


class HFChatModel(TextGenerator):
    """A transformers chat model; text only unless it is a :class:`HFVisionLanguageModel`."""

    def __init__(self, card: ModelCard, model, tokenizer, device: str) -> None:
        import torch

        self.card, self.model, self.tokenizer, self.device = card, model, tokenizer, device
        self._torch = torch

    def prepare_inputs(self, messages: Sequence[dict]):
        """``messages`` through the chat template -> tokenised model inputs on the model's device."""
        msgs = text_only(normalize_messages(messages), self.name)
        prompt = self.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=False
        )
        # the template already wrote any BOS token; the tokenizer must not add a second one
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        return inputs.to(self.device)

    def _generation_kwargs(self, max_tokens: int, temperature: float, beam: int) -> dict:
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        kwargs: dict = {"max_new_tokens": int(max_tokens), "num_beams": max(1, int(beam))}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        tok = getattr(self.tokenizer, "tokenizer", self.tokenizer)
        if getattr(self.model.generation_config, "pad_token_id", None) is None:
            kwargs["pad_token_id"] = (
                tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            )
        return kwargs

    def _run_generate(self, inputs, kwargs: dict):
        try:
            with self._torch.inference_mode():
                return self.model.generate(**inputs, **kwargs)
        except Exception as exc:  # noqa: BLE001 - model code fails in many ways; name the model
            raise ModelError(
                f"{self.name}: generation failed ({type(exc).__name__}: {exc})"
            ) from exc

    def _generate(self, inputs, *, max_tokens: int, temperature: float = 0.0, beam: int = 1) -> str:
        out = self._run_generate(inputs, self._generation_kwargs(max_tokens, temperature, beam))
        new = out[0, inputs["input_ids"].shape[1] :]  # only the reply, not the prompt
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> str:
        """The assistant's reply to ``messages`` (see :mod:`skylens.models.messages`).

        Args:
            messages: chat turns; images only for vision-language models.
            max_tokens: new tokens at most (the reply stops earlier at the end-of-turn token).
            temperature: 0 for greedy decoding, above 0 to sample.
        """
        return self._generate(
            self.prepare_inputs(messages), max_tokens=max_tokens, temperature=temperature
        )

    def stream_generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        """Yield the reply's text pieces as they are decoded (generation runs in a thread)."""
        import threading

        from transformers import TextIteratorStreamer

        inputs = self.prepare_inputs(messages)
        kwargs = self._generation_kwargs(max_tokens, temperature, beam=1)
        tok = getattr(self.tokenizer, "tokenizer", self.tokenizer)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._run_generate(inputs, {**kwargs, "streamer": streamer})
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()
        if failure:
            raise failure[0]


class HFVisionLanguageModel(HFChatModel, Captioner, Answerer):
    """A transformers image-text-to-text model with its processor (tokenizer + image processor)."""

    #: new tokens at most for ``answer``: VQA answers are a word or a short phrase
    answer_max_tokens: int = 32

    def prepare_inputs(self, messages: Sequence[dict]):
        """``messages`` through the processor's chat template -> model inputs, with the pixels."""
        from PIL import Image

        msgs = []
        for m in normalize_messages(messages):
            parts = [
                {"type": "image", "image": Image.fromarray(p["image"])}
                if p["type"] == "image"
                else p
                for p in m["content"]
            ]
            msgs.append({"role": m["role"], "content": parts})
        inputs = self.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        dtype = self.model.dtype
        return {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
        }

    def caption_images(
        self, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        """One caption per RGB uint8 image, ``beam`` beams, at most ``max_tokens`` new tokens each."""
        arrays = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        return [
            self._generate(
                self.prepare_inputs(image_message(im, CAPTION_PROMPT)),
                max_tokens=max_tokens,
                beam=beam,
            )
            for im in arrays
        ]

    def answer(self, image: np.ndarray, question: str):
        """Answer ``question`` about an RGB uint8 image -> ``skylens.models.answerer.Answer``."""
        from skylens.models.answerer import check_question

        q = check_question(question)
        msgs = image_message(check_image(image), q + ANSWER_SUFFIX)
        reply = self.generate(msgs, max_tokens=self.answer_max_tokens)
        return answer_from_reply(q, reply, self.name)


def _digest(path_or_id: str, config) -> str:
    """Short digest of the config and, for a local folder, the weight files' names and sizes."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    folder = Path(path_or_id)
    if folder.is_dir():
        for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


@register_backend(
    "hf",
    "transformers vision-language models (caption, ask) and chat LLMs (pip install 'skylens[hf]')",
    "hf:HuggingFaceTB/SmolVLM-256M-Instruct",
)
def load_hf(rest: str) -> HFChatModel:
    """Load ``hf:<rest>`` (see the module docstring)."""
    transformers = lazy_import("transformers", "hf")
    import torch
    from transformers.models.auto import modeling_auto

    source, options = parse_name(rest)
    src = resolve_source(source)
    device = options.get("device") or os.environ.get("SKYLENS_DEVICE") or "cpu"
    if int(os.environ.get("SKYLENS_THREADS", 0)) > 0:
        torch.set_num_threads(int(os.environ["SKYLENS_THREADS"]))
    where = src if os.path.isdir(src) else f"hub model '{src}'"
    try:
        config = transformers.AutoConfig.from_pretrained(src)
    except Exception as exc:  # noqa: BLE001 - hub, network and parse errors have many types
        raise ModelError(
            f"hf:{source}: cannot read the model config of {where} ({type(exc).__name__}: {exc}); "
            "a hub id needs the network once (or HF_HUB_OFFLINE=1 with a filled cache)"
        ) from None
    model_type = getattr(config, "model_type", "")
    if model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        auto_model, auto_pre, cls = (
            transformers.AutoModelForImageTextToText,
            transformers.AutoProcessor,
            HFVisionLanguageModel,
        )
    elif model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        auto_model, auto_pre, cls = (
            transformers.AutoModelForCausalLM,
            transformers.AutoTokenizer,
            HFChatModel,
        )
    else:
        raise ModelError(
            f"hf:{source}: model type '{model_type}' is neither an image-text-to-text "
            "(vision-language) nor a causal language model in transformers "
            f"{transformers.__version__}"
        )
    dtype = options.get("dtype") or ("float32" if device == "cpu" else "auto")
    try:
        pre = auto_pre.from_pretrained(src)
        model = auto_model.from_pretrained(
            src, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
        )
        model = model.to(device).eval()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"hf:{source}: cannot load {where} ({type(exc).__name__}: {exc})"
        ) from None
    template = getattr(pre, "chat_template", None) or getattr(
        getattr(pre, "tokenizer", None), "chat_template", None
    )
    if not template:
        raise ModelError(
            f"hf:{source}: {where} has no chat template, so its prompt format is unknown; "
            "use an instruction-tuned (chat) model or add chat_template.jinja to the folder"
        )
    card = ModelCard(
        name=f"hf:{rest.strip()}",
        version=_digest(src, config),
        image_size=0,  # not an image-text encoder
        embed_dim=0,
        source=src if os.path.isdir(src) else f"https://huggingface.co/{src}",
        citation="cite the model's own paper (see its model card)",
        extra={
            "model_type": model_type,
            "architecture": type(model).__name__,
            "vision": cls is HFVisionLanguageModel,
            "device": device,
            "dtype": str(model.dtype).removeprefix("torch."),
            "transformers": transformers.__version__,
        },
    )
    return cls(card, model, pre, device)
