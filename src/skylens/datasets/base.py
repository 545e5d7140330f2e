"""The one sample contract every benchmark loader yields, the registry, and shared helpers.

Every dataset is one file, constructed as ``Dataset(root, split="test", transforms=None)``, and is
a sequence (``len``, indexing, iteration) of dicts whose keys are defined once, here, by
:class:`Sample` (``../shared/STYLE.md`` #1; torchgeo's ``mask``/``masks`` drift is the cautionary
tale). Images stay paths: ``sample["image"]`` is a :class:`~pathlib.Path`, and
:func:`load_image` turns it into pixels, so that evaluation can batch and thread the decoding.

A loader reads the *published* on-disk layout of its dataset, so that a user who downloads it
points ``root`` at it. Annotations name images by file name; images are matched by **stem**
whatever the extension (UCM-Captions' ``dataset.json`` says ``1.tif`` where a copy may hold
``1.jpg``). A root that does not match the layout raises :class:`DatasetLayoutError` naming the
expected file or folder; an annotation naming a missing image raises it too, naming the image,
unless ``skip_missing=True`` (the sample is skipped and counted in ``.skipped``) or
``images_required=False`` (the sample is kept with ``image=None``: captions/questions only).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import numpy as np

from skylens.errors import DatasetLayoutError, ImageReadError, InputError


class Sample(TypedDict, total=False):
    """One benchmark sample. A dataset fills the keys it has; the key names are fixed here.

    Attributes:
        id: stable identifier within the dataset (usually the image stem; a question id for VQA).
        image: path of the image (``None`` only with ``images_required=False`` and no file).
        image_pre: path of the earlier image of a bi-temporal pair (change captioning).
        image_post: path of the later image of a bi-temporal pair.
        captions: reference sentences, as published (quirks kept).
        question: VQA question text.
        answer: VQA reference answer text, as published (stripped of surrounding blanks).
        question_type: VQA question family (``presence``, ``count``, ``comp``, ...).
        label: index into the dataset's ``classes`` list.
        bbox: boxes as ``(xmin, ymin, xmax, ymax)`` in pixels (reserved; no loader fills it yet).
        objects: detection annotations, one dict per object: ``name`` (class as published),
            ``bbox`` ``(xmin, ymin, xmax, ymax)`` in pixels, ``polygon`` (the published corner
            coordinates, x1, y1, x2, y2, ... in pixels; the box's four corners when the source
            has axis-aligned boxes only) and ``difficult`` (bool).
        mask: path of a per-pixel label image (reserved).
        geo: footprint/position metadata, e.g. ``{"crs": "EPSG:4326", "bounds": (...)}`` (reserved).
    """

    id: str
    image: Path | None
    image_pre: Path | None
    image_post: Path | None
    captions: list[str]
    question: str
    answer: str
    question_type: str
    label: int
    bbox: list[tuple[float, float, float, float]]
    objects: list[dict[str, Any]]
    mask: Path | None
    geo: dict[str, Any]


#: Every key a sample may carry.
SAMPLE_KEYS: frozenset[str] = frozenset(Sample.__annotations__)

#: Keys whose value is an image path, in the order :func:`load_image` callers usually want.
IMAGE_KEYS: tuple[str, ...] = ("image", "image_pre", "image_post")

#: File suffixes treated as images when a folder is indexed (lower case).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
)

#: Task names a dataset may declare.
TASKS: tuple[str, ...] = ("captioning", "classification", "vqa", "change_captioning", "detection")

Transform = Callable[[Sample], Sample]


class BenchmarkDataset(Sequence):
    """Base of every loader: a sequence of :class:`Sample` dicts built from the annotations.

    Subclasses set the class attributes and implement :meth:`_load`, which parses the
    annotations once (images are only located, never decoded) and returns the samples of
    ``self.split``.

    Attributes:
        name: registry name (``get_dataset(name, ...)``).
        task: ``captioning`` (also used for retrieval), ``classification``, ``vqa`` or
            ``change_captioning``.
        splits: accepted values of ``split``.
        citation: the paper to cite for the data.
        classes: readable class names, ``label`` indexes it (empty when the dataset has none).
        skipped: samples dropped because their image was missing (``skip_missing=True``).
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")
    citation: ClassVar[str] = ""
    classes: list[str] = []  # class default; each instance holds its own copy

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Parse the annotations of ``split`` under ``root``.

        Args:
            root: folder holding the dataset in its published layout.
            split: one of ``self.splits``.
            transforms: applied to each sample dict on access (``transforms(sample) -> sample``).
            skip_missing: skip (and count in ``.skipped``) samples whose image file is missing
                instead of raising.
            images_required: when False, keep samples whose image is missing with the image key
                set to ``None`` (text-only use: captions or questions without pixels).
        """
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{self.root}: {self.name} root folder not found; "
                f"point root at the downloaded {self.name} folder"
            )
        if split not in self.splits:
            raise InputError(
                f"{self.name}: unknown split '{split}' (choose from {', '.join(self.splits)})"
            )
        self.split = split
        self.transforms = transforms
        self.skip_missing = skip_missing
        self.images_required = images_required
        self.skipped = 0
        self.classes = list(type(self).classes)
        self._samples: list[Sample] = self._load()

    def _load(self) -> list[Sample]:
        raise NotImplementedError

    # -- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self.name} indices must be integers, not {type(index).__name__}")
        sample = _copy(self._samples[index])
        return self.transforms(sample) if self.transforms is not None else sample

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        extra = f", skipped={self.skipped}" if self.skipped else ""
        return (
            f"{type(self).__name__}(root='{self.root}', split='{self.split}', n={len(self)}{extra})"
        )

    # -- helpers for subclasses -----------------------------------------------------------------
    def _missing(self, what: str, where: Path) -> bool:
        """Decide what to do about an annotation whose image is missing.

        Returns True when the sample must be dropped (``skip_missing``), False when it is kept
        with no image (``images_required=False``); raises otherwise.
        """
        if self.skip_missing:
            self.skipped += 1
            return True
        if not self.images_required:
            return False
        raise DatasetLayoutError(
            f"{self.name}: the annotations name image '{what}' but no file with stem "
            f"'{Path(what).stem}' was found under {where}; pass skip_missing=True to skip such "
            f"samples, or images_required=False to load the annotations without images"
        )


def _copy(sample: Sample) -> Sample:
    out: dict = {}
    for key, value in sample.items():
        out[key] = list(value) if isinstance(value, list) else value
    return out  # type: ignore[return-value]


# -- registry ---------------------------------------------------------------------------------

DATASETS: dict[str, type[BenchmarkDataset]] = {}

#: Other spellings users type for a registered name.
ALIASES: dict[str, str] = {}


def register_dataset(*aliases: str) -> Callable[[type[BenchmarkDataset]], type[BenchmarkDataset]]:
    """Class decorator: register a loader under its ``name`` (and optional aliases)."""

    def deco(cls: type[BenchmarkDataset]) -> type[BenchmarkDataset]:
        if not cls.name or cls.task not in TASKS:
            raise TypeError(f"{cls.__name__} needs a name and a task in {TASKS}")
        DATASETS[cls.name] = cls
        for alias in aliases:
            ALIASES[_normalise_name(alias)] = cls.name
        return cls

    return deco


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def dataset_class(name: str) -> type[BenchmarkDataset]:
    """The loader class registered as ``name`` (case, ``-`` and ``_`` do not matter)."""
    key = _normalise_name(name)
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise InputError(f"unknown dataset '{name}' (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[key]


def get_dataset(
    name: str,
    root: str | os.PathLike[str],
    split: str = "test",
    transforms: Transform | None = None,
    **kwargs: Any,
) -> BenchmarkDataset:
    """Construct the loader registered as ``name``.

    Args:
        name: registry name, e.g. ``ucm_captions``, ``nwpu_resisc45``, ``rsvqa_lr``, ``levir_cc``.
        root: the dataset folder in its published layout.
        split: a split the dataset accepts (see its ``splits``).
        transforms: applied to each sample dict on access.
        **kwargs: loader options (``skip_missing``, ``images_required``, ``image_dir``, ...).
    """
    return dataset_class(name)(root, split=split, transforms=transforms, **kwargs)


# -- pixels -----------------------------------------------------------------------------------


def load_image(
    sample: Mapping[str, Any] | str | os.PathLike[str], key: str = "image"
) -> np.ndarray:
    """Decode a sample's image (or a path) to an HxWx3 uint8 RGB array with PIL.

    Args:
        sample: a sample dict, or an image path.
        key: which image key of the sample to load (``image``, ``image_pre``, ``image_post``).

    Returns:
        ``(H, W, 3)`` uint8 array, H and W in pixels.
    """
    if isinstance(sample, Mapping):
        path = sample.get(key)
        if path is None:
            raise InputError(
                f"sample '{sample.get('id', '?')}' has no '{key}' file (loaded with "
                f"images_required=False, or the dataset has no such image)"
            )
    else:
        path = sample
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _to_rgb_uint8(im)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(path, f"cannot decode image: {exc}") from None


def _to_rgb_uint8(im: Any) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float single band: stretch to 0..255 rather than clipping to black/white.
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = np.percentile(arr, [2, 98]) if arr.size else (0.0, 1.0)
        arr = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        arr = arr.astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


# -- layout helpers -----------------------------------------------------------------------------


def index_images(folder: Path) -> dict[str, Path]:
    """Map image stem -> path for every image file under ``folder`` (recursive, sorted walk).

    When two files share a stem the first in sorted path order wins.
    """
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            if os.path.splitext(fname)[1].lower() in IMAGE_SUFFIXES:
                found.setdefault(os.path.splitext(fname)[0], Path(dirpath) / fname)
    return found


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def hash_fraction(key: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for ``key`` (independent of platform and numpy)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stratified_split(
    groups: Mapping[str, Sequence[str]], test_fraction: float = 0.2, seed: int = 0
) -> dict[str, str]:
    """Seeded, stratified train/test assignment of items grouped by class.

    Within each class the items are ordered by :func:`hash_fraction` of ``"class/item"`` and the
    first ``round(n * test_fraction)`` (at least one when the class has two or more items) go to
    ``test``, the rest to ``train``. The assignment of an item depends only on its class, its
    name and the seed, so it is the same on every machine.

    Returns:
        item -> ``"train"`` or ``"test"``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction}")
    out: dict[str, str] = {}
    for cls, items in groups.items():
        order = sorted(items, key=lambda it: (hash_fraction(f"{cls}/{it}", seed), it))
        n_test = round(len(order) * test_fraction)
        if test_fraction > 0 and len(order) >= 2:
            n_test = max(n_test, 1)
        for i, item in enumerate(order):
            out[item] = "test" if i < n_test else "train"
    return out


