"""curate on Ray Data: a step gives the same dataset with ``Runner("ray")`` as in process, and the
runner the CLI builds reaches ``skylens.scale.map_batches``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from skylens.curate import pipeline
from skylens.curate.from_folders import from_folders
from skylens.curate.pipeline import Runner
from skylens.errors import ImageReadError, InputError

DATA = Path(__file__).parent / "data"


def _scene(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_curate_ray", DATA / "curate" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(root) / "scene"


def _rows(ds) -> list[tuple]:
    return [
        (r["id"], r["label"], r["split"], r["digest"], [(t["kind"], t["text"]) for t in r["texts"]])
        for r in ds.records()
    ]


def test_runner_options_and_its_way_to_map_batches(tmp_path, monkeypatch):
    assert Runner.from_options() == Runner("local")
    assert Runner.from_options(ray=True, workers=2) == Runner("ray", None, 2)
    assert Runner.from_options(address="ray://head:10001").kind == "ray"  # address implies ray
    with pytest.raises(InputError, match="runner"):
        Runner("spark")
    with pytest.raises(InputError, match="workers"):
        Runner("ray", workers=0)

    calls: list[dict] = []

    def fake_map_batches(items, fn, **kw):  # stands in for Ray: records the call, maps in process
        calls.append({"n": len(items), **kw})
        return (fn(items[i : i + kw["batch_size"]]) for i in range(0, len(items), kw["batch_size"]))

    monkeypatch.setattr("skylens.scale.map_batches", fake_map_batches)
    root = _scene(tmp_path / "data")
    local = from_folders(root, tmp_path / "local", batch_size=5)
    assert calls == []  # the default runner never touches Ray
    ray = from_folders(root, tmp_path / "ray", batch_size=5, runner=Runner("ray", "auto", 3))
    assert calls == [{"n": 3, "batch_size": 1, "runner": "ray", "workers": 3, "address": "auto"}]
    assert _rows(ray) == _rows(local) and ray.count == 12


def test_cli_ray_options_build_the_runner(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from skylens.cli import app

    seen: list[Runner] = []
    real = pipeline.map_ordered

    def spy(batches, fn, runner=pipeline.LOCAL):
        seen.append(runner)
        return real(batches, fn, pipeline.LOCAL)

    monkeypatch.setattr(pipeline, "map_ordered", spy)
    root = _scene(tmp_path / "data")
    args = ["curate", "from-folders", str(root), "--out", str(tmp_path / "ds")]
    res = CliRunner().invoke(app, [*args, "--ray-address", "ray://head:10001", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert seen == [Runner("ray", "ray://head:10001", 2)] and "12 records" in res.output


@pytest.mark.slow
def test_from_folders_on_ray_writes_the_same_records(tmp_path):
    pytest.importorskip("ray")
    from skylens.scale import ray_session

    root = _scene(tmp_path / "data")
    local = from_folders(root, tmp_path / "local", batch_size=4)
    on_ray = Runner("ray", workers=2)
    with ray_session(num_cpus=2):
        ray = from_folders(root, tmp_path / "ray", batch_size=4, runner=on_ray)
        broken = root / "forest" / "zz_broken.jpg"
        broken.write_bytes(b"\xff\xd8 not a jpeg")
        skipped = from_folders(root, tmp_path / "skip", batch_size=4, skip_bad=True, runner=on_ray)
        # without skip_bad the worker's typed error reaches the caller as itself, naming the file
        with pytest.raises(ImageReadError, match="zz_broken.jpg") as raised:
            from_folders(root, tmp_path / "fail", batch_size=4, runner=on_ray)
    assert ray.count == local.count == 12
    assert _rows(ray) == _rows(local)  # same ids, texts, labels, splits, digests, same order
    assert skipped.count == 12
    assert skipped.manifest["steps"][-1]["removed"] == {"unreadable image": 1}
    assert raised.value.path == str(broken.resolve())
    assert not (tmp_path / "fail").exists() and not list(tmp_path.glob(".fail.partial-*"))
