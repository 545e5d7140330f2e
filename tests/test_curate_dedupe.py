"""dedupe: planted copies of evaluation images (re-encoded, resized, cropped) are removed, and why."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from skylens.curate.dedupe import crop_views, dedupe, phash64
from skylens.curate.from_folders import from_folders
from skylens.errors import InputError

DATA = Path(__file__).parent / "data"

pytest.importorskip("imagehash")  # the curate extra: pip install skylens[curate]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, Path]:
    spec = importlib.util.spec_from_file_location("tiny_curate", DATA / "curate" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = module.make(tmp_path_factory.mktemp("curate"))
    work = tmp_path_factory.mktemp("dedupe")
    from_folders(root / "pool", work / "pool")
    return root, work / "pool"


def test_planted_copies_of_evaluation_images_are_removed(pool, tmp_path):
    root, ds = pool
    out = dedupe(ds, tmp_path / "clean", against=[root / "eval"])
    removed = {Path(r["image"]).stem: r for r in out.removed()}
    assert set(removed) == {"copy_jpeg60", "copy_resized", "copy_cropped", "zz_exact_copy"}
    for name in ("copy_jpeg60", "copy_resized", "copy_cropped"):
        assert removed[name]["reason"] == "phash match with evaluation image"
        assert Path(removed[name]["match"]).parent.name == "eval"
    assert removed["copy_jpeg60"]["match"].endswith("eval_0.png")
    assert removed["copy_cropped"]["match"].endswith("eval_2.png")
    assert removed["zz_exact_copy"]["reason"] == "exact duplicate within the dataset"
    kept = {Path(r["image_path"]).stem for r in out.records()}
    assert kept == {f"train_{i}" for i in range(6)}
    assert out.manifest["steps"][-1]["removed"] == {
        "exact duplicate within the dataset": 1,
        "phash match with evaluation image": 3,
    }


def test_without_against_only_within_set_duplicates_go(pool, tmp_path):
    _, ds = pool
    out = dedupe(ds, tmp_path / "clean", methods=["exact"])
    assert [r["reason"] for r in out.removed()] == ["exact duplicate within the dataset"]
    assert out.count == 9


def test_distinct_smooth_images_are_far_apart_in_phash():
    rng = np.random.default_rng(1)
    from PIL import Image

    ims = [
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
                (64, 64), Image.BICUBIC
            )
        )
        for _ in range(20)
    ]
    hashes = np.array([phash64(im) for im in ims], dtype=np.uint64)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    np.fill_diagonal(dist, 64)
    assert dist.min() > 8
    assert len(crop_views(ims[0])) == 11


def test_embedding_method_uses_a_loaded_model(pool, tmp_path):
    root, ds = pool
    # the fake encoder (conftest) embeds an image's mean colour: copies keep it, distinct
    # smooth random images do not
    out = dedupe(ds, tmp_path / "e", against=[root / "eval"], methods=["embedding"], model="fake",
                 cosine=0.999, within=False)  # fmt: skip
    removed = {Path(r["image"]).stem: r["reason"] for r in out.removed()}
    assert set(removed) == {"copy_jpeg60", "copy_resized", "copy_cropped"}
    assert set(removed.values()) == {"embedding match with evaluation image"}


def test_bad_arguments(pool, tmp_path):
    _, ds = pool
    with pytest.raises(InputError, match="methods"):
        dedupe(ds, tmp_path / "x", methods=["md5"])
    with pytest.raises(InputError, match="not found"):
        dedupe(ds, tmp_path / "x", against=[tmp_path / "nowhere"])


def test_against_a_curated_dataset_of_evaluation_records(pool, tmp_path):
    import shutil

    root, ds = pool
    for i, f in enumerate(sorted((root / "eval").glob("*.png"))):
        (tmp_path / "evalset" / f"class_{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / "evalset" / f"class_{i % 2}" / f.name)
    from_folders(tmp_path / "evalset", tmp_path / "eval_ds")
    out = dedupe(ds, tmp_path / "clean", against=[tmp_path / "eval_ds"], within=False)
    removed = {Path(r["image"]).stem: r["match"] for r in out.removed()}
    assert set(removed) == {"copy_jpeg60", "copy_resized", "copy_cropped"}
    assert all(m.startswith("eval_ds:") for m in removed.values())
