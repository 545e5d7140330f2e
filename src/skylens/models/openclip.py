"""``openclip:`` backend: any open_clip model, notably the remote-sensing CLIPs.

Names (everything after ``openclip:`` reaches :func:`load_openclip`):

* ``openclip:ARCH:CHECKPOINT``: an open_clip architecture and a local ``.pt``/``.pth``/``.bin``/
  ``.safetensors`` file, e.g. RemoteCLIP (Liu et al. 2024, arXiv:2306.11029)
  ``openclip:ViT-B-32:/ckpt/RemoteCLIP-ViT-B-32.pt``, GeoRSCLIP (Zhang et al. 2024, RS5M,
  arXiv:2306.11300) ``openclip:ViT-B-32:/ckpt/RS5M_ViT-B-32.pt``, SkyCLIP (Wang et al. 2024,
  SkyScript, arXiv:2312.12856) ``openclip:ViT-B-32:/ckpt/SkyCLIP_ViT_B32_top50pct/epoch_20.pt``.
* ``openclip:ARCH:hf-hub:ORG/REPO/FILE``: a checkpoint file on the Hugging Face hub, e.g.
  ``openclip:ViT-B-32:hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt``.
* ``openclip:ARCH:TAG``: an open_clip pretrained tag (``openclip:ViT-B-32:laion2b_s34b_b79k``).
* ``openclip:hf-hub:ORG/REPO[@REVISION]``: a hub repo in open_clip format (``open_clip_config.json``).
* ``ARCH=/path/config.json`` in place of ``ARCH`` names a custom architecture; ``ARCH.json`` or
  ``open_clip_config.json`` beside the checkpoint is used when ARCH is not built in.

Checkpoints may be plain state dicts (RemoteCLIP, GeoRSCLIP), open_clip training checkpoints
(``{"epoch", "state_dict": {"module.…"}}``, SkyCLIP) or GeoRSCLIP's raw ``image_backbone.``/
``text_backbone.`` layout. They load strictly: a key missing, unexpected or of another shape is
refused with the offending keys named, never run with silently random layers (open_clip issue #771).
Weights cannot tell GELU from QuickGELU: a checkpoint fine-tuned from OpenAI weights inside open_clip
may need the ``-quickgelu`` architecture (``ViT-B-32-quickgelu``); the card records which was used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skylens._lazy import lazy_import
from skylens.errors import ModelError
from skylens.models.base import ImageTextEncoder, ModelCard, l2_normalize, register_backend

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
HUB = "hf-hub:"
CITATIONS = {  # lower-case file-name fragment -> what to cite
    "remoteclip": "Liu et al. 2024, RemoteCLIP, IEEE TGRS (arXiv:2306.11029)",
    "rs5m": "Zhang et al. 2024, RS5M and GeoRSCLIP, IEEE TGRS (arXiv:2306.11300)",
    "skyclip": "Wang et al. 2024, SkyScript, AAAI (arXiv:2312.12856)",
}
#: preprocess-config keys -> the create_model_and_transforms arguments that override them
PREPROCESS_ARGS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}
_config_dir: Path | None = None  # where custom configs are registered with open_clip, per process


def read_state_dict(path: Path) -> dict:
    """Tensors of a checkpoint file, unwrapped from ``state_dict``/``model`` and ``module.``."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and safetensors errors have many types
        raise ModelError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: checkpoint holds no state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    renames = {"image_backbone.": "visual.", "text_backbone.": ""}  # GeoRSCLIP training layout
    for old, new in renames.items():
        state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
    return state


def fit_state_dict(model, state: dict, arch: str, path: object) -> dict:
    """Check ``state`` against ``model`` key by key and shape by shape; raise ``ModelError`` if not."""
    from open_clip.model import convert_to_custom_text_state_dict

    own = model.state_dict()
    if "positional_embedding" in state and "positional_embedding" not in own:
        state = convert_to_custom_text_state_dict(state)  # old CLIP layout into a custom-text model
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
    if "logit_scale" in state and "logit_scale" in own and state["logit_scale"].numel() == 1:
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])})")
    if wrong:
        shapes = (f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:4])
        problems.append(f"{len(wrong)} of another shape ({', '.join(shapes)})")
    if problems:
        raise ModelError(
            f"{path}: checkpoint does not fit open_clip architecture '{arch}': "
            + "; ".join(problems)
            + ". Name the architecture it was trained as (or give its config: ARCH=/path/config.json)."
        )
    return state


