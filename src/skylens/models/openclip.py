"""``openclip:`` backend: any open_clip model, e.g. the remote-sensing CLIPs.

Names:
    ``openclip:ARCH:CHECKPOINT``  a local checkpoint, e.g. RemoteCLIP (Liu et al. 2024)
        ``openclip:ViT-B-32:/ckpt/RemoteCLIP-ViT-B-32.pt``, GeoRSCLIP (Zhang et al. 2024, RS5M)
        ``openclip:ViT-B-32:/ckpt/RS5M_ViT-B-32.pt``, SkyCLIP (Wang et al. 2024, SkyScript)
        ``openclip:ViT-B-32:/ckpt/SkyCLIP_ViT_B32/epoch_20.pt``;
    ``openclip:ARCH:TAG``  an open_clip pretrained tag (downloaded by open_clip);
    ``openclip:hf-hub:ORG/REPO``  a Hugging Face hub model in open_clip format;
    ``openclip:/path/config.json:CHECKPOINT``  a custom architecture config (its file stem names it).

Checkpoints may be plain state dicts (RemoteCLIP, GeoRSCLIP) or open_clip training checkpoints
(``{"state_dict": ...}`` with ``module.`` prefixes, SkyCLIP). Weights load with ``strict=True``:
a checkpoint that does not fit the architecture is refused with the offending keys named, never
run with silently random layers (open_clip issue #771).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skylens._lazy import lazy_import
from skylens.errors import ModelError
from skylens.models.base import ImageTextEncoder, ModelCard, l2_normalize, register_backend

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def read_state_dict(path: Path) -> dict:
    """State dict from a checkpoint file, unwrapping ``state_dict`` and ``module.`` prefixes."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle/zip errors come in many types
            raise ModelError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: checkpoint holds no state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


class OpenClipEncoder(ImageTextEncoder):
    """An open_clip model with its own preprocessing and tokenizer."""

    def __init__(self, name: str, model, preprocess_cfg: dict, tokenizer, version: str, source: str) -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        size = preprocess_cfg.get("size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        self.mean = np.array(preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
        self.std = np.array(preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)
        with torch.no_grad():
            dim = int(self.model.encode_text(tokenizer(["x"]).to(self.device)).shape[-1])
        self.card = ModelCard(
            name=name,
            version=version,
            image_size=int(size),
            embed_dim=dim,
            mean=tuple(float(m) for m in self.mean),
            std=tuple(float(s) for s in self.std),
            source=source,
            citation="open_clip (Ilharco et al. 2021); see the checkpoint's own paper",
        )

    def _pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize the shorter side to image_size, centre-crop, normalise (open_clip's eval transform)."""
        from PIL import Image

        s = self.card.image_size
        out = np.empty((len(images), 3, s, s), np.float32)
        for i, im in enumerate(images):
            arr = np.asarray(im)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise ModelError(f"image {i}: expected HxWx3 uint8 RGB, got shape {arr.shape} dtype {arr.dtype}")
            pil = Image.fromarray(arr)
            scale = s / min(pil.size)
            pil = pil.resize((max(s, round(pil.width * scale)), max(s, round(pil.height * scale))), Image.BICUBIC)
            left, top = (pil.width - s) // 2, (pil.height - s) // 2
            crop = np.asarray(pil.crop((left, top, left + s, top + s)), np.float32) / 255.0
            out[i] = ((crop - self.mean) / self.std).transpose(2, 0, 1)
        return out

    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        chunks = []
        with self.torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x = self.torch.from_numpy(self._pixels(images[i : i + batch_size])).to(self.device)
                chunks.append(self.model.encode_image(x).float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        chunks = []
        with self.torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
                chunks.append(self.model.encode_text(tokens).float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))


def _strict_load(model, state: dict, arch: str, path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise ModelError(
            f"{path}: checkpoint does not fit architecture '{arch}': " + "; ".join(parts)
            + ". Check that ARCH names the model the checkpoint was trained as."
        )
    model.load_state_dict(state, strict=True)


@register_backend(
    "openclip",
    "open_clip models: RemoteCLIP, GeoRSCLIP, SkyCLIP checkpoints, hub models (pip install 'skylens[openclip]')",
    "openclip:ViT-B-32:/path/RemoteCLIP-ViT-B-32.pt",
)
def load_openclip(rest: str) -> OpenClipEncoder:
    """Factory for ``openclip:...`` names (see the module docstring)."""
    open_clip = lazy_import("open_clip", "openclip")
    name = f"openclip:{rest}"
    if rest.startswith("hf-hub:"):
        model, _, _ = open_clip.create_model_and_transforms(rest)
        return OpenClipEncoder(name, model, model.visual.preprocess_cfg, open_clip.get_tokenizer(rest), rest, rest)
    if rest.startswith("/") or rest.startswith("."):
        # config path first: split at the first ':' after a '.json'
        head, sep, tail = rest.partition(".json:")
        arch, weights = (head + ".json", tail) if sep else (rest, "")
    else:
        arch, _, weights = rest.partition(":")
    if not arch:
        raise ModelError("openclip name needs an architecture: openclip:ARCH:CHECKPOINT (e.g. ViT-B-32)")
    if arch.endswith(".json"):
        cfg = Path(arch)
        if not cfg.is_file():
            raise ModelError(f"{cfg}: model config not found")
        open_clip.add_model_config(str(cfg))
        arch = cfg.stem
    if arch not in open_clip.list_models():
        raise ModelError(f"unknown open_clip architecture '{arch}' (see open_clip.list_models())")
    path = Path(os.path.expanduser(weights)) if weights else None
    if path is not None and (path.suffix in CHECKPOINT_SUFFIXES or os.sep in weights):
        if not path.is_file():
            raise ModelError(f"{path}: checkpoint not found (openclip:{arch}:CHECKPOINT wants a local file)")
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
        _strict_load(model, read_state_dict(path), arch, path)
        version = f"{arch}-{_digest(path)}"
        source = str(path)
    else:
        tag = weights or None  # an open_clip pretrained tag, downloaded by open_clip
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=tag)
        version = f"{arch}-{tag or 'random-init'}"
        source = f"open_clip {arch} {tag or '(random init)'}"
    return OpenClipEncoder(name, model, model.visual.preprocess_cfg, open_clip.get_tokenizer(arch), version, source)
