"""The wheel carries every subpackage and every YAML: pyproject's explicit package list must match the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "progprune_cli").rglob("__init__.py")}
    assert on_disk <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "progprune_cli.conf" in listed and (ROOT / "conf" / "__init__.py").exists()


def test_every_config_file_is_package_data() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["progprune_cli.conf"] == "conf"
    patterns = setuptools["package-data"]["progprune_cli.conf"]
    assert patterns == ["*.yaml", "**/*.yaml"]
    files = [p for p in (ROOT / "conf").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert not [p for p in files if p.suffix not in (".yaml", ".py")]
