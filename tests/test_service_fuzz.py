"""Property test of the HTTP API: schemathesis generates requests from the OpenAPI schema
(valid and invalid values for every parameter, form field and upload) against a small index,
and every answer must be a non-5xx response without a traceback.

Runs offline, in-process (ASGI), with a bounded number of examples per operation so the whole
file stays well under a minute on two cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

import skylens
from skylens.index.ingest import ingest
from skylens.index.store import ChipIndex
from skylens.service import create_app

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 12  # per operation and generation mode


def _make_app(tmp_root):
    archive = tmp_root / "archive"
    archive.mkdir()
    for name, colour in {"red": (220, 20, 20), "green": (20, 200, 30)}.items():
        Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(archive / f"{name}.png")
    enc = skylens.load("fake")
    index = tmp_root / "index"
    idx = ChipIndex.create_or_open(
        index, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
    )
    ingest([archive], idx, enc, size=256, overlap=0)
    return create_app(index, roots=[archive], token="", batch_wait_s=0)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    app = _make_app(tmp_path_factory.mktemp("fuzz"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _check(case) -> None:
    response = case.call()
    where = f"{case.method} {case.path} {case.query} {str(case.body)[:200]}"
    assert response.status_code < 500, (where, response.text[:500])
    assert "Traceback" not in response.text and 'File "/' not in response.text, where
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, where


OPERATIONS = [
    "GET /api/health", "GET /api/index", "GET /api/models", "GET /api/search",
    "POST /api/search/image", "POST /api/classify", "POST /api/caption", "POST /api/ask",
    "POST /api/change", "GET /api/localize", "POST /api/localize",
    "GET /api/chip/{chip_id}/thumbnail.png",
    "GET /api/kb/search", "POST /api/kb/ask", "POST /api/chat",
]  # fmt: skip


NO_PARAMETERS = {"GET /api/health", "GET /api/index", "GET /api/models"}


def test_the_schema_lists_every_operation_fuzzed(api_schema):
    found = {f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_request_gets_a_5xx_or_a_traceback(api_schema, operation, mode):
    method, path = operation.split(" ", 1)
    if mode == "negative" and operation in NO_PARAMETERS:
        pytest.skip("no parameter to get wrong")
    op = next(
        r.ok()
        for r in api_schema.get_all_operations()
        if r.ok().method.upper() == method and r.ok().path == path
    )
    strategy = op.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def run(case):
        _check(case)

    run()
