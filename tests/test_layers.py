"""The import rules of ../shared/DESIGN.md ("Never"), checked on every import in the source,
lazy ones inside functions included: imagery/ imports nothing of skylens (but itself and the
shared error types, ``skylens.errors``, which import nothing); models/ never imports index/,
tasks/ or the faces (cli, service); tasks/ never imports cli or service/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "skylens"
FACES = ("skylens.cli", "skylens.service")  # cli/ and service/
FORBIDDEN = {
    "imagery": ("skylens",),  # but itself and ALLOWED
    "models": ("skylens.index", "skylens.tasks", *FACES),
    "tasks": FACES,
    # beside tasks/ (DESIGN.md): they use models, index and tasks, never the faces
    "knowledge": FACES,
    "curate": FACES,
    "scale": FACES,
    "datasets": ("skylens.index", "skylens.tasks", *FACES),
}


def imported_modules(path: Path, root: Path = SRC.parent) -> list[tuple[int, str]]:
    """(line, module) of every ``import`` and ``from ... import`` in ``path``, at any depth;
    relative imports are resolved against the file's place under ``root``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(root).with_suffix("").parts[: -node.level]
                base = ".".join(package)
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            elif node.module:
                found.append((node.lineno, node.module))
    return found


ALLOWED = ("skylens.errors",)  # leaf modules every layer may use


def _breaks(module: str, prefixes: tuple[str, ...], own: str = "") -> bool:
    if module in ALLOWED or (own and (module == own or module.startswith(own + "."))):
        return False
    return any(
        module == p or module.startswith(p + ".") or module.startswith(p + "_") for p in prefixes
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_design_import_rules(package):
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources under {SRC / package}"
    broken = [
        f"{f.relative_to(SRC)}:{line} imports {module}"
        for f in files
        for line, module in imported_modules(f)
        if _breaks(module, FORBIDDEN[package], own=f"skylens.{package}")
    ]
    assert not broken, "\n".join(broken)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    code = (
        "def f():\n    from skylens.tasks.ask import ask_image\n\nfrom ..cli_serve import serve\n"
    )
    path = tmp_path / "skylens" / "models" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(code)
    modules = [m for _, m in imported_modules(path, root=tmp_path)]
    assert sorted(modules) == ["skylens.cli_serve", "skylens.tasks.ask"]
    assert all(_breaks(m, FORBIDDEN["models"]) for m in modules)
    assert not _breaks("skylens.errors", FORBIDDEN["imagery"], own="skylens.imagery")
    assert not _breaks("skylens.imagery.raster", FORBIDDEN["imagery"], own="skylens.imagery")
    assert _breaks("skylens.models", FORBIDDEN["imagery"], own="skylens.imagery")
