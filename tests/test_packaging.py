"""The plugin installs as one package tree: ``adapters/`` ships as ``captum_topgap.adapters``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import captum_topgap
import captum_topgap.adapters

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_adapters_to_the_top_level_folder() -> None:
    assert Path(captum_topgap.adapters.__file__).resolve().parent == ROOT / "adapters"


@pytest.mark.slow
def test_built_wheel_contains_and_imports_the_adapters(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("captum_topgap-*.whl"))
    assert wheel.name.startswith(f"captum_topgap-{captum_topgap.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"captum_topgap/adapters/__init__.py", "captum_topgap/adapters/captum.py",
            "captum_topgap/adapters/grad_cam.py", "captum_topgap/registry.py", "captum_topgap_cli.py"} <= set(names)
    assert not any(n.startswith(("adapters/", "tests/")) for n in names)
    sources = {f"captum_topgap/{p.relative_to(ROOT / 'captum_topgap').as_posix()}"
               for p in (ROOT / "captum_topgap").rglob("*.py")}
    assert sources <= set(names), f"missing from the wheel (add the package to setup.cfg): {sources - set(names)}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "captum-topgap = captum_topgap_cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import captum_topgap.adapters.grad_cam as g; "
            "import captum_topgap; print(g.__file__); print(len(captum_topgap.list_methods()))")
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True,
                         text=True, cwd=tmp_path).stdout.split()
    assert Path(out[0]).is_relative_to(target)
    assert int(out[1]) == len(captum_topgap.list_methods())


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
