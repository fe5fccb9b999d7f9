"""The wheel carries every subpackage and every YAML: pyproject's explicit package list must match the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import TINY

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


@pytest.mark.slow
def test_the_wheel_installed_elsewhere_trains_and_resumes_without_the_source_tree(tmp_path: Path) -> None:
    """Built as a user's pip would, installed non-editable into another folder, run from a third: the packaged
    configs are found and nothing is read from this checkout."""
    python = sys.executable
    # Built from a copy: setuptools leaves a build/ folder beside the sources, which must not appear in the checkout.
    source = tmp_path / "source"
    top = {".git", ".venv", "runs", "build", "dist", "data", ".pytest_cache", "multirun", "outputs"}
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == ROOT and n in top) or n == "__pycache__" or n.endswith(".egg-info")])
    built = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "wheel"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("progprune-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def progprune(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "progprune_cli", *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([python, "-c", "import progprune_cli.conf as c, progprune_cli as p; "
                            "print(p.__file__); print(c.__file__)"], cwd=elsewhere, env=env, capture_output=True,
                           text=True)
    assert all(line.startswith(str(site)) for line in where.stdout.splitlines()), where.stdout + where.stderr
    run_dir = elsewhere / "run"
    first = progprune("train", "+strategy=weight", *TINY, "evaluate.dense_baseline=false", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    (run_dir / "results.json").unlink()
    (run_dir / "checkpoints" / "finetuned.pt").unlink()
    again = progprune("resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert "prune: finished in an earlier attempt (checkpoints/pruned.pt); skipped" in again.stdout
    assert (run_dir / "results.json").exists()
