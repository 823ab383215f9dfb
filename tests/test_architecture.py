"""The rooms of docs/architecture.md: every import (local ones included) goes to a lower or the same room,
and no module imports itself back through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"core": 0, "data": 1, "models": 2, "methods": 3, "evaluate": 4, "train": 5, "app": 6, "adapters": 6}


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((ROOT / "captum_topgap").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "adapters").glob("*.py")):
        name = "captum_topgap.adapters" + ("" if path.stem == "__init__" else f".{path.stem}")
        files[name] = path
    return files


def room(module: str) -> int:
    parts = module.split(".")
    return ROOMS.get(parts[1], 0) if len(parts) > 1 else ROOMS["app"]


def imports(path: Path, module: str) -> set[str]:
    """Every captum_topgap module named by an import statement anywhere in the file."""
    found = set()
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("captum_topgap")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("captum_topgap"):
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


FILES = module_files()
GRAPH = {name: {dep for dep in imports(path, name) if dep in FILES and dep != name} for name, path in FILES.items()}


@pytest.mark.parametrize("module", [m for m in FILES if m != "captum_topgap"])
def test_imports_go_to_lower_rooms(module: str) -> None:
    """The package's own ``__init__`` is the public facade and may re-export from any room."""
    upward = sorted(dep for dep in GRAPH[module] if dep != "captum_topgap" and room(dep) > room(module))
    assert not upward, f"{module} (room {room(module)}) imports higher rooms: {upward}"


def cycle_from(start: str) -> list[str] | None:
    """A chain of imports from ``start`` back to itself, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for dep in GRAPH[module]:
            if dep == start:
                return [*path, dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def test_no_import_cycles() -> None:
    cycles = [cycle for cycle in map(cycle_from, FILES) if cycle]
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_the_rooms_cover_every_subpackage() -> None:
    subpackages = {p.name for p in (ROOT / "captum_topgap").iterdir() if (p / "__init__.py").is_file()}
    assert subpackages <= set(ROOMS), sorted(subpackages - set(ROOMS))
