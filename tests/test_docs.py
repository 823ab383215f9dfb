"""Docs are executable: module docstring examples, the Python blocks of docs/*.md, the README commands."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import captum_topgap
import captum_topgap.adapters
from captum_topgap import registry
from captum_topgap.app.commands import methods_markdown

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(captum_topgap.__path__, "captum_topgap.")) + sorted(
    m.name for m in pkgutil.walk_packages(captum_topgap.adapters.__path__, "captum_topgap.adapters."))
DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Examples may register methods; keep them out of the other tests."""
    captum_topgap.list_methods()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_KEYS", dict(registry._KEYS))
    monkeypatch.setattr(registry, "_COMPOSITIONS", dict(registry._COMPOSITIONS))


@pytest.mark.parametrize("module", ["captum_topgap", *MODULES])
def test_docstring_examples(module: str) -> None:
    """Every module with code has examples, and they run; a package's ``__init__`` only re-exports."""
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    imported = importlib.import_module(module)
    result = doctest.testmod(imported, optionflags=flags)
    assert result.failed == 0
    assert result.attempted > 0 or hasattr(imported, "__path__"), f"{module} has no docstring example"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```py(?:thon)?\n(.*?)```", path.read_text(), flags=re.S)


WITH_CODE = [p for p in DOCS if python_blocks(p)]


def test_the_pages_that_teach_the_api_carry_python_blocks() -> None:
    assert {p.name for p in WITH_CODE} >= {"index.md", "data.md", "topgap.md", "reff.md", "robustness.md",
                                           "expansion_cam.md", "visualization.md"}


@pytest.mark.parametrize("path", WITH_CODE, ids=[p.name for p in WITH_CODE])
def test_docs_python_blocks_run(path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)


def test_methods_page_lists_every_method() -> None:
    assert methods_markdown() in (ROOT / "docs" / "methods.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    assert "pytest" in commands[1] and "captum-topgap" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
