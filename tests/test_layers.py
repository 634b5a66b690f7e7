"""The layer rule of ARCHITECTURE.md, checked on every import in the source tree.

Lower layers never import higher ones, and the functional core (domain, devices, links) never
imports a module that does network, process or thread I/O. A new package must be given its
layer here, so the rule cannot be forgotten by omission.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pumpguard"

LAYER = {
    "__init__": 0,
    "clock": 0,
    "security_events": 0,
    "data": 0,
    "clinical": 1,
    "physiology": 1,
    "devices": 2,
    "link": 3,
    "pki": 4,
    "updates": 4,
    "transport": 5,
    "server": 6,
    "interop": 6,
    "monitor": 6,
    "risk": 6,
    "lab": 7,
    "cli": 8,
    "web": 8,
}
CORE_LAYERS = {1, 2, 3}
IO_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "multiprocessing",
    "urllib",
    "http",
    "httpx",
    "sqlite3",
    "sqlalchemy",
    "paho",
    "uvicorn",
    "fastapi",
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_has_a_layer() -> None:
    missing = sorted({_package(p) for p in SOURCES} - set(LAYER))
    assert missing == [], f"give these packages a layer in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_respect_the_layers(path: Path) -> None:
    own = _package(path)
    layer = LAYER[own]
    problems = []
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] == "pumpguard" and len(parts) > 1:
            target = parts[1]
            if target in LAYER and LAYER[target] > layer:
                problems.append(f"line {line}: {own} (layer {layer}) imports {module}")
        elif layer in CORE_LAYERS and parts[0] in IO_MODULES:
            problems.append(f"line {line}: functional-core package {own} imports {module}")
    assert problems == []
