"""skylens.scale: the batch runner in-process (fast) and on a local Ray with 2 workers (slow):
the Ray ingest stores the same rows and ids as the single-process ingest, and a rerun adds none."""

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skylens
from skylens.errors import InputError
from skylens.index.ingest import ingest
from skylens.index.store import ChipIndex
from skylens.scale import map_batches

COLOURS = [(220, 20, 20), (20, 200, 30), (20, 30, 210), (200, 200, 20), (120, 120, 120)]


def _archive(root: Path) -> Path:
    """Five PNGs: three single chips, one 96x64 scene tiling into several, one corrupt file."""
    root.mkdir()
    for i, c in enumerate(COLOURS[:3]):
        Image.fromarray(np.full((40, 40, 3), c, np.uint8)).save(root / f"chip{i}.png")
    scene = np.zeros((64, 96, 3), np.uint8)
    scene[:, :48] = COLOURS[3]
    scene[:, 48:] = COLOURS[4]
    Image.fromarray(scene).save(root / "scene.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _index(path: Path, model) -> ChipIndex:
    return ChipIndex.create_or_open(
        path, model_name=model.name, model_version=model.version, embed_dim=model.embed_dim
    )


def _rows(index: ChipIndex) -> dict:
    table = index._table.to_arrow().sort_by("id").to_pylist()
    return {
        r["id"]: (
            r["path"],
            tuple(r["window"]),
            r["source_digest"],
            np.round(r["vector"], 5).tolist(),
        )
        for r in table
    }


def _square(batch: list[dict]) -> list[int]:
    return [d["x"] ** 2 for d in batch]


def _scaled(batch: list[dict], factor: int) -> list[int]:
    return [d["x"] * factor for d in batch]


class _Offset:
    """A stateful batch function: built once per worker."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.calls = 0

    def __call__(self, batch: list[dict]) -> tuple[list[int], int]:
        self.calls += 1
        return [d["x"] + self.offset for d in batch], len(batch)


def test_map_batches_in_process():
    items = [{"x": i} for i in range(10)]
    assert list(map_batches(items, _square, batch_size=4, runner="local")) == [
        [0, 1, 4, 9],
        [16, 25, 36, 49],
        [64, 81],
    ]
    got = list(
        map_batches(
            items, _Offset, batch_size=3, runner="local", constructor_kwargs={"offset": 100}
        )
    )
    assert [n for _, n in got] == [3, 3, 3, 1] and got[0][0] == [100, 101, 102]
    bound = functools.partial(_scaled, factor=3)
    assert sum(map_batches(items, bound, batch_size=5, runner="local"), []) == [
        3 * i for i in range(10)
    ]
    with pytest.raises(InputError, match="runner"):
        list(map_batches(items, _square, runner="spark"))
    with pytest.raises(InputError, match="batch_size"):
        list(map_batches(items, _square, batch_size=0, runner="local"))


@pytest.mark.slow
def test_ray_ingest_matches_single_process(tmp_path):
    pytest.importorskip("ray")
    from skylens.scale import ingest_ray, ray_session

    model = skylens.load("fake")  # tests/conftest.py's colour encoder (pickles to the workers)
    archive = _archive(tmp_path / "archive")
    local = _index(tmp_path / "local", model)
    want = ingest([archive], local, model, size=32, overlap=0, batch_size=4, write_every=3)
    on_ray = _index(tmp_path / "ray", model)
    with ray_session(num_cpus=2):
        done: list[int] = []
        got = ingest_ray(
            [archive],
            on_ray,
            model,
            size=32,
            overlap=0,
            batch_size=4,
            write_every=3,
            workers=2,
            progress=done.append,
        )
        assert got.chips_added == want.chips_added == local.count() > 5
        assert (got.files, got.chips_seen) == (want.files, want.chips_seen)
        assert [f["path"] for f in got.failed] == [f["path"] for f in want.failed]
        assert "broken.png" in got.failed[0]["path"]
        assert _rows(on_ray) == _rows(local)  # same ids, sources, windows and vectors
        assert sum(done) == got.chips_added
        again = ingest_ray([archive], on_ray, model, size=32, overlap=0, workers=2)
        assert again.chips_added == 0 and again.chips_skipped_existing == want.chips_added
        assert on_ray.count() == local.count()
        # the generic runner gives the in-process results on Ray too
        items = [{"x": i} for i in range(10)]
        assert list(map_batches(items, _square, batch_size=4, workers=2)) == list(
            map_batches(items, _square, batch_size=4, runner="local")
        )
        stateful = list(
            map_batches(items, _Offset, batch_size=3, workers=2, constructor_kwargs={"offset": 7})
        )
        assert sum((v for v, _ in stateful), []) == [i + 7 for i in range(10)]
        # the CLI face: `skylens index ... --ray --workers 2` (Ray already up: reused)
        from typer.testing import CliRunner

        from skylens.cli import app

        cli_dir = tmp_path / "cli"
        args = ["index", str(archive), "--index", str(cli_dir), "--model", "fake", "--tile", "32"]
        res = CliRunner().invoke(app, [*args, "--overlap", "0", "--ray", "--workers", "2"])
        assert res.exit_code == 1, res.output  # broken.png is reported and skipped
        assert "broken.png" in res.output
        assert _rows(ChipIndex.open(cli_dir)) == _rows(local)