def _register_config(open_clip, name: str, cfg: dict, origin: object) -> dict:
    """Make ``cfg`` (a model config, or a hub ``{model_cfg, preprocess_cfg}``) known to open_clip as
    ``name``; return its preprocessing overrides."""
    global _config_dir
    model_cfg = cfg.get("model_cfg", cfg)
    if (
        not isinstance(model_cfg, dict)
        or not {"embed_dim", "vision_cfg", "text_cfg"} <= model_cfg.keys()
    ):
        raise ModelError(
            f"{origin}: not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)"
        )
    if not re.fullmatch(r"[\w.+-]+", name):
        raise ModelError(
            f"'{name}': a custom architecture name may hold letters, digits, '.', '+', '-', '_'"
        )
    if _config_dir is None:
        _config_dir = Path(tempfile.mkdtemp(prefix="skylens-openclip-"))
    known = open_clip.get_model_config(name)
    if known is not None and known != model_cfg and not (_config_dir / f"{name}.json").is_file():
        raise ModelError(
            f"{origin}: '{name}' is a built-in open_clip architecture; name your config otherwise"
        )
    (_config_dir / f"{name}.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(_config_dir / f"{name}.json")
    return dict(cfg.get("preprocess_cfg", {}))


def _hub_file(repo: str, filename: str, revision: str | None = None) -> Path:
    hub = lazy_import("huggingface_hub", "openclip")
    try:
        return Path(hub.hf_hub_download(repo, filename, revision=revision))
    except Exception as exc:  # noqa: BLE001 - network, auth and missing-file errors
        raise ModelError(
            f"hf-hub:{repo}: cannot fetch {filename} ({type(exc).__name__}: {exc})"
        ) from None


def _resolve(open_clip, rest: str) -> tuple[str, Path, dict, bool, str]:
    """Name -> (architecture, checkpoint file, preprocess overrides, quick_gelu, source)."""
    if rest.startswith(HUB):  # an open_clip-format hub repo: config and weights both from there
        repo, _, revision = rest[len(HUB) :].partition("@")
        cfg = json.loads(_hub_file(repo, "open_clip_config.json", revision or None).read_text())
        arch = "hf-hub-" + repo.replace("/", "--")
        preprocess = _register_config(open_clip, arch, cfg, rest)
        try:
            weights = _hub_file(repo, "open_clip_model.safetensors", revision or None)
        except ModelError:
            weights = _hub_file(repo, "open_clip_pytorch_model.bin", revision or None)
        return arch, weights, preprocess, False, f"https://huggingface.co/{repo}"
    arch, _, spec = rest.partition(":")
    arch, _, config = arch.partition("=")
    if not arch or not spec:
        raise ModelError(
            f"openclip:{rest}: expected openclip:ARCH:CHECKPOINT (e.g. openclip:ViT-B-32:/ckpt/"
            "RemoteCLIP-ViT-B-32.pt), openclip:ARCH:TAG or openclip:hf-hub:ORG/REPO"
        )
    preprocess, quick_gelu = {}, False
    if spec.startswith(HUB):
        org, name, filename = (spec[len(HUB) :].split("/", 2) + ["", ""])[:3]
        path, source = _hub_file(f"{org}/{name}", filename), f"https://huggingface.co/{org}/{name}"
    elif spec.endswith(CHECKPOINT_SUFFIXES) or "/" in spec or os.sep in spec or Path(spec).exists():
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelError(
                f"{path}: checkpoint not found (openclip:ARCH:CHECKPOINT wants a local file)"
            )
        source = str(path)
    else:
        tag_cfg = open_clip.get_pretrained_cfg(arch, spec)
        if not tag_cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise ModelError(
                f"'{spec}' is neither a checkpoint file nor a pretrained tag of '{arch}' (tags: {tags})"
            )
        try:
            path = Path(open_clip.download_pretrained(tag_cfg))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"open_clip {arch}:{spec}: download failed ({exc})") from None
        preprocess = {k: tag_cfg[k] for k in PREPROCESS_ARGS if k in tag_cfg}
        quick_gelu, source = bool(tag_cfg.get("quick_gelu")), f"open_clip pretrained {arch}:{spec}"
    beside = [path.parent / f"{arch}.json", path.parent / "open_clip_config.json"]
    config_path = Path(config).expanduser() if config else None
    if config_path is None and arch not in open_clip.list_models():
        config_path = next((p for p in beside if p.is_file()), None)
        if config_path is None:
            raise ModelError(
                f"unknown open_clip architecture '{arch}' and no {arch}.json or open_clip_config.json "
                f"beside {path}; give one as openclip:{arch}=/path/config.json:CHECKPOINT"
            )
    if config_path is not None:
        if not config_path.is_file():
            raise ModelError(f"{config_path}: model config not found")
        cfg = json.loads(config_path.read_text())
        preprocess = {**preprocess, **_register_config(open_clip, arch, cfg, config_path)}
    return arch, path, preprocess, quick_gelu, source