#: Run-together class folder names of remote-sensing scene datasets -> readable words.
RUN_TOGETHER: dict[str, str] = {
    "baseballdiamond": "baseball diamond",
    "baseballfield": "baseball field",
    "basketballcourt": "basketball court",
    "denseresidential": "dense residential",
    "golfcourse": "golf course",
    "mediumresidential": "medium residential",
    "mobilehomepark": "mobile home park",
    "parkinglot": "parking lot",
    "sparseresidential": "sparse residential",
    "storagetanks": "storage tanks",
    "storagetank": "storage tank",
    "tenniscourt": "tennis court",
    "footballfield": "football field",
    "railwaystation": "railway station",
    "bareland": "bare land",
    "sealake": "sea lake",
    "riverlake": "river lake",
    "idleland": "idle land",
    "christmastreefarm": "christmas tree farm",
    "closedroad": "closed road",
    "coastalmansion": "coastal mansion",
    "ferryterminal": "ferry terminal",
    "nursinghome": "nursing home",
    "oilgasfield": "oil gas field",
    "oilwell": "oil well",
    "parkingspace": "parking space",
    "runwaymarking": "runway marking",
    "shippingyard": "shipping yard",
    "solarpanel": "solar panel",
    "swimmingpool": "swimming pool",
    "transformerstation": "transformer station",
    "wastewatertreatmentplant": "wastewater treatment plant",
    "groundtrackfield": "ground track field",
    "circularfarmland": "circular farmland",
    "rectangularfarmland": "rectangular farmland",
    "commercialarea": "commercial area",
    "industrialarea": "industrial area",
    "thermalpowerstation": "thermal power station",
    "seaice": "sea ice",
    "annualcrop": "annual crop",
    "permanentcrop": "permanent crop",
    "herbaceousvegetation": "herbaceous vegetation",
}


def readable_class_name(
    folder: str, *, letter_prefix: bool = False, compounds: Mapping[str, str] = RUN_TOGETHER
) -> str:
    """Turn a class folder name into lower-case words.

    ``DenseResidential`` -> ``dense residential``, ``storage_tanks`` -> ``storage tanks``,
    ``baseballdiamond`` -> ``baseball diamond`` (via ``compounds``), and with
    ``letter_prefix=True`` RSSCN7's ordering letters go: ``aGrass`` -> ``grass``.
    """
    name = folder.strip()
    if letter_prefix and re.match(r"^[a-z][A-Z]", name):
        name = name[1:]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    name = re.sub(r"[_\-\s]+", " ", name).strip().lower()
    return " ".join(compounds.get(word, word) for word in name.split())
