"""The service's shape (issue 18, ../shared/STYLE.md #8, #13, #17): one router a resource, small
modules of simple functions, no storage imports in the face, no private state in the routes."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skylens.service.routes import API, PUBLIC

SERVICE = Path(__file__).resolve().parents[1] / "src" / "skylens" / "service"
MODULES = sorted(SERVICE.rglob("*.py"))


def test_no_service_module_is_over_300_lines():
    long = {
        str(p.relative_to(SERVICE)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, long


def test_the_service_never_imports_storage():
    broken = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            broken += [f"{path.name}: {n}" for n in names if n.startswith("skylens.index")]
    assert not broken, broken


def test_routes_never_reach_into_private_state():
    for path in sorted((SERVICE / "routes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                pytest.fail(f"{path.name}:{node.lineno} reads private .{node.attr}")


def test_one_router_a_resource_every_api_route_behind_the_token():
    from fastapi.testclient import TestClient

    from skylens.service import create_app

    app = create_app(None, token="secret")
    schema = app.openapi()["paths"]
    for want in (
        "/api/search",
        "/api/search/image",
        "/api/classify",
        "/api/caption",
        "/api/ask",
        "/api/change",
        "/api/localize",
        "/api/index",
        "/api/models",
        "/api/health",
    ):
        assert want in schema  # fmt: skip
    assert len(API) == len({id(r) for r in API}) and PUBLIC
    client = TestClient(app)
    for path, methods in schema.items():
        url = path.replace("{chip_id}", "0" * 32)
        for method in methods:
            status = client.request(method.upper(), url).status_code
            assert status == (200 if path == "/api/health" else 401), (method, path, status)


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff not installed",
)
def test_face_functions_are_simple_mccabe_under_10():
    """The service's and the CLI's functions stay simple (issue 18: C901 clean on both)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    faces = [str(SERVICE), str(SERVICE.parent / "cli")]
    res = subprocess.run(
        [ruff, "check", "--select", "C901", *faces], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