class OpenClipEncoder(ImageTextEncoder):
    """An open_clip model with its own eval preprocessing and tokenizer bundled."""

    def __init__(self, card: ModelCard, model, preprocess, tokenizer, device: str) -> None:
        import torch

        self.card, self.model, self.preprocess, self.tokenizer = card, model, preprocess, tokenizer
        self.device, self._torch = device, torch

    def pixels(self, images: Sequence[np.ndarray]):
        """RGB uint8 images (HxWx3, any size) -> the (N, 3, S, S) tensor open_clip's transform makes."""
        from PIL import Image

        out = []
        for i, im in enumerate(images):
            arr = np.asarray(im)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise ModelError(
                    f"image {i}: expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype "
                    f"{arr.dtype} (render rasters with skylens.imagery.to_rgb first)"
                )
            out.append(self.preprocess(Image.fromarray(arr)))
        return self._torch.stack(out)

    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Embed images -> (N, embed_dim) L2-normalised float32; ``batch_size`` images per pass."""
        chunks = [np.zeros((0, self.embed_dim), np.float32)]
        with self._torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x = self.pixels(images[i : i + batch_size]).to(self.device)
                chunks.append(self.model.encode_image(x).float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts with the model's tokenizer -> (N, embed_dim) L2-normalised float32."""
        chunks = [np.zeros((0, self.embed_dim), np.float32)]
        with self._torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
                chunks.append(self.model.encode_text(tokens).float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))


def _weights_digest(state: dict, *configs: object) -> str:
    """sha256 over tensors (by key) and configs: the same weights in another file layout agree."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    h.update(json.dumps(configs, sort_keys=True, default=str).encode())
    return h.hexdigest()


@register_backend(
    "openclip",
    "open_clip models: RemoteCLIP, GeoRSCLIP, SkyCLIP checkpoints, hub models (pip install 'skylens[openclip]')",
    "openclip:ViT-B-32:/path/RemoteCLIP-ViT-B-32.pt",
)
def load_openclip(rest: str, device: str | None = None) -> OpenClipEncoder:
    """Load ``openclip:<rest>`` (see the module docstring); CUDA when available, else CPU.

    ``SKYLENS_THREADS`` sets torch's CPU threads (default: torch's own, one per physical core).
    """
    open_clip = lazy_import("open_clip", "openclip")
    import torch

    if int(os.environ.get("SKYLENS_THREADS", 0)) > 0:
        torch.set_num_threads(int(os.environ["SKYLENS_THREADS"]))
    arch, path, preprocess, quick_gelu, source = _resolve(open_clip, rest)
    overrides = {PREPROCESS_ARGS[k]: v for k, v in preprocess.items() if k in PREPROCESS_ARGS}

    def quiet(
        record: logging.LogRecord,
    ) -> bool:  # open_clip warns of random init; weights come next
        return "initialized randomly" not in record.getMessage()

    logging.getLogger().addFilter(quiet)
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            arch, pretrained=None, pretrained_hf=False, force_quick_gelu=quick_gelu, **overrides
        )
    except Exception as exc:  # noqa: BLE001 - bad configs fail inside open_clip in many ways
        raise ModelError(f"open_clip cannot build '{arch}' ({type(exc).__name__}: {exc})") from None
    finally:
        logging.getLogger().removeFilter(quiet)
    state = fit_state_dict(model, read_state_dict(path), arch, path)
    model.load_state_dict(state, strict=True)
    pp = model.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else max(pp["size"])
    model_cfg = open_clip.get_model_config(arch)
    digest = _weights_digest(model.state_dict(), model_cfg, pp, quick_gelu)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    card = ModelCard(
        name=f"openclip:{rest}",
        version=digest[:12],
        image_size=int(size),
        embed_dim=int(model_cfg["embed_dim"]),
        mean=tuple(float(m) for m in pp["mean"]),
        std=tuple(float(s) for s in pp["std"]),
        source=source,
        citation=next((c for k, c in CITATIONS.items() if k in path.name.lower()), "")
        or "open_clip (Ilharco et al. 2021); cite the checkpoint's own paper",
        extra={
            "arch": arch,
            "checkpoint": str(path),
            "weights_sha256": digest,
            "quick_gelu": quick_gelu or bool(model_cfg.get("quick_gelu")),
            "preprocess": pp,
            "device": device,
        },
    )
    return OpenClipEncoder(card, model, transform, open_clip.get_tokenizer(arch), device)
